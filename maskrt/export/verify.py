"""Verify an exported graph against the PyTorch deploy forward on the same inputs.

Both backends see the same uint8 canvases. Detections are matched by label and box IoU (greedily, in the
reference's score order); matched pairs are compared output by output. fp32 must agree closely; fp16 gets
looser, stated tolerances and may lose or gain a few detections near the score threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor

from maskrt.errors import MaskrtError

TOLERANCES = {
    "fp32": {"boxes": 1e-3, "scores": 1e-4, "masks": 1e-3, "match_iou": 0.99, "unmatched_fraction": 0.0},
    "fp16": {"boxes": 2.0, "scores": 2e-2, "masks": 0.1, "match_iou": 0.8, "unmatched_fraction": 0.1},
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

    @property
    def ok(self) -> bool:
        return not self.failures

    def worst(self, key: str) -> float:
        return max((getattr(i, key) for i in self.images), default=0.0)

    def table(self) -> str:
        t = self.tolerances
        lines = [
            f"verify ({self.precision}): PyTorch deploy forward vs ONNX Runtime",
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
        )
        lines.append("result: " + ("PASS" if self.ok else "FAIL: " + "; ".join(self.failures)))
        return "\n".join(lines)


def _iou(a: Tensor, b: Tensor) -> Tensor:
    from maskrt.ops.boxes import box_iou

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
    allowed = int(tol["unmatched_fraction"] * max(n_ref, n_cand))
    unmatched = max(n_ref, n_cand) - len(pairs)
    if unmatched > allowed:
        failures.append(f"{source}: {unmatched} unmatched detections ({n_ref} vs {n_cand}; allowed {allowed})")
    for key in ("boxes", "scores", "masks"):
        if getattr(check, key) > tol[key]:
            failures.append(f"{source}: max |delta {key}| {getattr(check, key):.3g} > {tol[key]:g}")
    return check, failures


def verify_onnx(model, onnx_path: str, images: Sequence[Tensor], *, sources: Optional[Sequence[str]] = None,
                precision: Optional[str] = None) -> VerifyReport:
    """Run the deploy forward (fp32 PyTorch, the reference) and ONNX Runtime on ``images`` and compare.

    Args:
        model: the eager model that was exported (with its export-time detection settings).
        onnx_path: the exported file (its metadata gives the input size, batch and precision).
        images: (3, h, w) uint8 tensors of any size; they are prepared as the Predictor does.
    """
    from maskrt.runtime.predictor import prepare
    from maskrt.runtime.runners import OrtRunner, TorchRunner

    if not images:
        raise MaskrtError("verify needs at least one image")
    ort_runner = OrtRunner(onnx_path, providers=["CPUExecutionProvider"])
    meta = ort_runner.meta
    precision = precision or meta.precision
    report = VerifyReport(precision, TOLERANCES[precision])
    batch = meta.batch or 1
    torch_runner = TorchRunner(model, meta.input_size, batch)
    sources = list(sources) if sources else [f"image {i}" for i in range(len(images))]
    prepared = [prepare(img, meta, src) for img, src in zip(images, sources)]
    with ort_runner, torch_runner:
        for start in range(0, len(prepared), batch):
            chunk = prepared[start : start + batch]
            canvases = [p.canvas for p in chunk]
            canvases += [torch.zeros_like(canvases[0])] * (batch - len(canvases))
            feed = {"images": torch.stack(canvases)}
            ref = torch_runner.infer(feed)
            cand = ort_runner.infer(feed)
            for i, p in enumerate(chunk):
                check, failures = compare_outputs(ref, cand, i, p.source, precision)
                report.images.append(check)
                report.failures.extend(failures)
    return report
