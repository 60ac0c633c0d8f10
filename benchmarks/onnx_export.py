"""R50-FPN at 800x1344: export time and peak RSS, then ONNX Runtime CPU vs PyTorch latency, side by side.

Export runs in a child process so its peak RSS is its own. Latency: the same weights and the same uint8 input
through (a) ONNX Runtime (CPU EP) on the exported file and (b) maskrt's PyTorch deploy forward, measured in
alternating order after a warm-up; medians are compared.

    python benchmarks/onnx_export.py [--repeats 5] [--json benchmarks/results/onnx_export.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

EXPORT_CHILD = r"""
import sys, time, json, resource, torch
from maskrt.model import build
from maskrt.export import to_onnx
torch.manual_seed(0)
model = build("maskrcnn_resnet50_fpn").eval()
t = time.perf_counter()
r = to_onnx(model, sys.argv[1], input_size=(800, 1344), opset=17)
print(json.dumps({"export_seconds": time.perf_counter() - t, "size_bytes": r.size_bytes,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default="benchmarks/results/onnx_export.json")
    args = ap.parse_args()

    import torch

    folder = tempfile.mkdtemp(prefix="maskrt-bench-")
    path = os.path.join(folder, "r50.onnx")
    child = subprocess.run([sys.executable, "-c", EXPORT_CHILD, path], capture_output=True, text=True, check=True)
    export = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"export: {export['export_seconds']:.1f} s, peak RSS {export['peak_rss_mb']:.0f} MB, "
          f"file {export['size_bytes'] / 2**20:.1f} MB (goals: <= 60 s, <= 4096 MB)")

    from maskrt.backends import OrtRunner, TorchRunner
    from maskrt.data.images import synthetic_image
    from maskrt.model import build

    torch.manual_seed(0)  # the same weights the child exported
    model = build("maskrcnn_resnet50_fpn").eval()
    images = torch.stack([synthetic_image(800, 1344, 7)])
    feed = {"images": images}
    times = {"onnxruntime": [], "torch": []}
    with OrtRunner(path, providers=["CPUExecutionProvider"]) as ort_runner, TorchRunner(model, (800, 1344), 1) as torch_runner:
        runners = {"onnxruntime": ort_runner, "torch": torch_runner}
        for r in runners.values():
            r.infer(feed)  # warm-up
        for i in range(args.repeats):
            order = ("onnxruntime", "torch") if i % 2 == 0 else ("torch", "onnxruntime")
            for name in order:
                t = time.perf_counter()
                runners[name].infer(feed)
                times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["onnxruntime"] / med["torch"]
    print(f"latency median: onnxruntime {med['onnxruntime'] * 1e3:.0f} ms, torch {med['torch'] * 1e3:.0f} ms, "
          f"ratio ort/torch {ratio:.2f} (goal: < 1)")
    import onnxruntime

    result = {
        "benchmark": "onnx_export",
        "model": "maskrcnn_resnet50_fpn (random weights, seed 0)",
        "input": "1x3x800x1344 uint8",
        "export": export,
        "latency_seconds": times,
        "latency_median_seconds": med,
        "ratio_onnxruntime_over_torch": ratio,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "python": platform.python_version()},
    }
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
