#!/usr/bin/env python
"""Does the deployed model give PyTorch's detections on ordinary photos? torchvision eager vs maskrt's ONNX.

    python benchmarks/deploy_fidelity.py [--quick] [--json OUT] [--reference-python .venv-torchvision/bin/python]

Two interpreters, so that the reference is independent of maskrt:

1. The reference virtualenv (``benchmarks/setup_torchvision_venv.sh``) builds torchvision's Mask R-CNN R50-FPN
   v1 with seeded random weights (``torchvision_parity.randomise``: realistic norm statistics, a sharpened
   classifier) and runs it on each test image *alone*, at ``box_score_thresh`` 0.05. It saves the state_dict,
   the uint8 images and torchvision's boxes, scores, labels and masks. The RPN's objectness layer is scaled so
   that no logit on these images exceeds ``MAX_RPN_LOGIT``: random weights otherwise saturate thousands of
   anchors at a sigmoid of exactly 1.0, and the order among such ties after torchvision's unstable sort in
   batched_nms is implementation-defined (torchvision itself gives other boxes at another image size).
2. This interpreter loads that state_dict into maskrt, exports three ONNX files and runs every image through
   ``Predictor(OrtRunner(path))`` on the CPU, alone and in mixed batches:
   - ``canvas_800x1344_b2``: the default 800x1344 canvas, fixed batch 2 (a lone image gets a blank mate);
   - ``canvas_1344x1344``: a square canvas, dynamic batch (holds portrait photos);
   - ``dynamic_size``: ``--dynamic-size``, dynamic batch (each batch at its largest image's padded size).

Images have a short side of 800 (320 with ``--quick``), so torchvision does not resize them: portrait,
landscape, square and odd sizes. One more image is upscaled by both (the resize rule), and portrait images do
not fit the 800x1344 canvas, so they are shrunk; those rows are reported but not held to the goal.

A detection matches when a torchvision detection has the same label and box IoU > 0.99 (greedy, by score).
Reported per image: counts, matched fraction (of the larger count), largest score difference and smallest
binary mask IoU over the matched pairs. Goal: >= 99 % matched wherever no resize is involved. torchvision's
own batch-vs-alone agreement is recorded too: torchvision is not batch invariant (anchors over the padding of
a smaller image compete), maskrt's deployed model is.

Exit status: 0 when the goal holds, 1 when it does not, 2 when the reference interpreter is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_JSON = REPO / "benchmarks" / "results" / "deploy_fidelity.json"
DEFAULT_REFERENCE_PYTHON = REPO / ".venv-torchvision" / "bin" / "python"
SEED = 20261202
GOAL = 0.99
MAX_RPN_LOGIT = 10.0  # sigmoid(10) = 0.99995: distinct float32 scores, no saturated ties

# name -> (height, width); the short side equals min_size, so torchvision keeps the size (scale 1).
FULL = {"portrait": (1088, 800), "landscape": (800, 1216), "square": (800, 800), "odd_landscape": (800, 1001),
        "odd_portrait": (1199, 800), "upscaled": (600, 901)}
QUICK = {"portrait": (448, 320), "landscape": (320, 480), "square": (320, 320), "odd_landscape": (320, 417),
         "odd_portrait": (479, 320), "upscaled": (240, 361)}
RESIZED = {"upscaled"}
BATCHES = [["portrait", "landscape"], ["square", "odd_landscape", "odd_portrait"]]


# ------------------------------------------------------------------------------------------ reference (torchvision)
def make_reference(folder: Path, quick: bool) -> None:
    """Run in the reference virtualenv: write state.safetensors, images and torchvision's outputs to ``folder``."""
    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, str(REPO / "benchmarks"))
    import torchvision_parity as tp

    size_kw = dict(min_size=320, max_size=512) if quick else {}
    sizes = QUICK if quick else FULL
    torch.manual_seed(SEED)
    model = tp.tv_r50_v1(**size_kw)
    calib = tp.structured_image(*((320, 427) if quick else (600, 800)), seed=SEED - 1)
    info = tp.randomise(model, calib, SEED)
    model.eval()

    images = {}
    for i, (name, hw) in enumerate(sizes.items()):
        img = (tp.structured_image(*hw, seed=SEED + 11 * i) * 255).round().to(torch.uint8)
        images[name] = img
        np.save(folder / f"image_{name}.npy", img.numpy())

    # The RPN's objectness must not saturate: where thousands of anchors score sigmoid = 1.0 exactly, which 1000
    # proposals survive is decided by torch.sort's unstable order of ties inside torchvision, which no other
    # implementation (nor torchvision on another image size) reproduces. Scale the logits to at most MAX_RPN_LOGIT.
    peaks = []
    hook = model.rpn.head.cls_logits.register_forward_hook(lambda m, a, out: peaks.append(float(out.max())))
    with torch.no_grad():
        for img in images.values():
            model([img.float() / 255])
    hook.remove()
    rpn_scale = min(1.0, MAX_RPN_LOGIT / max(peaks))
    with torch.no_grad():
        model.rpn.head.cls_logits.weight.mul_(rpn_scale)
        model.rpn.head.cls_logits.bias.mul_(rpn_scale)
    info.update(rpn_logit_peak_before=max(peaks), rpn_logit_scale=rpn_scale)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "state.safetensors"))

    def save(tag, out):
        np.savez_compressed(folder / f"tv_{tag}.npz", boxes=out["boxes"].numpy(), scores=out["scores"].numpy(),
                            labels=out["labels"].numpy(), masks=out["masks"][:, 0].to(torch.float16).numpy())

    timings = {}
    with torch.no_grad():
        for name, img in images.items():
            t = time.perf_counter()
            save(name, model([img.float() / 255])[0])
            timings[name] = time.perf_counter() - t
        for k, names in enumerate(BATCHES):
            outs = model([images[n].float() / 255 for n in names])
            for n, out in zip(names, outs):
                save(f"batch{k}_{n}", out)
    import torchvision
    (folder / "reference.json").write_text(json.dumps({
        "torch": torch.__version__, "torchvision": torchvision.__version__, "setup": info, "size_kw": size_kw,
        "sizes": {k: list(v) for k, v in sizes.items()}, "seconds_per_image": timings}))


# ------------------------------------------------------------------------------------------ comparison
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def compare(ref: dict, boxes, scores, labels, masks) -> dict:
    """Greedy matching of a candidate's detections to the reference's (same label, box IoU > 0.99)."""
    n_ref, n_new = len(ref["scores"]), len(scores)
    row = {"detections_reference": n_ref, "detections": n_new}
    if n_ref == 0 or n_new == 0:
        row.update(matched=0, matched_fraction=1.0 if n_ref == n_new else 0.0, score_max_abs=0.0,
                   mask_iou_min=1.0, mask_prob_max_abs=0.0)
        return row
    iou = box_iou(ref["boxes"].astype(np.float64), boxes.astype(np.float64))
    iou[ref["labels"][:, None] != labels[None, :]] = 0.0
    used = np.zeros(n_new, bool)
    pairs = []
    for i in np.argsort(-ref["scores"], kind="stable"):
        cand = np.where(~used & (iou[i] > 0.99))[0]
        if len(cand):
            j = cand[np.argmax(iou[i, cand])]
            used[j] = True
            pairs.append((i, j))
    score_diff, mask_iou, prob_diff = 0.0, 1.0, 0.0
    for i, j in pairs:
        score_diff = max(score_diff, abs(float(ref["scores"][i]) - float(scores[j])))
        a = ref["masks"][i].astype(np.float32)
        b = masks[j]
        if a.shape != b.shape:  # a shrunk image: masks are pasted at the original size either way
            mask_iou = min(mask_iou, 0.0)
            continue
        prob_diff = max(prob_diff, float(np.abs(a - b).max()))
        ba, bb = a > 0.5, b > 0.5
        union = np.logical_or(ba, bb).sum()
        mask_iou = min(mask_iou, float(np.logical_and(ba, bb).sum() / union) if union else 1.0)
    row.update(matched=len(pairs), matched_fraction=len(pairs) / max(n_ref, n_new), score_max_abs=score_diff,
               mask_iou_min=mask_iou, mask_prob_max_abs=prob_diff)
    return row


def load_ref(folder: Path, tag: str) -> dict:
    with np.load(folder / f"tv_{tag}.npz") as z:
        return {k: z[k] for k in z.files}


# ------------------------------------------------------------------------------------------ maskrt side
def run_maskrt(folder: Path, quick: bool, keep_onnx: bool) -> dict:
    import torch
    from safetensors.torch import load_file

    import maskrt
    from maskrt.backends.onnxrt.runner import OrtRunner
    from maskrt.export.onnx_export import to_onnx
    from maskrt.inference.predictor import Predictor
    from maskrt.model import build

    reference = json.loads((folder / "reference.json").read_text())
    size_kw = reference["size_kw"]
    sizes = {k: tuple(v) for k, v in reference["sizes"].items()}
    model = build("maskrcnn_resnet50_fpn", num_classes=91, **size_kw)
    model.load_state_dict(load_file(str(folder / "state.safetensors")), strict=True)
    model.eval()
    images = {n: torch.from_numpy(np.load(folder / f"image_{n}.npy")) for n in sizes}

    s = size_kw.get("min_size", 800)
    big = size_kw.get("max_size", 1333)
    wide = -(-big // 32) * 32
    exports = {
        f"canvas_{s}x{wide}_b2": dict(input_size=(s, wide), batch=2),
        f"canvas_{wide}x{wide}": dict(input_size=(wide, wide), dynamic_batch=True),
        "dynamic_size": dict(input_size=(s, wide), dynamic_batch=True, dynamic_size=True),
    }
    out = {"maskrt": maskrt.__version__, "torch": torch.__version__, "exports": {}, "rows": []}
    onnx_dir = folder if keep_onnx else Path(tempfile.mkdtemp(prefix="fidelity-onnx-", dir=folder))
    for name, kw in exports.items():
        path = onnx_dir / f"{name}.onnx"
        t = time.perf_counter()
        to_onnx(model, path, **kw)
        out["exports"][name] = {**{k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()},
                                "export_seconds": round(time.perf_counter() - t, 1),
                                "size_mb": round(path.stat().st_size / 2**20, 1)}
        print(f"exported {name} in {out['exports'][name]['export_seconds']} s", flush=True)
        runner = OrtRunner(path, providers=["CPUExecutionProvider"])
        shrunk = []
        with Predictor(runner, batch=3, prefetch=0, notify=shrunk.append) as predictor:
            groups = [[n] for n in sizes] + BATCHES
            for names in groups:
                t = time.perf_counter()
                dets = predictor.predict([images[n] for n in names])
                seconds = time.perf_counter() - t
                for n, d in zip(names, dets):
                    prep = predictor.prepare(images[n])
                    resized = n in RESIZED or prep.shrunk
                    row = compare(load_ref(folder, n), d.boxes.numpy(), d.scores.numpy(), d.labels.numpy(),
                                  d.masks.numpy())
                    row.update(export=name, image=n, size=list(sizes[n]), batch=names if len(names) > 1 else None,
                               resized=bool(resized), shrunk_to_fit=bool(prep.shrunk), seconds=round(seconds, 2))
                    out["rows"].append(row)
                    print(f"{name:<22} {n:<14} {'batch ' + '+'.join(names) if len(names) > 1 else 'alone':<40} "
                          f"{row['detections_reference']:>4} {row['detections']:>4} {row['matched_fraction']:>7.1%} "
                          f"{row['score_max_abs']:>9.2e} {row['mask_iou_min']:>6.3f}{'  resized' if resized else ''}",
                          flush=True)
        out["exports"][name]["notices"] = shrunk
        del runner
        if not keep_onnx:
            path.unlink()
    # torchvision itself in a batch vs alone (the reason batches are compared against images alone)
    out["torchvision_batch_vs_alone"] = []
    for k, names in enumerate(BATCHES):
        for n in names:
            b = load_ref(folder, f"batch{k}_{n}")
            row = compare(load_ref(folder, n), b["boxes"], b["scores"], b["labels"], b["masks"].astype(np.float32))
            row.update(image=n, batch=names)
            out["torchvision_batch_vs_alone"].append(row)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="min_size 320 / max_size 512 (minutes instead of ~15)")
    ap.add_argument("--json", default=str(DEFAULT_JSON), help=f"where to write the results (default {DEFAULT_JSON})")
    ap.add_argument("--reference-python", default=str(DEFAULT_REFERENCE_PYTHON),
                    help="an interpreter with torchvision (default: the reference virtualenv)")
    ap.add_argument("--keep", metavar="DIR", help="keep the reference files and ONNX exports in DIR")
    ap.add_argument("--make-reference", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.make_reference:
        make_reference(Path(args.make_reference), args.quick)
        return 0
    if not os.path.exists(args.reference_python):
        print(f"no reference interpreter at {args.reference_python}: run bash benchmarks/setup_torchvision_venv.sh",
              file=sys.stderr)
        return 2
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fidelity-"))
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cmd = [args.reference_python, __file__, "--make-reference", str(folder)] + (["--quick"] if args.quick else [])
    subprocess.run(cmd, check=True)
    reference = json.loads((folder / "reference.json").read_text())
    print(f"reference: torch {reference['torch']}, torchvision {reference['torchvision']}, "
          f"{reference['setup']['calibration_detections_above_0.05']} detections on the calibration image", flush=True)
    print(f"{'export':<22} {'image':<14} {'run':<40} {'n_tv':>4} {'n_mk':>4} {'matched':>7} {'score_dif':>9} "
          f"{'mIoU':>6}")
    result = run_maskrt(folder, args.quick, bool(args.keep))
    goal_rows = [r for r in result["rows"] if not r["resized"]]
    worst = min(r["matched_fraction"] for r in goal_rows)
    total = sum(r["matched"] for r in goal_rows) / max(1, sum(max(r["detections_reference"], r["detections"])
                                                               for r in goal_rows))
    result.update(
        benchmark="deploy_fidelity", mode="quick" if args.quick else "full", reference=reference,
        machine={"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        goal={"matched_fraction_min": GOAL, "applies_to": "images that are neither resized nor shrunk"},
        summary={"rows_in_goal": len(goal_rows), "worst_matched_fraction": worst, "overall_matched_fraction": total,
                 "pass": worst >= GOAL, "seconds": round(time.perf_counter() - t0, 1)})
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwithout resizing: worst {worst:.1%}, overall {total:.1%} matched over {len(goal_rows)} image runs "
          f"(goal >= {GOAL:.0%} each): {'PASS' if worst >= GOAL else 'FAIL'}; results in {args.json}")
    if not args.keep:
        import shutil
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if worst >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
