#!/usr/bin/env python
"""What the Predictor costs around the model: pre- and post-processing time and the memory of its Detections.

    python benchmarks/predictor_overhead.py [--quick] [--repeat N] [--json OUT]

R50-FPN (random weights, ``box_score_thresh`` 0 so every image has 100 detections) exported at its default
800x1344 canvas and run in ONNX Runtime on the CPU, on an 800x1333 image. In one run, side by side, median of
``--repeat`` rounds:

- ``prepare``: uint8 image -> canvas (resize rule, padding), as the Predictor does per image;
- ``batch``: canvases -> runner feeds (stack, image sizes);
- ``model``: the runner's execute (ONNX Runtime);
- ``postprocess``: outputs -> Detections (clip, rescale, keep 28x28 masks per box);
- ``paste_all``: the first access of ``Detections.masks`` (every mask pasted at full resolution, float32), which
  is what each image cost before masks were kept compact; and ``rle``: COCO RLE of every binary mask, from the
  compact form (``maskrt.data.coco.coco_results``).

Reported: (prepare + batch + postprocess) / model (goal <= 10 %), Detections bytes per image before and after
``.masks`` (goal <= 20 MB before), and the paste time the compact form defers. The figures are this machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_JSON = REPO / "benchmarks" / "results" / "predictor_overhead.json"


def structured_uint8(height: int, width: int, seed: int):
    import torch
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, height // 64), max(2, width // 64), generator=g)
    img = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]
    img = img + 0.05 * torch.randn(3, height, width, generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="R18-FPN at 320x512 (seconds instead of minutes)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=str(DEFAULT_JSON))
    args = ap.parse_args(argv)

    import torch

    import maskrt
    from maskrt.backends.onnxrt.runner import OrtRunner
    from maskrt.data.coco import coco_results
    from maskrt.export.onnx_export import to_onnx
    from maskrt.inference.predictor import Predictor, make_batch, postprocess_batch
    from maskrt.model import build

    torch.manual_seed(0)
    if args.quick:
        arch, size_kw, canvas, image_hw = "maskrcnn_resnet18_fpn", dict(min_size=320, max_size=512), (320, 512), (320, 512)
    else:
        arch, size_kw, canvas, image_hw = "maskrcnn_resnet50_fpn", {}, (800, 1344), (800, 1333)
    model = build(arch, num_classes=91, box_score_thresh=0.0, **size_kw).eval()
    image = structured_uint8(*image_hw, seed=1)

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.onnx")
        to_onnx(model, path, input_size=canvas)
        runner = OrtRunner(path, providers=["CPUExecutionProvider"])
        times: dict = {k: [] for k in ("prepare", "batch", "model", "postprocess", "paste_all", "rle")}
        memory = {}
        with Predictor(runner, prefetch=0) as predictor:
            predictor.predict([image])  # warm-up
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                prep = predictor.prepare(image)
                t1 = time.perf_counter()
                batch = make_batch([prep], runner.batch, predictor.image_sizes)
                feeds = runner.upload(batch.feeds)
                t2 = time.perf_counter()
                raw = runner.execute(feeds)
                t3 = time.perf_counter()
                det = postprocess_batch(runner.device_outputs(raw), batch, predictor.meta.class_names)[0]
                t4 = time.perf_counter()
                memory["detections"] = len(det)
                memory["compact_bytes"] = det.nbytes()
                results = coco_results(det, 1)
                t5 = time.perf_counter()
                masks = det.masks
                t6 = time.perf_counter()
                memory["full_bytes"] = det.nbytes()
                memory["full_masks_shape"] = list(masks.shape)
                for key, a, b in (("prepare", t0, t1), ("batch", t1, t2), ("model", t2, t3), ("postprocess", t3, t4),
                                  ("rle", t4, t5), ("paste_all", t5, t6)):
                    times[key].append(b - a)
                del masks, det, results

    med = {k: statistics.median(v) for k, v in times.items()}
    overhead = (med["prepare"] + med["batch"] + med["postprocess"]) / med["model"]
    result = {
        "benchmark": "predictor_overhead", "mode": "quick" if args.quick else "full", "arch": arch,
        "canvas": list(canvas), "image": list(image_hw), "repeat": args.repeat, "maskrt": maskrt.__version__,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "median_ms": {k: round(v * 1e3, 2) for k, v in med.items()},
        "all_ms": {k: [round(x * 1e3, 2) for x in v] for k, v in times.items()},
        "overhead_fraction_of_model": round(overhead, 4),
        "overhead_goal": 0.10,
        "detections_per_image": memory["detections"],
        "detections_mb_compact": round(memory["compact_bytes"] / 2**20, 2),
        "detections_mb_after_masks": round(memory["full_bytes"] / 2**20, 1),
        "memory_goal_mb": 20,
        "pass": overhead <= 0.10 and memory["compact_bytes"] <= 20 * 2**20,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    m = result["median_ms"]
    print(f"{arch} canvas {canvas[0]}x{canvas[1]}, image {image_hw[0]}x{image_hw[1]}, "
          f"{memory['detections']} detections, median of {args.repeat} (ms):")
    print(f"  prepare {m['prepare']:.1f}  batch {m['batch']:.1f}  model {m['model']:.1f}  postprocess {m['postprocess']:.1f}"
          f"  | deferred: rle {m['rle']:.1f}  paste all masks {m['paste_all']:.1f}")
    print(f"  pre+post = {overhead:.1%} of model time (goal <= 10%); Detections {result['detections_mb_compact']} MB "
          f"compact, {result['detections_mb_after_masks']} MB after .masks (goal <= 20 MB before)")
    print(f"  {'PASS' if result['pass'] else 'FAIL'}; results in {args.json}")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
