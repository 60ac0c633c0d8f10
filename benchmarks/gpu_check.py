"""One-shot GPU check for any CUDA machine: run it whenever a GPU is at hand and keep its folder.

    python benchmarks/gpu_check.py [--out benchmarks/results/gpu_check] [--skip-tests] [--quick]

Needs only this repository and a CUDA build of torch (torchvision optional; nvcc for maskrt's CUDA kernels, which
are compiled on first use for the local GPU). Steps, each written to its own JSON file in ``--out``:

1. ``environment.json``: GPU, driver, torch, TF32 / cudnn.benchmark settings; whether maskrt's CUDA kernels built.
2. ``tests.json``: the needs_cuda tests (kernels vs CPU references, TorchRunner on CUDA vs CPU, the plugin kernel).
3. ``roi_align.json``: the fused multi-level RoI Align kernel, 1000 RoIs, 256 channels, P2-P5 of 800x1344, fp32
   and fp16, against maskrt's PyTorch op and torchvision's MultiScaleRoIAlign (when importable). Times are CUDA
   events around 20 back-to-back calls (host preparation overlaps the GPU instead of sitting alone in the
   window), and a CUDA-graph replay of the same calls where capture works (GPU time alone).
4. ``latency.json``: the torch deploy forward of R50-FPN at 800x1344 (random weights, classifier scaled so NMS and
   the mask head see realistic counts), fp32 / fp16 / fp16 + CUDA graph at batch 1 and 8: event span, wall time,
   GPU-busy time (sum of kernel times from torch.profiler), host synchronisations per forward
   (``torch.cuda.set_sync_debug_mode("warn")``).

``summary.json`` collects the headline figures. Without CUDA it says so and exits 0. Budget: under 8 minutes on an
H100-class GPU (the kernel build, once, included).

``--cpu-dry-run`` runs the same steps on the CPU at toy sizes (a 128x160 canvas, 64 channels, 50 RoIs, batches 1 and
2, one timed call), with wall-clock timers in place of CUDA events; CUDA graphs, sync counts and GPU-busy time are
recorded as not measured. Its figures mean nothing: it exists so that the script's own code (model building,
runners, the custom ops, the JSON it writes) is exercised where there is no GPU, before the one run on a GPU
(tests/profiling/test_gpu_check.py runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from multilevel_roi_align_gpu import make_problem, time_cuda, time_cuda_graph  # noqa: E402

SCALES = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
CUDA_TESTS = ["tests/ops/test_cuda_kernels.py", "tests/backends/test_torch_cuda.py", "tests/plugins/test_cuda.py"]


def write(out_dir: str, name: str, data) -> None:
    path = os.path.join(out_dir, name)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=str)
    os.replace(tmp, path)
    print(f"wrote {path}")


class Target:
    """Where the steps run and at what size: the GPU (the real check) or the CPU (``--cpu-dry-run``)."""

    def __init__(self, dry_run: bool = False):
        self.dry_run = dry_run
        self.device = "cpu" if dry_run else "cuda"
        self.canvas = (128, 160) if dry_run else (800, 1344)
        self.batches = (1, 2) if dry_run else (1, 8)
        self.roi_problem = {"channels": 64, "count": 50} if dry_run else {"channels": 256, "count": 1000}
        # The dry run builds the small preset (same modules, a fraction of the work): R50-FPN in fp16 takes minutes
        # on a CPU.
        self.arch = "shapes" if dry_run else "maskrcnn_resnet50_fpn"

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def synchronize(self, torch) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def step_environment(torch, target: Target) -> dict:
    from maskrt.core.environment import environment
    from maskrt.ops import cuda_kernels

    env = environment()
    env["gpu_check_mode"] = "cpu dry run: toy sizes, no figure means anything" if target.dry_run else "gpu"
    t0 = time.perf_counter()
    try:
        ok = cuda_kernels.register_cuda_kernels(verbose=False)
        env["maskrt_cuda_kernels"] = {"registered": ok, "build_s": round(time.perf_counter() - t0, 1),
                                      "versions": cuda_kernels.load_extension().runtime_versions() if ok else None}
    except Exception as e:  # recorded, the rest still runs
        env["maskrt_cuda_kernels"] = {"registered": False, "error": str(e)}
    env["device"] = torch.cuda.get_device_name(0) if target.cuda else "cpu"
    return env


def step_tests(out_dir: str, timeout: int) -> dict:
    xml = os.path.join(out_dir, "tests.xml")
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-n", "0", "-rs", "--junitxml", xml,
           *CUDA_TESTS]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:  # keep what it printed: the last lines name the test that hung
        def text(b):
            return (b.decode(errors="replace") if isinstance(b, bytes) else (b or "")).strip().splitlines()

        return {"status": f"timed out after {timeout} s", "command": " ".join(cmd), "tail": text(e.stdout)[-25:],
                "stderr_tail": text(e.stderr)[-10:]}
    lines = proc.stdout.strip().splitlines()
    # pytest's own last line ("3 passed, 2 skipped in 4.1s"); plugins may write warnings after it on stderr
    summary = next((line for line in reversed(lines)
                    if re.search(r"\b(passed|failed|skipped|error|errors|deselected|no tests ran)\b", line)), "")
    return {"returncode": proc.returncode, "summary": summary.strip("= "), "tail": lines[-25:],
            "stderr_tail": proc.stderr.strip().splitlines()[-10:], "junit": xml}


def _summary(times: list) -> dict:
    return {"median_ms": round(statistics.median(times), 4), "min_ms": round(min(times), 4)}


def time_events(torch, fn, target: Target, inner: int = 20, repeats: int = 15) -> dict:
    """ms per call over ``repeats`` windows of ``inner`` back-to-back calls (multilevel_roi_align_gpu's timer); on
    the CPU (dry run) one wall-clock window of one call."""
    if not target.cuda:
        fn()
        t0 = time.perf_counter()
        fn()
        return _summary([(time.perf_counter() - t0) * 1000.0]) | {"timer": "wall clock (dry run)"}
    return _summary(time_cuda(torch, fn, 3, repeats, inner))


def time_graph(torch, fn, target: Target, inner: int = 20, repeats: int = 15) -> dict | str:
    """ms per call with ``inner`` calls captured in one CUDA graph and replayed: GPU time without host work."""
    if not target.cuda:
        return "not measured: CUDA graphs need a GPU (dry run)"
    times = time_cuda_graph(torch, fn, repeats, inner)
    if times is None:
        raise RuntimeError("capture failed (the call reads device data on the host)")
    return _summary(times) | {"calls_per_replay": inner}


def step_roi_align(torch, target: Target, out_dir: str) -> list:
    from maskrt.ops import (
        cuda_kernels,
        library,  # noqa: F401  (registers torch.ops.maskrt.*)
    )
    from maskrt.ops.poolers import multilevel_roi_align

    rows = []
    height, width = target.canvas
    for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        maps, rois = make_problem(torch, height, width, target.roi_problem["channels"], target.roi_problem["count"],
                                  dtype, seed=0, device=target.device)
        methods = {
            "maskrt_cuda_kernel": lambda maps=maps, rois=rois: torch.ops.maskrt.multilevel_roi_align(
                maps, rois, SCALES, 7, 7, 2, False, "avg", 224, 4),
            "maskrt_pytorch_op": lambda maps=maps, rois=rois: multilevel_roi_align(maps, rois, 7, 2, scales=SCALES),
        }
        notes = {"maskrt_cuda_kernel": "the custom op's CPU implementation (dry run)" if not target.cuda else
                 "the registered CUDA kernel",
                 "torchvision_multiscale": "boxes in the maps' dtype (torchvision's rule); in fp16 box areas above "
                 "65504 px^2 overflow and map to the coarsest level, so its fp16 difference mixes level errors "
                 "with pooling; not captured in a CUDA graph (its level mapping calls nonzero, a host sync)"}
        if target.cuda and not cuda_kernels.registered():
            # Without the kernels the op runs its PyTorch code: timing it under this name would mislabel it.
            del methods["maskrt_cuda_kernel"]
            rows.append({"method": "maskrt_cuda_kernel", "dtype": name, "status": "unavailable: " + (
                cuda_kernels.registration_error() or "the CUDA kernels are not registered")})
        try:
            from torchvision.ops import MultiScaleRoIAlign

            pooler = MultiScaleRoIAlign(["p2", "p3", "p4", "p5"], 7, 2)
            named = dict(zip(["p2", "p3", "p4", "p5"], maps))
            boxes = [rois[:, 1:].to(dtype)]
            methods["torchvision_multiscale"] = lambda p=pooler, f=named, b=boxes: p(f, b, [(height, width)])
        except ImportError as e:
            rows.append({"method": "torchvision_multiscale", "dtype": name, "status": f"unavailable: {e}"})
        with torch.inference_mode():
            reference = multilevel_roi_align([m.float() for m in maps], rois, 7, 2, scales=SCALES)
            for method, fn in methods.items():
                row = {"method": method, "dtype": name}
                if method in notes:
                    row["note"] = notes[method]
                try:
                    row["max_abs_diff_vs_fp32_pytorch_op"] = float((fn().float() - reference).abs().max())
                    row["events_back_to_back"] = time_events(torch, fn, target)
                    if method == "torchvision_multiscale":
                        row["cuda_graph"] = "not attempted: nonzero in its level mapping synchronises"
                    else:
                        try:
                            row["cuda_graph"] = time_graph(torch, fn, target)
                        except Exception as e:  # a host sync inside makes capture fail
                            row["cuda_graph"] = f"not capturable: {str(e).splitlines()[0][:200]}"
                    row["status"] = "ok"
                except Exception as e:
                    row["status"] = f"failed: {str(e).splitlines()[0][:300]}"
                rows.append(row)
                write(out_dir, "roi_align.json", rows)  # row by row: a run cut short keeps what it measured
                print(f"roi_align {name} {method}: {row.get('events_back_to_back', row['status'])}")
    return rows


def confident_model(torch, arch: str = "maskrcnn_resnet50_fpn"):
    from maskrt.model import build

    torch.manual_seed(0)
    model = build(arch).eval()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(40.0)
        model.roi_heads.box_predictor.cls_score.bias.uniform_(-2.0, 2.0)
        # Proposals near their anchors (sizes 32..512: all four pooling levels), ranked by small varied scores.
        model.rpn.head.bbox_pred.weight.mul_(0.1)
        model.rpn.head.cls_logits.weight.mul_(0.1)
    return model


def gpu_busy_ms(torch, fn, target: Target, iterations: int = 3) -> float | None:
    """Kernel time per call (maskrt.profiling.measure.gpu_busy_ms, what `maskrt profile` reports); None on the CPU."""
    if not target.cuda:
        return None
    from maskrt.profiling.measure import gpu_busy_ms as busy

    value = busy(fn, iterations)
    return None if value is None else round(value, 3)


def count_syncs(torch, fn, target: Target) -> int | None:
    """Host synchronisations one call makes (``torch.cuda.set_sync_debug_mode("warn")``); None on the CPU."""
    if not target.cuda:
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return sum("synchroniz" in str(w.message) for w in caught)


def time_forward(torch, fn, target: Target, n: int) -> tuple[float | None, float]:
    """Median CUDA-event span (None on the CPU) and median wall time of ``n`` calls, each waited for, in ms."""
    spans, walls = [], []
    for _ in range(n):
        if target.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        if target.cuda:
            start.record()
        fn()
        if target.cuda:
            end.record()
            end.synchronize()
            spans.append(start.elapsed_time(end))
        walls.append((time.perf_counter() - t0) * 1000.0)
    return (round(statistics.median(spans), 3) if spans else None), round(statistics.median(walls), 3)


def step_latency(torch, quick: bool, target: Target, out_dir: str) -> list:
    from maskrt.backends import TorchRunner
    from maskrt.data.images import sample_images
    from maskrt.inference.predictor import make_batch, prepare

    model = confident_model(torch, target.arch)
    rows = []
    variants = [("fp32", False), ("fp16", False), ("fp16", True)]
    for batch in target.batches:
        for precision, graph in variants:
            row = {"batch": batch, "precision": precision, "cuda_graph": graph,
                   # PyTorch's default: "fp32" convolutions run on TF32 tensor cores unless this is False
                   "tf32_convolutions": bool(torch.backends.cudnn.allow_tf32) if target.cuda else None}
            if graph and not target.cuda:
                row["status"] = "not run: CUDA graphs need a GPU (dry run)"
                rows.append(row)
                write(out_dir, "latency.json", rows)
                continue
            try:
                with TorchRunner(model, target.canvas, batch, device=target.device, precision=precision,
                                 cuda_graph=graph) as runner:
                    row["graph_mode"] = runner.graph_mode
                    row["notes"] = list(runner.notes)
                    images = sample_images(None, count=batch, seed=7)
                    feeds = make_batch([prepare(img, runner.meta) for img in images], batch, image_sizes=True).feeds
                    uploaded = runner.upload(feeds)
                    forward = lambda r=runner, u=uploaded: r.execute(u)  # noqa: E731
                    for _ in range(0 if target.dry_run else 3):
                        forward()
                    target.synchronize(torch)
                    row["host_syncs_per_forward"] = count_syncs(torch, forward, target)
                    n = 1 if target.dry_run else (10 if quick else (30 if batch == 1 else 12))
                    row["event_span_ms_median"], row["wall_ms_median"] = time_forward(torch, forward, target, n)
                    row["gpu_busy_ms"] = gpu_busy_ms(torch, forward, target)
                    row["detections"] = runner.download(runner.execute(uploaded))["num_detections"].tolist()
                    row["status"] = "ok"
            except Exception as e:  # recorded, the next variant runs
                row["status"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            print(f"latency {row}")
            rows.append(row)
            write(out_dir, "latency.json", rows)  # row by row: a run cut short keeps what it measured
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "results", "gpu_check"))
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    ap.add_argument("--test-timeout", type=int, default=240)
    ap.add_argument("--cpu-dry-run", action="store_true",
                    help="run every step on the CPU at toy sizes to check this script (its figures mean nothing)")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed; nothing to check")
        return 0
    target = Target(dry_run=args.cpu_dry_run)
    if target.cuda and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch on this machine; nothing to check (run it where a GPU is)")
        return 0
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    summary: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "mode": "cpu dry run: toy sizes, no figure means anything" if target.dry_run else "gpu"}
    env = step_environment(torch, target)
    write(args.out, "environment.json", env)
    summary["device"] = env.get("device")
    summary["cuda_kernels"] = env.get("maskrt_cuda_kernels")
    write(args.out, "summary.json", summary)  # after each step: a run cut short keeps its summary so far
    if not args.skip_tests:
        tests = step_tests(args.out, args.test_timeout)
        write(args.out, "tests.json", tests)
        summary["tests"] = tests.get("summary", tests.get("status"))
        write(args.out, "summary.json", summary)
    roi = step_roi_align(torch, target, args.out)
    summary["roi_align_ms"] = {f"{r['method']} {r['dtype']}": r.get("events_back_to_back", r.get("status"))
                               for r in roi}
    write(args.out, "summary.json", summary)
    latency = step_latency(torch, args.quick, target, args.out)
    summary["latency"] = [{k: r.get(k) for k in ("batch", "precision", "cuda_graph", "graph_mode", "tf32_convolutions",
                                                  "event_span_ms_median", "wall_ms_median", "gpu_busy_ms",
                                                  "host_syncs_per_forward", "status")} for r in latency]
    summary["total_s"] = round(time.perf_counter() - t0, 1)
    write(args.out, "summary.json", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
