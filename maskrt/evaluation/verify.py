"""Verification of one backend against another, detection by detection (an export against PyTorch, an engine
against its ONNX file).

Both runners see the same uint8 canvases, prepared by :mod:`maskrt.inference`. Detections are matched by label and box IoU (greedily, in the
reference's score order); matched pairs are compared output by output. fp32 must agree closely; fp16 gets
looser, stated tolerances and may lose or gain a few detections near the score threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from maskrt.core.errors import MaskrtError
from maskrt.ops.boxes import box_iou

TOLERANCES = {
    "fp32": {"boxes": 1e-3, "scores": 1e-4, "masks": 1e-3, "match_iou": 0.99, "unmatched_fraction": 0.0},
    "fp16": {"boxes": 2.0, "scores": 2e-2, "masks": 0.1, "match_iou": 0.8, "unmatched_fraction": 0.1},
    # INT8 (a Q/DQ graph against fp32 PyTorch). Rounding every conv/GEMM input to 8 bits moves marginal
    # detections in and out of the output and shifts low scores a lot, so only the reference's confident
    # detections (score >= 0.5) are compared, and each must be found (IoU >= 0.7, same label) with at most 10%
    # of them missing or extra per image. Measured on the shapes model (60 held-out scenes, minmax, 16
    # calibration images): worst box 8.6 px at a 384 px canvas, worst score 0.15, worst pair IoU 0.86, worst
    # per-image mean mask IoU 0.94, nothing unmatched; the bounds are about twice those. A mask probability
    # can flip from one side of 0.5 to the other at a border pixel, so the maximum |delta| is not bounded
    # (masks 1.0); mask agreement is the mean IoU of the thresholded masks (>= 0.8).
    "int8": {"boxes": 16.0, "scores": 0.3, "masks": 1.0, "match_iou": 0.7, "unmatched_fraction": 0.1,
             "confident_score": 0.5, "mask_iou": 0.8},
}


@dataclass
class ImageCheck:
    source: str
    reference: int
    candidate: int
    matched: int
    boxes: float = 0.0
    scores: float = 0.0
    masks: float = 0.0
    mask_iou: float = 1.0


@dataclass
class VerifyReport:
    precision: str
    tolerances: dict
    images: list[ImageCheck] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    title: str = "PyTorch deploy forward vs ONNX Runtime"

    @property
    def ok(self) -> bool:
        return not self.failures

    def worst(self, key: str) -> float:
        return max((getattr(i, key) for i in self.images), default=0.0)

    def table(self) -> str:
        t = self.tolerances
        lines = [
            f"verify ({self.precision}): {self.title}",
            f"{'image':24s} {'dets':>9s} {'matched':>7s} {'|d boxes|':>10s} {'|d scores|':>10s} {'|d masks|':>10s} {'mask IoU':>8s}",
        ]
        for i in self.images:
            lines.append(
                f"{i.source[:24]:24s} {i.reference:>4d}/{i.candidate:<4d} {i.matched:>7d} {i.boxes:>10.2e} {i.scores:>10.2e} "
                f"{i.masks:>10.2e} {i.mask_iou:>8.4f}"
            )
        lines.append(
            f"tolerance ({self.precision}): boxes {t['boxes']:g} px, scores {t['scores']:g}, mask probabilities "
            f"{t['masks']:g}, unmatched detections <= {t['unmatched_fraction']:.0%}"
            + (f" (detections scoring >= {t['confident_score']:g} only)" if "confident_score" in t else "")
            + (f", mean mask IoU >= {t['mask_iou']:g}" if "mask_iou" in t else "")
        )
        lines.append("result: " + ("PASS" if self.ok else "FAIL: " + "; ".join(self.failures)))
        return "\n".join(lines)


def _iou(a: Tensor, b: Tensor) -> Tensor:
    return box_iou(a, b) if a.numel() and b.numel() else torch.zeros((a.shape[0], b.shape[0]))


def compare_outputs(ref: dict, cand: dict, index: int, source: str, precision: str) -> tuple[ImageCheck, list[str]]:
    tol = TOLERANCES[precision]
    n_ref = int(ref["num_detections"][index])
    n_cand = int(cand["num_detections"][index])
    rb, cb = ref["boxes"][index, :n_ref].float(), cand["boxes"][index, :n_cand].float()
    rl, cl = ref["labels"][index, :n_ref].long(), cand["labels"][index, :n_cand].long()
    iou = _iou(rb, cb)
    iou[rl[:, None] != cl[None, :]] = -1
    used = set()
    pairs = []
    for r in range(n_ref):
        if n_cand == 0:
            break
        row = iou[r].clone()
        for c in used:
            row[c] = -1
        c = int(row.argmax())
        if float(row[c]) >= tol["match_iou"]:
            used.add(c)
            pairs.append((r, c))
    confident = tol.get("confident_score")
    if confident is not None:  # int8: the reference's confident detections are compared, and every one found
        rs, cs = ref["scores"][index, :n_ref].float(), cand["scores"][index, :n_cand].float()
        sure_pairs = [(r, c) for r, c in pairs if float(rs[r]) >= confident]
        matched_r, matched_c = {r for r, _ in pairs}, {c for _, c in pairs}
        missing = sum(1 for r in range(n_ref) if float(rs[r]) >= confident and r not in matched_r)
        extra = sum(1 for c in range(n_cand) if float(cs[c]) >= confident and c not in matched_c)
        total = max(int((rs >= confident).sum()), int((cs >= confident).sum()))
        pairs, unmatched = sure_pairs, missing + extra
    else:
        total, unmatched = max(n_ref, n_cand), max(n_ref, n_cand) - len(pairs)
    check = ImageCheck(source, n_ref, n_cand, len(pairs))
    if pairs:
        ri = torch.tensor([p[0] for p in pairs])
        ci = torch.tensor([p[1] for p in pairs])
        check.boxes = float((rb[ri] - cb[ci]).abs().max())
        check.scores = float((ref["scores"][index, ri].float() - cand["scores"][index, ci].float()).abs().max())
        rm, cm = ref["masks"][index, ri].float(), cand["masks"][index, ci].float()
        check.masks = float((rm - cm).abs().max())
        inter = ((rm > 0.5) & (cm > 0.5)).flatten(1).sum(1).float()
        union = ((rm > 0.5) | (cm > 0.5)).flatten(1).sum(1).float()
        check.mask_iou = float(torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).mean())
    failures = []
    allowed = int(tol["unmatched_fraction"] * total)
    if unmatched > allowed:
        what = f"detections scoring >= {confident:g}" if confident is not None else "detections"
        failures.append(f"{source}: {unmatched} unmatched {what} ({n_ref} vs {n_cand}; allowed {allowed})")
    if check.mask_iou < tol.get("mask_iou", 0.0):
        failures.append(f"{source}: mean mask IoU {check.mask_iou:.3f} < {tol['mask_iou']:g}")
    for key in ("boxes", "scores", "masks"):
        if getattr(check, key) > tol[key]:
            failures.append(f"{source}: max |delta {key}| {getattr(check, key):.3g} > {tol[key]:g}")
    return check, failures


def verify_runners(reference, candidate, images: Sequence[Tensor], *, sources: Optional[Sequence[str]] = None,
                   precision: Optional[str] = None, title: str = "") -> VerifyReport:
    """Run two runners on the same prepared ``images`` and compare their outputs detection by detection.

    Args:
        reference, candidate: runners (activated here) with the same input size and batch; the candidate's
            metadata gives the image preparation and, unless ``precision`` is given, the tolerances.
        images: (3, h, w) uint8 tensors of any size; they are prepared as the Predictor does.
    """
    from maskrt.inference.predictor import make_batch, prepare

    if not images:
        raise MaskrtError("verify needs at least one image")
    meta = candidate.meta
    precision = precision or meta.precision
    if precision not in TOLERANCES:
        raise MaskrtError(f"no verification tolerances for precision {precision!r}; choose {', '.join(TOLERANCES)}")
    report = VerifyReport(precision, TOLERANCES[precision], title=title or f"{reference.name} vs {candidate.name}")
    batch = candidate.batch or 1
    sources = list(sources) if sources else [f"image {i}" for i in range(len(images))]
    prepared = [prepare(img, meta, src) for img, src in zip(images, sources)]
    with reference, candidate:
        for start in range(0, len(prepared), batch):
            chunk = make_batch(prepared[start : start + batch], batch, image_sizes=True)  # each runner takes its own
            ref = reference.infer(chunk.feeds)
            cand = candidate.infer(chunk.feeds)
            for i, p in enumerate(chunk.prepared):
                check, failures = compare_outputs(ref, cand, i, p.source, precision)
                report.images.append(check)
                report.failures.extend(failures)
    return report


def verify_onnx(model, onnx_path: str, images: Sequence[Tensor], *, sources: Optional[Sequence[str]] = None,
                precision: Optional[str] = None) -> VerifyReport:
    """Run the deploy forward (fp32 PyTorch, the reference) and ONNX Runtime on ``images`` and compare.

    Args:
        model: the eager model that was exported (with its export-time detection settings).
        onnx_path: the exported file (its metadata gives the input size, batch and precision).
        images: (3, h, w) uint8 tensors of any size; they are prepared as the Predictor does.
    """
    from maskrt.backends.onnxrt.runner import OrtRunner
    from maskrt.backends.torch.runner import TorchRunner

    ort_runner = OrtRunner(onnx_path, providers=["CPUExecutionProvider"])
    meta = ort_runner.meta
    torch_runner = TorchRunner(model, meta.input_size, meta.batch or 1, dynamic_size=meta.dynamic_size)
    return verify_runners(torch_runner, ort_runner, images, sources=sources, precision=precision,
                          title="PyTorch deploy forward vs ONNX Runtime")


def export_checks(model, input_size: Sequence[int], extra_images: Sequence[tuple] = (),
                  max_detections: Optional[int] = None, score_threshold: Optional[float] = None,
                  echo: Callable[[str], None] = print) -> Callable[[str], None]:
    """A ``before_commit`` check for :func:`maskrt.export.to_onnx`: verify the written file against ``model`` on
    generated images (the canvas size, a smaller landscape one, a portrait one) plus ``extra_images``
    ((image, name) pairs), print the table with ``echo``, and refuse (MaskrtError; nothing is written) beyond
    tolerance."""
    from maskrt.data.images import synthetic_image
    from maskrt.export.onnx_export import detection_settings

    h, w = int(input_size[0]), int(input_size[1])
    images = [synthetic_image(h, w, 101), synthetic_image(int(h * 0.75), int(w * 0.6), 102),
              synthetic_image(w // 2, h // 2, 103)]
    sources = ["generated HxW", "generated smaller", "generated portrait"]
    for image, name in extra_images:
        images.append(image)
        sources.append(name)

    def check(path: str) -> None:
        with detection_settings(model, max_detections, score_threshold):
            report = verify_onnx(model, path, images, sources=sources)
        echo(report.table())
        if not report.ok:
            raise MaskrtError("verification failed: ONNX Runtime's outputs are beyond tolerance (see the table "
                              "above); nothing was written")

    return check
