"""Fixed-shape forms of the detection ops, registered as PyTorch custom ops (``torch.ops.maskrt.*``).

The deploy forward calls these so that tracing and export see one node per op with a static output shape,
instead of unrolling data-dependent Python. Each has an eager implementation here (the vectorised ops) and a
fake (meta) implementation for shape propagation; export rules to ONNX are attached by ``maskrt.export``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from maskrt.ops.nms import batched_nms
from maskrt.ops.poolers import multilevel_roi_align


@torch.library.custom_op("maskrt::batched_nms_mask", mutates_args=())
def batched_nms_mask(
    boxes: Tensor, scores: Tensor, idxs: Tensor, valid: Tensor, iou_threshold: float, num_categories: int,
    max_per_category: int = 0,
) -> Tensor:
    """Per-image, per-category NMS as a keep mask.

    Args:
        boxes: (B, N, 4) float XYXY.
        scores: (B, N) float.
        idxs: (B, N) int64 category of each box; boxes of different categories never suppress each other.
        valid: (B, N) bool; only valid boxes take part.
        iou_threshold: suppress when IoU > threshold.
        num_categories: idxs lie in [0, num_categories); a static bound that export rules use.
        max_per_category: keep at most this many boxes per image and category, the highest-scoring ones (0: no
            limit). A caller that then keeps the best ``n`` boxes overall loses nothing by passing ``n``: a box
            beyond the ``n`` best of its own category cannot be among the ``n`` best of all. The exported
            ``NonMaxSuppression`` gets it as ``max_output_boxes_per_class``, which bounds the output TensorRT
            allocates.

    Returns:
        (B, N) bool, True for boxes kept by NMS (never for invalid ones).
    """
    keep = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    for b in range(boxes.shape[0]):
        members = torch.where(valid[b])[0]
        kept = batched_nms(boxes[b, members], scores[b, members], idxs[b, members], iou_threshold)
        if max_per_category > 0 and kept.numel():
            kept = _first_per_category(kept, idxs[b, members][kept], max_per_category)
        keep[b, members[kept]] = True
    return keep


def _first_per_category(kept: Tensor, categories: Tensor, limit: int) -> Tensor:
    """The entries of ``kept`` (ordered by decreasing score) whose rank within their category is below ``limit``."""
    order = torch.sort(categories, stable=True)[1]  # by category, score order kept within each
    sorted_categories = categories[order]
    first = torch.ones_like(sorted_categories, dtype=torch.bool)
    first[1:] = sorted_categories[1:] != sorted_categories[:-1]
    position = torch.arange(sorted_categories.numel(), device=kept.device)
    start = torch.cummax(torch.where(first, position, torch.zeros_like(position)), dim=0)[0]
    rank = torch.empty_like(position)
    rank[order] = position - start
    return kept[rank < limit]


@batched_nms_mask.register_fake
def _(boxes, scores, idxs, valid, iou_threshold, num_categories, max_per_category=0):
    return torch.empty(scores.shape, dtype=torch.bool, device=scores.device)


@torch.library.custom_op("maskrt::multilevel_roi_align", mutates_args=())
def multilevel_roi_align_op(
    features: list[Tensor],
    rois: Tensor,
    scales: list[float],
    output_height: int,
    output_width: int,
    sampling_ratio: int,
    aligned: bool,
    mode: str,
    canonical_scale: int,
    canonical_level: int,
) -> Tensor:
    """Fixed-shape multi-level RoI Align: (K, 5) rois -> (K, C, output_height, output_width)."""
    return multilevel_roi_align(
        features, rois, (output_height, output_width), sampling_ratio, scales=scales,
        canonical_scale=canonical_scale, canonical_level=canonical_level, aligned=aligned, mode=mode,
    )


@multilevel_roi_align_op.register_fake
def _(features, rois, scales, output_height, output_width, sampling_ratio, aligned, mode, canonical_scale, canonical_level):
    first = features[0]
    return first.new_empty((rois.shape[0], first.shape[1], output_height, output_width))
