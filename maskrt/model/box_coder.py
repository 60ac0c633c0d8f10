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
        boxes = boxes.to(deltas.dtype)
        widths = boxes[..., 2] - boxes[..., 0]
        heights = boxes[..., 3] - boxes[..., 1]
        ctr_x = boxes[..., 0] + 0.5 * widths
        ctr_y = boxes[..., 1] + 0.5 * heights
        d = deltas.reshape(*deltas.shape[:-1], -1, 4)
        wx, wy, ww, wh = self.weights
        dx = d[..., 0] / wx
        dy = d[..., 1] / wy
        dw = torch.clamp(d[..., 2] / ww, max=self.bbox_xform_clip)
        dh = torch.clamp(d[..., 3] / wh, max=self.bbox_xform_clip)
        pred_ctr_x = dx * widths[..., None] + ctr_x[..., None]
        pred_ctr_y = dy * heights[..., None] + ctr_y[..., None]
        pred_w = torch.exp(dw) * widths[..., None]
        pred_h = torch.exp(dh) * heights[..., None]
        half_w = 0.5 * pred_w
        half_h = 0.5 * pred_h
        return torch.stack((pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=-1)

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
