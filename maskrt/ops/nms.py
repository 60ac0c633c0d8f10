"""Non-maximum suppression with torchvision's semantics, in plain PyTorch.

IoU is computed exactly as torchvision's kernel does (areas without +1, ``inter / (a1 + a2 - inter)`` in the
boxes' dtype) and a box is suppressed when its IoU with a kept, higher-scoring box is strictly greater than
the threshold. Ties in score keep the original order (stable sort).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from maskrt.core.errors import MaskrtError
from maskrt.ops.boxes import box_iou


def _check(boxes: Tensor, scores: Tensor) -> None:
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise MaskrtError(f"nms: boxes must have shape (N, 4), got {tuple(boxes.shape)}")
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise MaskrtError(f"nms: scores must have shape ({boxes.shape[0]},), got {tuple(scores.shape)}")


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS.

    Args:
        boxes: (N, 4) float, XYXY.
        scores: (N,) float.
        iou_threshold: boxes with IoU > threshold against a kept box are dropped.

    Returns:
        int64 (K,) indices of the kept boxes, by decreasing score.
    """
    _check(boxes, scores)
    n = boxes.shape[0]
    if n == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True)[1]
    sorted_boxes = boxes[order]
    keep_sorted = _greedy(sorted_boxes, iou_threshold)
    return order[keep_sorted.to(order.device)]


def _greedy(sorted_boxes: Tensor, iou_threshold: float) -> Tensor:
    """Positions (int64) kept by greedy NMS over boxes already sorted by decreasing score."""
    n = sorted_boxes.shape[0]
    # The IoU test is vectorised row by row; only the walk over kept boxes is sequential, because each
    # decision depends on the ones before it. Rows are computed in blocks to bound memory for large N.
    removed = np.zeros(n, dtype=bool)
    keep = []
    block = 1024
    for start in range(0, n, block):
        stop = min(start + block, n)
        over = (box_iou(sorted_boxes[start:stop], sorted_boxes[start:]) > iou_threshold).cpu().numpy()
        for i in range(start, stop):
            if removed[i]:
                continue
            keep.append(i)
            row = over[i - start]
            removed[i + 1 :] |= row[i - start + 1 :]
    return torch.as_tensor(keep, dtype=torch.int64)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category of ``idxs``; boxes of different categories never suppress each other.

    Args:
        boxes: (N, 4) float, XYXY.
        scores: (N,) float.
        idxs: (N,) int, the category of each box.
        iou_threshold: as in :func:`nms`.

    Returns:
        int64 (K,) indices of the kept boxes, by decreasing score.
    """
    _check(boxes, scores)
    if idxs.shape != scores.shape:
        raise MaskrtError(f"batched_nms: idxs must have shape {tuple(scores.shape)}, got {tuple(idxs.shape)}")
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    # torchvision switches strategy with size; both give the same kept set, and following the same switch
    # keeps even near-threshold rounding identical to it.
    limit = 4000 if boxes.device.type == "cpu" else 100_000
    # The offset trick separates categories only for boxes with non-negative coordinates (torchvision's
    # contract); boxes left of or above the image take the per-category path, which needs no offsets.
    if boxes.numel() > limit or bool(boxes.min() < 0):
        return _batched_nms_per_category(boxes, scores, idxs, iou_threshold)
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def _batched_nms_per_category(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for category in torch.unique(idxs):
        members = torch.where(idxs == category)[0]
        keep_mask[members[nms(boxes[members], scores[members], iou_threshold)]] = True
    kept = torch.where(keep_mask)[0]
    return kept[torch.sort(scores[kept], descending=True, stable=True)[1]]
