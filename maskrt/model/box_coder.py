"""Box encoding and decoding (R-CNN deltas), as torchvision's ``BoxCoder``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

DEFAULT_CLIP = math.log(1000.0 / 16)


class BoxCoder:
    """Deltas ``(dx, dy, dw, dh)`` relative to reference boxes, divided by ``weights``.

    ``dw`` and ``dh`` are clamped to ``bbox_xform_clip`` (log(1000/16)) before ``exp`` when decoding.
    """

    def __init__(self, weights: tuple[float, float, float, float], bbox_xform_clip: float = DEFAULT_CLIP):
        self.weights = tuple(float(w) for w in weights)
        self.bbox_xform_clip = bbox_xform_clip

    def decode(self, deltas: Tensor, boxes: Tensor) -> Tensor:
        """Apply deltas to reference boxes.

        Args:
            deltas: (..., 4 * C) deltas for C boxes per reference box.
            boxes: (..., 4) XYXY reference boxes (same leading shape).

        Returns:
            (..., C, 4) decoded XYXY boxes.
        """
        # Written on (x, y) pairs, two coordinates per operator: each element goes through the same arithmetic,
        # in the same order, as coordinate by coordinate (bit-identical), in a third of the operators.
        boxes = boxes.to(deltas.dtype)[..., None, :]  # (..., 1, 4): one reference box for the C deltas
        size = boxes[..., 2:] - boxes[..., :2]  # (w, h)
        centre = boxes[..., :2] + 0.5 * size
        d = deltas.reshape(*deltas.shape[:-1], -1, 4)
        wx, wy, ww, wh = self.weights
        shift = _divide(d[..., :2], wx, wy)
        scale = torch.clamp(_divide(d[..., 2:], ww, wh), max=self.bbox_xform_clip)
        pred_centre = shift * size + centre
        half = 0.5 * (torch.exp(scale) * size)
        return torch.cat((pred_centre - half, pred_centre + half), dim=-1)

    def encode(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """Deltas that take ``proposals`` (N, 4) to ``reference_boxes`` (N, 4) -> (N, 4)."""
        wx, wy, ww, wh = self.weights
        ex_w = proposals[:, 2] - proposals[:, 0]
        ex_h = proposals[:, 3] - proposals[:, 1]
        ex_cx = proposals[:, 0] + 0.5 * ex_w
        ex_cy = proposals[:, 1] + 0.5 * ex_h
        gt_w = reference_boxes[:, 2] - reference_boxes[:, 0]
        gt_h = reference_boxes[:, 3] - reference_boxes[:, 1]
        gt_cx = reference_boxes[:, 0] + 0.5 * gt_w
        gt_cy = reference_boxes[:, 1] + 0.5 * gt_h
        return torch.stack(
            (wx * (gt_cx - ex_cx) / ex_w, wy * (gt_cy - ex_cy) / ex_h, ww * torch.log(gt_w / ex_w), wh * torch.log(gt_h / ex_h)),
            dim=1,
        )


def _divide(pair: Tensor, first: float, second: float) -> Tensor:
    """``pair`` (..., 2) divided by (first, second); a division by 1.0 is skipped (it returns its input exactly)."""
    if first == second:
        return pair if first == 1.0 else pair / first
    # Python scalars, not a tensor made from them: on CUDA that would be a host-to-device copy (a sync).
    return torch.cat((pair[..., :1] / first, pair[..., 1:] / second), dim=-1)
