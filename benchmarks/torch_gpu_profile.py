"""R50-FPN at 800x1344, batch 1, on a CUDA GPU: torch fp32 vs fp16 vs fp16 + CUDA graphs, side by side.

Needs a CUDA GPU (the goal: the fastest variant under 5 ms of model latency on an H100). Uses maskrt's bench
(alternating order, CUDA-event timing, every raw time kept), on the preset with seeded random weights whose
classifier is scaled so that NMS and the mask head see realistic numbers of boxes. Also checks, before
timing, that fp16 and the CUDA-graph path give the fp32 detections within the fp16 tolerance of
maskrt.evaluation.verify, and stops (exit 1) when they do not; records how the box head's RoIs spread over
P2..P5. With random weights the RPN's objectness favours the finest levels, so nearly every RoI is pooled from P2
(measured on the CPU: 994/5/1/0 of 1000 even with the RPN's deltas scaled down, which is why this script does not
scale them); ``--weights`` takes a trained checkpoint for a realistic spread.

    python benchmarks/torch_gpu_profile.py [--arch maskrcnn_resnet50_fpn] [--duration 10] [--json OUT]

Writes benchmarks/results/torch_gpu_profile.json (the LatencyReport plus the agreement check) and an HTML
report next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def confident_checkpoint(arch: str, path: str) -> None:
    from safetensors.torch import save_file

    from maskrt.model import build

    torch.manual_seed(0)
    model = build(arch)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(40.0)
        model.roi_heads.box_predictor.cls_score.bias.uniform_(-2.0, 2.0)
    save_file(model.state_dict(), path)


def level_spread(arch: str, path: str) -> dict:
    """How the box head's RoIs spread over P2..P5 for one image (CPU, fp32): the counts per level."""
    from maskrt.model import DeployMaskRCNN
    from maskrt.model.presets import load_model
    from maskrt.ops.poolers import level_of_box

    model = load_model(arch, weights=path)
    deploy = DeployMaskRCNN(model).eval()
    seen = {}

    def hook(module, args, output):
        seen["proposals"] = output[0][output[1]]

    handle = model.rpn.register_forward_hook(hook)
    g = torch.Generator().manual_seed(7)
    with torch.inference_mode():
        deploy(torch.randint(0, 256, (1, 3, 800, 1344), dtype=torch.uint8, generator=g))
    handle.remove()
    levels = level_of_box(seen["proposals"], 2, 5)
    return {f"P{i + 2}": int((levels == i).sum()) for i in range(4)}


def agreement(spec_args: dict, path: str) -> dict:
    """fp16 and fp16 + CUDA graph against fp32 on one generated image, with verify's fp16 tolerance."""
    from maskrt.backends.select import RunnerSpec
    from maskrt.data.images import sample_images as load_images
    from maskrt.evaluation.verify import compare_outputs
    from maskrt.inference.predictor import prepare

    images = load_images(None, count=1, seed=7)
    outs = {}
    for name, (precision, graph) in {"fp32": ("fp32", False), "fp16": ("fp16", False),
                                     "fp16+graph": ("fp16", True)}.items():
        runner = RunnerSpec(path, precision=precision, cuda_graph=graph, **spec_args).open(1)
        with runner:
            p = prepare(images[0], runner.meta)
            feeds = {"images": p.canvas[None], "image_sizes": torch.tensor([p.resized], dtype=torch.int32)}
            runner.infer(feeds)  # capture / warm up
            outs[name] = runner.infer(feeds)
    result = {}
    for name in ("fp16", "fp16+graph"):
        check, problems = compare_outputs(outs["fp32"], outs[name], 0, name, "fp16")
        result[name] = {"reference": check.reference, "candidate": check.candidate, "matched": check.matched,
                        "boxes_max_delta": check.boxes, "scores_max_delta": check.scores, "problems": problems}
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="maskrcnn_resnet50_fpn")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--weights", default=None, help="a trained checkpoint (default: seeded random weights)")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "torch_gpu_profile.json"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU", file=sys.stderr)
        return 2

    from maskrt.backends.select import RunnerSpec
    from maskrt.profiling import render as reports
    from maskrt.profiling.measure import ProfileSettings, bench

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    ckpt = args.weights or os.path.join(os.path.dirname(os.path.abspath(args.json)), f"{args.arch}_random.safetensors")
    if not args.weights:
        confident_checkpoint(args.arch, ckpt)
    common = {"arch": args.arch, "device": "cuda", "input_size": (800, 1344)}
    spread = level_spread(args.arch, ckpt)
    print(f"box-head RoIs per level: {spread}")
    check = agreement(common, ckpt)
    failed = {name: c["problems"] for name, c in check.items() if c["problems"]}
    if failed:  # an fp16 path that disagrees with fp32 is not worth timing
        print(f"fp16 agreement with fp32 failed: {json.dumps(failed)}", file=sys.stderr)
        if not args.weights:
            os.unlink(ckpt)
        return 1
    specs = [RunnerSpec(ckpt, precision="fp32", label="torch fp32", **common),
             RunnerSpec(ckpt, precision="fp16", label="torch fp16", **common),
             RunnerSpec(ckpt, precision="fp16", cuda_graph=True, label="torch fp16 + CUDA graph", **common)]
    report = bench(specs, 1, ProfileSettings(warmup_seconds=2.0, duration=args.duration, min_iterations=50))
    if not args.weights:
        os.unlink(ckpt)
    reports.print_report(report)
    data = report.to_dict()
    data["agreement_with_fp32"] = check
    data["box_head_rois_per_level"] = spread
    tmp = args.json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, args.json)
    reports.write_html(report, os.path.splitext(args.json)[0] + ".html", "R50-FPN 800x1344 batch 1: torch on CUDA")
    fastest = min((r.stat("model").median for r in report.runs if r.stat("model")), default=float("nan"))
    print(f"agreement with fp32: {json.dumps(check)}")
    print(f"fastest median model latency: {fastest:.2f} ms (goal < 5 ms on an H100); wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
