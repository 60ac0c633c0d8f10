"""FPN level assignment and multi-level RoI Align, equal to torchvision's ``MultiScaleRoIAlign``."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from maskrt.core.errors import MaskrtError
from maskrt.ops.boxes import box_area
from maskrt.ops.roi_align import BoxesLike, convert_boxes_to_rois, output_pair, roi_align


def infer_scale(feature_size: Sequence[int], image_size: Sequence[int]) -> float:
    """The power of two nearest to ``feature_height / image_height`` (torchvision's rule)."""
    approx = float(feature_size[0]) / float(image_size[0])
    return 2.0 ** float(torch.tensor(approx).log2().round())


def level_of_box(
    boxes: Tensor,
    k_min: int,
    k_max: int,
    canonical_scale: int = 224,
    canonical_level: int = 4,
    eps: float = 1e-6,
) -> Tensor:
    """FPN level index (0-based from ``k_min``) of each XYXY box, by eq. 1 of the FPN paper.

    ``floor(canonical_level + log2(sqrt(area) / canonical_scale) + eps)``, clamped to ``[k_min, k_max]``.

    Args:
        boxes: (K, 4) XYXY in image pixels.

    Returns:
        (K,) int64 in ``[0, k_max - k_min]``.
    """
    s = torch.sqrt(box_area(boxes))
    levels = torch.floor(canonical_level + torch.log2(s / canonical_scale) + torch.tensor(eps, dtype=s.dtype))
    levels = torch.clamp(levels, min=k_min, max=k_max)
    return levels.to(torch.int64) - k_min


def level_range(scales: Sequence[float]) -> tuple[int, int]:
    """(k_min, k_max) for feature maps with the given scales (finest first)."""
    k_min = -math.log2(scales[0])
    k_max = -math.log2(scales[-1])
    return int(k_min), int(k_max)


def multilevel_roi_align(
    features: Sequence[Tensor],
    boxes: BoxesLike,
    output_size,
    sampling_ratio: int = 2,
    *,
    scales: Sequence[float] | None = None,
    image_size: Sequence[int] | None = None,
    canonical_scale: int = 224,
    canonical_level: int = 4,
    aligned: bool = False,
    mode: str = "avg",
) -> Tensor:
    """Assign each RoI to one FPN level and RoI-Align it there.

    Args:
        features: feature maps, finest first, each (N, C, Hi, Wi) with the same C.
        boxes: (K, 5) ``[batch_index, x1, y1, x2, y2]`` or a list of N (Ki, 4) tensors, XYXY image pixels.
        output_size: int or (PH, PW).
        sampling_ratio: as in :func:`maskrt.ops.roi_align`.
        scales: feature pixels per image pixel for each map (e.g. 1/4 ... 1/32). When omitted they are
            inferred from ``image_size`` as torchvision does.
        image_size: (H, W) of the (largest) input image, used only to infer ``scales``.

    Returns:
        (K, C, PH, PW), in the order of the RoIs.
    """
    features = list(features)
    if not features:
        raise MaskrtError("multilevel_roi_align needs at least one feature map")
    channels = {f.shape[1] for f in features}
    if len(channels) != 1:
        raise MaskrtError(f"multilevel_roi_align: feature maps must share one channel count, got {sorted(channels)}")
    if scales is None:
        if image_size is None:
            raise MaskrtError("multilevel_roi_align needs scales or image_size")
        scales = [infer_scale(f.shape[-2:], image_size) for f in features]
    if len(scales) != len(features):
        raise MaskrtError(f"got {len(scales)} scales for {len(features)} feature maps")
    rois = convert_boxes_to_rois(boxes, features[0])
    ph, pw = output_pair(output_size)
    if len(features) == 1:
        return roi_align(features[0], rois, (ph, pw), scales[0], sampling_ratio, aligned, mode)
    k_min, k_max = level_range(scales)
    levels = level_of_box(rois[:, 1:], k_min, k_max, canonical_scale, canonical_level)
    first = features[0]
    result = first.new_zeros((rois.shape[0], first.shape[1], ph, pw))
    for level, (feature, scale) in enumerate(zip(features, scales)):
        idx = torch.where(levels == level)[0]
        if idx.numel():
            result[idx] = roi_align(feature, rois[idx], (ph, pw), scale, sampling_ratio, aligned, mode).to(result.dtype)
    return result


class MultiLevelRoIAlign(torch.nn.Module):
    """Module form of :func:`multilevel_roi_align` over FPN levels given by name.

    ``forward(features: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[(H, W)])`` takes the maps
    named in ``featmap_names`` and infers scales from the largest image, exactly as torchvision does.
    """

    def __init__(self, featmap_names: Sequence[str], output_size, sampling_ratio: int, *,
                 canonical_scale: int = 224, canonical_level: int = 4):
        super().__init__()
        self.featmap_names = list(featmap_names)
        self.output_size = output_pair(output_size)
        self.sampling_ratio = sampling_ratio
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def forward(self, features: dict, boxes: BoxesLike, image_shapes: Sequence[Sequence[int]]) -> Tensor:
        maps = [v for k, v in features.items() if k in self.featmap_names]
        if not image_shapes:
            raise MaskrtError("images list should not be empty")
        largest = (max(int(s[0]) for s in image_shapes), max(int(s[1]) for s in image_shapes))
        return multilevel_roi_align(
            maps, boxes, self.output_size, self.sampling_ratio, image_size=largest,
            canonical_scale=self.canonical_scale, canonical_level=self.canonical_level,
        )
