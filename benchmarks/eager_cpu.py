#!/usr/bin/env python
"""Eager CPU forward time of maskrt's Mask R-CNN against torchvision's, same weights, same image, same process.

Run it with a python that has torchvision (the reference virtualenv, see setup_torchvision_venv.sh):

    .venv-torchvision/bin/python benchmarks/eager_cpu.py [--repeats 5] [--models r50_fpn_v1,r50_fpn_v2] [--json OUT]

Both models get the same seeded random weights (built and randomised as in torchvision_parity.py) and run on
one 3x800x1066 float image with torchvision's default transform settings (min_size 800, max_size 1333) under
torch.inference_mode. After one warm-up forward each, the timed forwards alternate (torchvision, maskrt,
torchvision, maskrt, ...) so that drift in machine load affects both alike. torch's thread count is left at
its default and reported. The goal is maskrt no slower than torchvision (median ratio maskrt/torchvision <=
1.0); the script reports the measured ratio whatever it is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import torch  # noqa: E402
import torchvision  # noqa: E402
import torchvision_parity as tp  # noqa: E402  (exits with status 2 when torchvision is missing)

import maskrt  # noqa: E402
from maskrt.model import build  # noqa: E402

DEFAULT_JSON = REPO / "benchmarks" / "results" / "eager_cpu.json"
MODELS = {
    "r50_fpn_v1": ("maskrcnn_resnet50_fpn", tp.tv_r50_v1),
    "r50_fpn_v2": ("maskrcnn_resnet50_fpn_v2", tp.tv_r50_v2),
}
IMAGE_HW = (800, 1066)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "maskrt": maskrt.__version__,
    }


def timed(model, images) -> tuple[float, int]:
    t0 = time.perf_counter()
    out = model(images)
    return time.perf_counter() - t0, int(out[0]["boxes"].shape[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed forwards per implementation (default 5)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of: " + ", ".join(MODELS))
    ap.add_argument("--json", default=str(DEFAULT_JSON), help=f"where to write the results (default {DEFAULT_JSON})")
    ap.add_argument("--seed", type=int, default=tp.SEED)
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in MODELS:
            ap.error(f"unknown model {m!r}")
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")

    info = machine_info()
    print(f"{info['cpu_model']}, {info['logical_cpus']} logical CPUs, torch threads {info['torch_threads']} (default); "
          f"torch {info['torch']}, torchvision {info['torchvision']}, maskrt {info['maskrt']}")
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    image = tp.structured_image(*IMAGE_HW, seed=args.seed + 1)
    calib = tp.structured_image(600, 800, seed=args.seed - 1)
    print(f"image 3x{IMAGE_HW[0]}x{IMAGE_HW[1]} float, {args.repeats} timed forwards each, alternating tv/maskrt "
          "after one warm-up each\n")

    results = {}
    for key in models:
        mk_name, tv_builder = MODELS[key]
        torch.manual_seed(args.seed)
        tv_model = tv_builder()
        tp.randomise(tv_model, calib, args.seed)
        mk_model = build(mk_name, num_classes=91)
        mk_model.load_state_dict(tv_model.state_dict(), strict=True)
        tv_model.eval()
        mk_model.eval()
        tv_times, mk_times = [], []
        with torch.inference_mode():
            _, n_tv = timed(tv_model, [image])  # warm-up
            _, n_mk = timed(mk_model, [image])
            for _ in range(args.repeats):
                tv_times.append(timed(tv_model, [image])[0])
                mk_times.append(timed(mk_model, [image])[0])
        r = {
            "maskrt_preset": mk_name,
            "detections_torchvision": n_tv,
            "detections_maskrt": n_mk,
            "torchvision_s": tv_times,
            "maskrt_s": mk_times,
            "torchvision_median_s": statistics.median(tv_times),
            "torchvision_min_s": min(tv_times),
            "maskrt_median_s": statistics.median(mk_times),
            "maskrt_min_s": min(mk_times),
        }
        r["ratio_median"] = r["maskrt_median_s"] / r["torchvision_median_s"]
        r["ratio_min"] = r["maskrt_min_s"] / r["torchvision_min_s"]
        r["goal_met"] = r["ratio_median"] <= 1.0
        results[key] = r
        print(f"{key}: torchvision median {r['torchvision_median_s']:.3f} s (min {r['torchvision_min_s']:.3f}), "
              f"maskrt median {r['maskrt_median_s']:.3f} s (min {r['maskrt_min_s']:.3f}); "
              f"maskrt/torchvision {r['ratio_median']:.3f} (median), {r['ratio_min']:.3f} (min); "
              f"{n_tv}/{n_mk} detections", flush=True)
        del tv_model, mk_model

    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    print("\ngoal: maskrt no slower than torchvision (median ratio <= 1.0): "
          + ", ".join(f"{k} {'met' if r['goal_met'] else 'NOT met'} ({r['ratio_median']:.3f})" for k, r in results.items()))
    if load_start is not None:
        print(f"load average (1 min) at start {load_start[0]:.2f}, at end {load_end[0]:.2f}; other processes add noise")

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "script": "benchmarks/eager_cpu.py",
        "machine": info,
        "load_average_start": list(load_start) if load_start else None,
        "load_average_end": list(load_end) if load_end else None,
        "image_shape": [3, *IMAGE_HW],
        "repeats": args.repeats,
        "order": "one warm-up each, then alternating torchvision, maskrt",
        "seed": args.seed,
        "goal": "maskrt median <= torchvision median (ratio <= 1.0)",
        "results": results,
    }, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
