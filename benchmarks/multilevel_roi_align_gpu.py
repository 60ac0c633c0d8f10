#!/usr/bin/env python
"""GPU time of multi-level RoI Align: maskrt's fused CUDA kernel against torchvision's MultiScaleRoIAlign and
maskrt's PyTorch op, on a Mask R-CNN box-head sized problem.

Needs a CUDA device and the kernel library (``maskrt plugins build``); torchvision is optional (its row is
marked unavailable without it):

    python benchmarks/multilevel_roi_align_gpu.py [--rois 1000] [--channels 256] [--image 800x1344]
        [--dtypes fp32,fp16] [--repeats 50] [--json OUT]

Problem: one image, FPN maps P2-P5 (scales 1/4 ... 1/32 of 800x1344), 1000 RoIs with log-uniform sizes
16-800 px (so every level gets some), 7x7 output, sampling_ratio 2, aligned=False, avg. Each method runs
``--warmup`` times, then ``--repeats`` CUDA-event windows of 20 back-to-back calls each (ms per call: host
preparation of one call overlaps the GPU work of the previous one, so a short kernel is not timed as the host's
preparation); the median, p10 and p90 are reported, and ``graph_replay_median_ms`` replays the same 20 calls from
one CUDA graph (GPU time alone; None for a method that cannot be captured).

Bandwidth: ``min_traffic_gbps`` counts the bytes a perfect kernel must move (the output, the rois, and each
RoI's feature-map window on its level, channels included, each map counted at most once) over the median
time; ``tap_gbps`` counts every bilinear tap read as if nothing were reused (what the caches serve). Results
go to benchmarks/results/multilevel_roi_align_gpu.json by default, with the GPU, driver and library versions.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_JSON = REPO / "benchmarks" / "results" / "multilevel_roi_align_gpu.json"
SCALES = (1 / 4, 1 / 8, 1 / 16, 1 / 32)
OUTPUT = 7
SAMPLING = 2


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rois", type=int, default=1000)
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--image", default="800x1344", help="HxW of the image the maps belong to")
    p.add_argument("--dtypes", default="fp32,fp16")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--library", help="libmaskrt_mlra.so to use (default: found by maskrt)")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="output file ('-' for stdout only)")
    return p.parse_args(argv)


def make_problem(torch, height: int, width: int, channels: int, count: int, dtype, seed: int, device: str = "cuda"):
    g = torch.Generator().manual_seed(seed)
    maps = [torch.randn(1, channels, math.ceil(height * s), math.ceil(width * s), generator=g).to(dtype)
            for s in SCALES]
    size = torch.exp(torch.empty(count, 2).uniform_(math.log(16.0), math.log(800.0), generator=g))
    centre = torch.rand(count, 2, generator=g) * torch.tensor([float(width), float(height)])
    lo = (centre - size / 2).clamp(min=0)
    hi = torch.minimum(centre + size / 2, torch.tensor([float(width), float(height)]))
    rois = torch.cat([torch.zeros(count, 1), lo, hi], dim=1)
    return [m.to(device) for m in maps], rois.to(device)


def min_traffic_bytes(maps, rois, channels: int, elem: int) -> int:
    """Output + rois + the feature windows the RoIs cover on their levels (each map at most once)."""
    from maskrt.ops.poolers import level_of_box, level_range

    k_min, k_max = level_range(SCALES)
    levels = level_of_box(rois[:, 1:].float().cpu(), k_min, k_max).tolist()
    covered = [0] * len(maps)
    for (x1, y1, x2, y2), lvl in zip(rois[:, 1:].cpu().tolist(), levels):
        s = SCALES[lvl]
        h, w = maps[lvl].shape[-2:]
        wh = min(w, math.ceil(x2 * s) + 2) - max(0, math.floor(x1 * s) - 1)
        hh = min(h, math.ceil(y2 * s) + 2) - max(0, math.floor(y1 * s) - 1)
        covered[lvl] += max(wh, 0) * max(hh, 0) * channels * elem
    features = sum(min(c, m.numel() * elem) for c, m in zip(covered, maps))
    output = rois.shape[0] * channels * OUTPUT * OUTPUT * elem
    return features + output + rois.numel() * rois.element_size()


def time_cuda(torch, fn, warmup: int, repeats: int, inner: int = 20) -> list[float]:
    """ms per call: each of ``repeats`` event windows holds ``inner`` back-to-back calls, so the host's preparation
    of one call overlaps the GPU's work on the previous one instead of sitting alone in the window (a ~0.2 ms
    kernel timed alone between two events measures mostly the host)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / inner)
    return times


def time_cuda_graph(torch, fn, repeats: int, inner: int = 20) -> list[float] | None:
    """ms per call replaying ``inner`` calls captured in one CUDA graph: GPU time with no host work at all. None
    when the call cannot be captured (it reads device data on the host, as torchvision's level mapping does)."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
            # A call that synchronises would fail the capture, and before PyTorch 2.12 a failed capture can leave
            # the allocator unable to capture again in this process: find it with syncs made errors instead.
            torch.cuda.set_sync_debug_mode("error")
            try:
                fn()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(inner):
                fn()
    except RuntimeError:
        return None
    return [t / inner for t in time_cuda(torch, graph.replay, 2, repeats, inner=1)]


def methods(torch, maps, rois, height: int, width: int, library: str | None):
    """name -> zero-argument callable returning the (K, C, 7, 7) result, or the reason it is unavailable."""
    from maskrt.ops.poolers import multilevel_roi_align
    from maskrt.plugins.library import multilevel_roi_align_cuda

    out = {
        "maskrt_fused_cuda": lambda: multilevel_roi_align_cuda(maps, rois, SCALES, OUTPUT, SAMPLING, library=library),
        "maskrt_pytorch_op": lambda: multilevel_roi_align(maps, rois, OUTPUT, SAMPLING, scales=SCALES),
    }
    try:
        from torchvision.ops import MultiScaleRoIAlign
    except ImportError as e:
        out["torchvision_multiscale"] = f"unavailable: {e}"
    else:
        pooler = MultiScaleRoIAlign(["p2", "p3", "p4", "p5"], OUTPUT, SAMPLING)
        named = dict(zip(["p2", "p3", "p4", "p5"], maps))
        boxes = [rois[:, 1:].to(maps[0].dtype)]  # torchvision wants boxes in the maps' dtype
        out["torchvision_multiscale"] = lambda: pooler(named, boxes, [(height, width)])
    return out


def machine(torch) -> dict:
    from maskrt import __version__

    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1), "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda, "maskrt": __version__, "python": platform.python_version(),
        "host": platform.node(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("multilevel_roi_align_gpu: needs a CUDA device", file=sys.stderr)
        return 2
    from maskrt import MaskrtError
    from maskrt.plugins.library import load_library

    try:
        load_library("maskrt_mlra", args.library)
    except MaskrtError as e:
        print(f"multilevel_roi_align_gpu: {e}", file=sys.stderr)
        return 2
    height, width = (int(v) for v in args.image.lower().split("x"))
    dtypes = {"fp32": torch.float32, "fp16": torch.float16}
    results = []
    for name in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
        dtype = dtypes[name]
        maps, rois = make_problem(torch, height, width, args.channels, args.rois, dtype, args.seed)
        elem = torch.tensor([], dtype=dtype).element_size()
        traffic = min_traffic_bytes(maps, rois, args.channels, elem)
        taps = args.rois * args.channels * OUTPUT * OUTPUT * SAMPLING * SAMPLING * 4 * elem
        with torch.inference_mode():
            runs = methods(torch, maps, rois, height, width, args.library)
            reference = runs["maskrt_pytorch_op"]().float()
            for method, fn in runs.items():
                row = {"method": method, "dtype": name}
                if isinstance(fn, str):
                    row["status"] = fn
                    results.append(row)
                    continue
                diff = (fn().float() - reference).abs().max().item()
                times = sorted(time_cuda(torch, fn, args.warmup, args.repeats))
                median = statistics.median(times)
                graphed = time_cuda_graph(torch, fn, args.repeats)
                row["graph_replay_median_ms"] = round(statistics.median(graphed), 4) if graphed else None
                row.update({
                    "status": "ok", "median_ms": round(median, 4), "p10_ms": round(times[len(times) // 10], 4),
                    "p90_ms": round(times[(len(times) * 9) // 10], 4),
                    "min_traffic_gbps": round(traffic / (median * 1e-3) / 1e9, 1),
                    "tap_gbps": round(taps / (median * 1e-3) / 1e9, 1),
                    "max_abs_diff_vs_pytorch_op": diff,
                })
                results.append(row)
                print(f"{name:5s} {method:24s} {median:9.3f} ms  {row['min_traffic_gbps']:8.1f} GB/s min-traffic  "
                      f"max|diff| {diff:.2e}")
    report = {
        "benchmark": "multilevel_roi_align_gpu",
        "problem": {"rois": args.rois, "channels": args.channels, "image": [height, width], "scales": list(SCALES),
                    "output": OUTPUT, "sampling_ratio": SAMPLING, "aligned": False, "mode": "avg",
                    "warmup": args.warmup, "repeats": args.repeats},
        "machine": machine(torch),
        "results": results,
    }
    if args.json != "-":
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
