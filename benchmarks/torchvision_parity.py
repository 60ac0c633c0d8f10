#!/usr/bin/env python
"""Check maskrt's eager Mask R-CNN against torchvision's, on the same weights and images.

Run it with a python that has torchvision (the reference virtualenv, see setup_torchvision_venv.sh):

    .venv-torchvision/bin/python benchmarks/torchvision_parity.py [--quick] [--json OUT]

For each model (R50-FPN v1 as torchvision builds it for its COCO v1 weights, R50-FPN v2, and an R18-FPN with v1
heads) the torchvision model gets seeded random weights: every norm layer's weight, bias, running mean and
running variance are randomised and the statistics are calibrated on a structured image so activations stay in
a realistic range, and the RPN objectness, the box classifier and the mask logits are scaled so that there are
detections above the default ``box_score_thresh`` of 0.05. The same state_dict is loaded into maskrt strictly,
and both models run on the same images: several sizes and aspect ratios, a batch of two images of different
sizes, one image with ``box_score_thresh`` between torchvision's 30th and 31st scores on it (so the count is
set by the threshold, not by the cap of 100) and runs with ``box_score_thresh=0.0`` (100 detections per image). Per image the number of detections, labels, boxes, scores
and pasted masks are compared; detections whose scores are exactly equal may come in either order, so those are
matched by label and box first and counted in the 'ties' column. Finally the v1 state_dict is rewritten with
torchvision's legacy key names, saved with torch.save and loaded through ``maskrt.model.load_checkpoint``.

Exit status: 0 when every case is within tolerance, 1 otherwise, 2 when torchvision cannot be imported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

try:
    import torchvision
    from torchvision.models import resnet50
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2
    from torchvision.models.detection._utils import overwrite_eps
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor, resnet_fpn_backbone
    from torchvision.models.detection.mask_rcnn import MaskRCNN as TVMaskRCNN
    from torchvision.ops.misc import FrozenBatchNorm2d as TVFrozenBN
except Exception as e:  # pragma: no cover - depends on the interpreter
    print(
        f"torchvision is not importable here ({type(e).__name__}: {e}).\n"
        "Run this script with the reference virtualenv: bash benchmarks/setup_torchvision_venv.sh, then\n"
        "  .venv-torchvision/bin/python benchmarks/torchvision_parity.py",
        file=sys.stderr,
    )
    sys.exit(2)

import maskrt  # noqa: E402
from maskrt.model import build, load_checkpoint  # noqa: E402
from maskrt.model.backbone import FrozenBatchNorm2d as MKFrozenBN  # noqa: E402

TOL = {"boxes": 1e-3, "scores": 1e-5, "masks": 1e-4}
HIGH_RANK = 30  # one case per model whose box_score_thresh leaves this many detections (fewer than the cap of 100)
CLS_LOGIT_STD = 2.5  # spread of the box classifier's logits on the calibration image
SEED = 20240607
DEFAULT_JSON = REPO / "benchmarks" / "results" / "torchvision_parity.json"

# (height, width) of the single-image cases; several are not multiples of 32, aspect ratios vary.
SIZES_FULL = [(480, 640), (375, 500), (641, 359), (300, 917)]
SIZES_QUICK = [(375, 500), (300, 917)]
BATCH_SIZES = [(427, 640), (512, 383)]


# --------------------------------------------------------------------------------------------- images
def structured_image(height: int, width: int, seed: int) -> torch.Tensor:
    """A (3, H, W) float image in [0, 1]: smooth coloured noise with random rectangles and ellipses."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(3, height, width)
    for cells, weight in ((4, 0.5), (16, 0.25), (64, 0.1)):
        coarse = torch.rand(1, 3, max(2, height * cells // 512), max(2, width * cells // 512), generator=g)
        img += weight * F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]
    img = img / 0.85
    yy = torch.arange(height, dtype=torch.float32)[:, None]
    xx = torch.arange(width, dtype=torch.float32)[None, :]
    for k in range(12):
        colour = torch.rand(3, 1, 1, generator=g)
        cy, cx = float(torch.rand((), generator=g)) * height, float(torch.rand((), generator=g)) * width
        ry = (0.05 + 0.25 * float(torch.rand((), generator=g))) * height
        rx = (0.05 + 0.25 * float(torch.rand((), generator=g))) * width
        if k % 2:
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        else:
            inside = ((yy - cy).abs() <= ry) & ((xx - cx).abs() <= rx)
        img = torch.where(inside[None], 0.8 * colour + 0.2 * img, img)
    img = img + 0.02 * torch.randn(3, height, width, generator=g)
    return img.clamp(0.0, 1.0).contiguous()


# --------------------------------------------------------------------------------------------- models
def tv_r50_v1(**kw) -> nn.Module:
    """torchvision's maskrcnn_resnet50_fpn as built for COCO_V1 weights: FrozenBN trunk, eps 0."""
    backbone = resnet50(weights=None, norm_layer=TVFrozenBN)
    backbone = _resnet_fpn_extractor(backbone, 3)
    model = TVMaskRCNN(backbone, num_classes=91, **kw)
    overwrite_eps(model, 0.0)
    return model


def tv_r50_v2(**kw) -> nn.Module:
    return maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, **kw)


def tv_r18_v1(**kw) -> nn.Module:
    """v1 heads on resnet_fpn_backbone('resnet18'): FrozenBN trunk with eps 1e-5."""
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=3)
    return TVMaskRCNN(backbone, num_classes=91, **kw)


MODELS = OrderedDict(
    [
        ("r50_fpn_v1", ("maskrcnn_resnet50_fpn", tv_r50_v1)),
        ("r50_fpn_v2", ("maskrcnn_resnet50_fpn_v2", tv_r50_v2)),
        ("r18_fpn_v1", ("maskrcnn_resnet18_fpn", tv_r18_v1)),
    ]
)

NORMS = (nn.BatchNorm2d, TVFrozenBN)


def _norm_modules(model: nn.Module):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, NORMS)]


@torch.no_grad()
def randomise(model: nn.Module, calib: torch.Tensor, seed: int) -> dict:
    """Seeded random, realistic weights for a torchvision Mask R-CNN (in place); returns a summary.

    1. Every norm layer gets random weight, bias, running_mean and running_var (positive).
    2. One forward on ``calib`` re-centres each norm layer's statistics on the data it sees (random factors on
       the measured mean and variance), so deep trunks neither explode nor vanish.
    3. The RPN objectness, box classifier and mask logits are scaled to a fixed spread on that image, which
       makes the classifier confident enough for detections above score 0.05.
    """
    g = torch.Generator().manual_seed(seed)
    norms = _norm_modules(model)
    for _, m in norms:
        c = m.running_mean.numel()
        m.weight.copy_(0.5 + torch.rand(c, generator=g))
        m.bias.copy_(0.2 * torch.randn(c, generator=g))
        m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
        m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))

    calibrated: set[str] = set()

    def pre_hook(name):
        def hook(module, args):
            x = args[0]
            if name in calibrated or x.numel() == 0 or x.shape[0] * x.shape[2] * x.shape[3] < 2:
                return
            c = x.shape[1]
            mean = x.mean(dim=(0, 2, 3))
            var = x.var(dim=(0, 2, 3), unbiased=False)
            std = var.clamp_min(1e-6).sqrt()
            module.running_mean.copy_(mean + 0.1 * std * torch.randn(c, generator=g))
            module.running_var.copy_((var * (0.7 + 0.6 * torch.rand(c, generator=g))).clamp_min(1e-4))
            calibrated.add(name)
        return hook

    outputs: dict[str, list] = {"rpn": [], "cls": [], "mask": []}

    def grab(key):
        def hook(module, args, out):
            outputs[key].append(out.detach().reshape(-1))
        return hook

    handles = [m.register_forward_pre_hook(pre_hook(n)) for n, m in norms]
    handles.append(model.rpn.head.cls_logits.register_forward_hook(grab("rpn")))
    handles.append(model.roi_heads.box_predictor.cls_score.register_forward_hook(grab("cls")))
    model.eval()
    try:
        # Pass 1: trunk, FPN, box head statistics; spread of RPN and class logits.
        model([calib])
        rpn_logits = torch.cat(outputs["rpn"])
        model.rpn.head.cls_logits.weight.mul_(2.5 / float(rpn_logits.std()))
        cls = model.roi_heads.box_predictor.cls_score
        logits = torch.cat(outputs["cls"])
        factor = CLS_LOGIT_STD / float(logits.std())
        cls.weight.mul_(factor)
        cls.bias.mul_(factor)
        # Pass 2: detections now exist, so the mask branch sees data (its norm layers in v2, its logits).
        outputs["cls"].clear()
        handles.append(model.roi_heads.mask_predictor.mask_fcn_logits.register_forward_hook(grab("mask")))
        dets = model([calib])[0]
        mask_scale = None
        if outputs["mask"]:
            mask_logits = torch.cat(outputs["mask"])
            if mask_logits.numel() > 1:
                mask_scale = 3.0 / float(mask_logits.std())
                model.roi_heads.mask_predictor.mask_fcn_logits.weight.mul_(mask_scale)
                model.roi_heads.mask_predictor.mask_fcn_logits.bias.mul_(mask_scale)
    finally:
        for h in handles:
            h.remove()
    return {
        "norm_layers": len(norms),
        "calibrated_norm_layers": len(calibrated),
        "cls_score_scale": factor,
        "mask_logit_scale": mask_scale,
        "calibration_detections_above_0.05": int((dets["scores"] > 0.05).sum()),
    }


def legacy_state_dict(state_dict) -> OrderedDict[str, torch.Tensor]:
    """Rename current torchvision keys to the names older torchvision releases used."""
    import re

    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state_dict.items():
        new = re.sub(r"^(backbone\.fpn\.(?:inner|layer)_blocks\.\d+)\.0\.(weight|bias)$", r"\1.\2", key)
        new = re.sub(r"^rpn\.head\.conv\.0\.0\.(weight|bias)$", r"rpn.head.conv.\1", new)
        m = re.match(r"^roi_heads\.mask_head\.(\d+)\.0\.(weight|bias)$", new)
        if m:
            new = f"roi_heads.mask_head.mask_fcn{int(m.group(1)) + 1}.{m.group(2)}"
        out[new] = value.clone()
    return out


# --------------------------------------------------------------------------------------------- compare
def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.numel() == 0:
        return 0.0
    return float((a.double() - b.double()).abs().max())


def _tie_order(t: dict, m: dict, n: int) -> list[int]:
    """Indices into maskrt's first ``n`` detections, in torchvision's order.

    The order of detections with exactly equal scores is not defined by either implementation (torchvision
    sorts with an unstable sort; maskrt takes a top-k). Within each run of equal torchvision scores, maskrt's
    detections at the same positions are matched to torchvision's by label and nearest box; everywhere else
    the order is taken as is.
    """
    perm = list(range(n))
    ts = t["scores"][:n]
    i = 0
    while i < n:
        j = i + 1
        while j < n and bool(ts[j] == ts[i]):
            j += 1
        if j - i > 1:
            free = list(range(i, j))
            for a in range(i, j):
                best, best_d = None, math.inf
                for b in free:
                    if int(m["labels"][b]) != int(t["labels"][a]):
                        continue
                    d = float((m["boxes"][b].double() - t["boxes"][a].double()).abs().max())
                    if d < best_d:
                        best, best_d = b, d
                if best is None:
                    return list(range(n))  # no consistent matching: compare in the given order
                perm[a] = best
                free.remove(best)
        i = j
    return perm


def compare(tv_out: list, mk_out: list) -> list[dict]:
    rows = []
    for t, m in zip(tv_out, mk_out):
        nt, nm = int(t["boxes"].shape[0]), int(m["boxes"].shape[0])
        n = min(nt, nm)
        perm = _tie_order(t, m, n)
        idx = torch.tensor(perm, dtype=torch.int64)
        mm = {k: m[k][:n][idx] for k in ("boxes", "labels", "scores", "masks")}
        tied = int((t["scores"][:n][1:] == t["scores"][:n][:-1]).sum()) if n > 1 else 0
        row = {
            "detections_tv": nt,
            "detections_maskrt": nm,
            "labels_equal": bool(nt == nm and torch.equal(t["labels"][:n], mm["labels"])),
            "label_mismatches": int((t["labels"][:n] != mm["labels"]).sum()) + abs(nt - nm),
            "boxes_max_abs": _max_abs(t["boxes"][:n], mm["boxes"]),
            "scores_max_abs": _max_abs(t["scores"][:n], mm["scores"]),
            "masks_max_abs": _max_abs(t["masks"][:n], mm["masks"]),
            "mask_shape_equal": tuple(t["masks"].shape) == tuple(m["masks"].shape),
            "equal_score_pairs": tied,
            "tie_reordered": sum(1 for a, b in enumerate(perm) if a != b),
        }
        row["pass"] = bool(
            nt == nm
            and row["labels_equal"]
            and row["mask_shape_equal"]
            and row["boxes_max_abs"] <= TOL["boxes"]
            and row["scores_max_abs"] <= TOL["scores"]
            and row["masks_max_abs"] <= TOL["masks"]
        )
        rows.append(row)
    return rows


def run_pair(tv_model, mk_model, images, keep: list | None = None) -> tuple[list[dict], float, float]:
    """Run both models on ``images`` and compare; torchvision's outputs are appended to ``keep`` if given."""
    with torch.inference_mode():
        t0 = time.perf_counter()
        tv_out = tv_model(images)
        t1 = time.perf_counter()
        mk_out = mk_model(images)
        t2 = time.perf_counter()
    if keep is not None:
        keep.extend(tv_out)
    return compare(tv_out, mk_out), t1 - t0, t2 - t1


# --------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="min_size 320 / max_size 512 and fewer images")
    ap.add_argument("--json", default=str(DEFAULT_JSON), help=f"where to write the results (default {DEFAULT_JSON})")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of: " + ", ".join(MODELS))
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)

    size_kw = dict(min_size=320, max_size=512) if args.quick else {}
    singles = SIZES_QUICK if args.quick else SIZES_FULL
    zero_thresh_single = singles[0]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in MODELS:
            ap.error(f"unknown model {m!r}")

    images = {hw: structured_image(*hw, seed=args.seed + 7 * i) for i, hw in enumerate(singles + BATCH_SIZES)}
    calib = structured_image(*((320, 427) if args.quick else (600, 800)), seed=args.seed - 1)

    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, maskrt {maskrt.__version__}; "
          f"{torch.get_num_threads()} threads; mode {'quick' if args.quick else 'full'} "
          f"(min_size/max_size {size_kw.get('min_size', 800)}/{size_kw.get('max_size', 1333)})")
    print(f"tolerances: boxes {TOL['boxes']:g} px, scores {TOL['scores']:g}, masks {TOL['masks']:g}\n")

    cases = []
    setup = {}
    header = f"{'model':<11} {'case':<28} {'img':>3} {'n_tv':>4} {'n_mk':>4} {'labels':>6} {'boxes':>9} {'scores':>9} {'masks':>9} {'ties':>4} {'t_tv':>6} {'t_mk':>6}  ok"
    print(header)
    print("-" * len(header))

    def record(model_key, case, rows, t_tv, t_mk, extra=None):
        for i, r in enumerate(rows):
            print(f"{model_key:<11} {case:<28} {i:>3} {r['detections_tv']:>4} {r['detections_maskrt']:>4} "
                  f"{'same' if r['labels_equal'] else 'DIFF':>6} {r['boxes_max_abs']:>9.2e} {r['scores_max_abs']:>9.2e} "
                  f"{r['masks_max_abs']:>9.2e} {r['tie_reordered']:>4} {t_tv:>6.2f} {t_mk:>6.2f}  {'ok' if r['pass'] else 'FAIL'}", flush=True)
        cases.append({"model": model_key, "case": case, "images": rows, "seconds_torchvision": t_tv,
                      "seconds_maskrt": t_mk, "pass": all(r["pass"] for r in rows), **(extra or {})})

    for model_key in models:
        mk_name, tv_builder = MODELS[model_key]
        torch.manual_seed(args.seed)
        tv_model = tv_builder(**size_kw)
        info = randomise(tv_model, calib, args.seed)
        state = OrderedDict((k, v.detach().clone()) for k, v in tv_model.state_dict().items())

        def pair(**extra_kw):
            kw = {**size_kw, **extra_kw}
            t = tv_builder(**kw)
            t.load_state_dict(state)
            m = build(mk_name, num_classes=91, **kw)
            m.load_state_dict(state, strict=True)
            return t.eval(), m.eval()

        tv_m, mk_m = pair()
        tv_eps = sorted({float(x.eps) for x in tv_m.modules() if isinstance(x, TVFrozenBN)})
        mk_eps = sorted({float(x.eps) for x in mk_m.modules() if isinstance(x, MKFrozenBN)})
        info.update(state_dict_keys=len(state), frozen_bn_eps_torchvision=tv_eps, frozen_bn_eps_maskrt=mk_eps,
                    maskrt_preset=mk_name)
        setup[model_key] = info
        if tv_eps != mk_eps:
            print(f"{model_key}: FrozenBatchNorm2d eps differ: torchvision {tv_eps}, maskrt {mk_eps}")

        tv_single = {}
        for hw in singles:
            kept: list = []
            rows, t_tv, t_mk = run_pair(tv_m, mk_m, [images[hw]], kept)
            tv_single[hw] = kept[0]["scores"]
            record(model_key, f"{hw[0]}x{hw[1]} thr0.05", rows, t_tv, t_mk, {"image_sizes": [list(hw)], "box_score_thresh": 0.05})
        batch = [images[hw] for hw in BATCH_SIZES]
        rows, t_tv, t_mk = run_pair(tv_m, mk_m, batch)
        name = "batch " + "+".join(f"{h}x{w}" for h, w in BATCH_SIZES) + " thr0.05"
        record(model_key, name, rows, t_tv, t_mk, {"image_sizes": [list(hw) for hw in BATCH_SIZES], "box_score_thresh": 0.05})

        if model_key == "r50_fpn_v1":
            # The same weights under torchvision's legacy key names, through a .pth file and load_checkpoint.
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "legacy_maskrcnn_r50_fpn_v1.pth")
                legacy = legacy_state_dict(state)
                renamed = sum(1 for a, b in zip(state, legacy) if a != b)
                torch.save(legacy, path)
                mk_legacy = build(mk_name, num_classes=91, **size_kw)
                load_checkpoint(path, mk_legacy)
            mk_legacy.eval()
            hw = singles[0]
            rows, t_tv, t_mk = run_pair(tv_m, mk_legacy, [images[hw]])
            record(model_key, f"legacy-keys .pth {hw[0]}x{hw[1]}", rows, t_tv, t_mk,
                   {"image_sizes": [list(hw)], "box_score_thresh": 0.05, "legacy_keys_renamed": renamed})
            del mk_legacy

        # A higher threshold, so that the number of detections is set by the scores rather than by the cap of 100.
        # The threshold sits halfway between torchvision's HIGH_RANK-th and next score on this image.
        hw = singles[-1]
        s_tv = tv_single[hw]
        high = float((s_tv[HIGH_RANK - 1] + s_tv[HIGH_RANK]) / 2) if s_tv.numel() > HIGH_RANK else 0.5
        tv_m, mk_m = pair(box_score_thresh=high)
        rows, t_tv, t_mk = run_pair(tv_m, mk_m, [images[hw]])
        record(model_key, f"{hw[0]}x{hw[1]} thr{high:.4f}", rows, t_tv, t_mk,
               {"image_sizes": [list(hw)], "box_score_thresh": high})

        tv_m, mk_m = pair(box_score_thresh=0.0)
        if not args.quick:
            hw = zero_thresh_single
            rows, t_tv, t_mk = run_pair(tv_m, mk_m, [images[hw]])
            record(model_key, f"{hw[0]}x{hw[1]} thr0.0", rows, t_tv, t_mk, {"image_sizes": [list(hw)], "box_score_thresh": 0.0})
        rows, t_tv, t_mk = run_pair(tv_m, mk_m, batch)
        name = "batch " + "+".join(f"{h}x{w}" for h, w in BATCH_SIZES) + " thr0.0"
        record(model_key, name, rows, t_tv, t_mk, {"image_sizes": [list(hw) for hw in BATCH_SIZES], "box_score_thresh": 0.0})
        del tv_m, mk_m, tv_model

    ok = all(c["pass"] for c in cases)
    summary = {}
    for c in cases:
        s = summary.setdefault(c["model"], {"boxes_max_abs": 0.0, "scores_max_abs": 0.0, "masks_max_abs": 0.0,
                                            "cases": 0, "failed_cases": 0, "detections_compared": 0,
                                            "tie_reordered": 0})
        s["cases"] += 1
        s["failed_cases"] += 0 if c["pass"] else 1
        for r in c["images"]:
            s["detections_compared"] += min(r["detections_tv"], r["detections_maskrt"])
            s["tie_reordered"] += r["tie_reordered"]
            for k in ("boxes_max_abs", "scores_max_abs", "masks_max_abs"):
                s[k] = max(s[k], r[k])
    print("\nper model, max over cases:")
    for k, s in summary.items():
        print(f"  {k:<11} boxes {s['boxes_max_abs']:.2e}  scores {s['scores_max_abs']:.2e}  masks {s['masks_max_abs']:.2e}"
              f"  ({s['detections_compared']} detections in {s['cases']} cases, {s['failed_cases']} failed)")
    reordered = sum(r["tie_reordered"] for c in cases for r in c["images"])
    print(f"\n'ties': detections whose order differed only among exactly equal scores ({reordered} in all); they are"
          " matched by label and box before comparing, since neither implementation defines that order.")
    print(f"\nresult: {'PASS' if ok else 'FAIL'} ({sum(not c['pass'] for c in cases)} of {len(cases)} cases beyond tolerance)")

    result = {
        "script": "benchmarks/torchvision_parity.py",
        "mode": "quick" if args.quick else "full",
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "maskrt": maskrt.__version__,
                     "python": platform.python_version()},
        "threads": torch.get_num_threads(),
        "seed": args.seed,
        "model_kwargs": size_kw,
        "tolerances": TOL,
        "cls_logit_std": CLS_LOGIT_STD,
        "setup": setup,
        "summary": summary,
        "cases": cases,
        "pass": ok,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
