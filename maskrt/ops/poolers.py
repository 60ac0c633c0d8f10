"""FPN level assignment and multi-level RoI Align, equal to torchvision's ``MultiScaleRoIAlign``."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from maskrt.core.errors import MaskrtError
from maskrt.ops.boxes import box_area
from maskrt.ops.roi_align import BoxesLike, convert_boxes_to_rois, output_pair, roi_align


def infer_scale(feature_size: Sequence[int], image_size: Sequence[int]) -> float:
    """The power of two nearest to ``feature_height / image_height`` (torchvision's rule)."""
    # Host arithmetic on shapes (no tensor, so nothing to read back from a device): log2 of the ratio rounded
    # half to even in float32, as torchvision computes it on a 0-d tensor.
    approx = float(np.float32(float(feature_size[0]) / float(image_size[0])))
    return 2.0 ** float(np.round(np.log2(np.float32(approx))))


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
    if sampling_ratio > 0 and rois.shape[0] and all(f.shape[0] == features[0].shape[0] for f in features):
        return _fused(features, rois, levels, (ph, pw), sampling_ratio, scales, aligned, mode)
    first = features[0]
    result = first.new_zeros((rois.shape[0], first.shape[1], ph, pw))
    for level, (feature, scale) in enumerate(zip(features, scales)):
        idx = torch.where(levels == level)[0]
        if idx.numel():
            result[idx] = roi_align(feature, rois[idx], (ph, pw), scale, sampling_ratio, aligned, mode).to(result.dtype)
    return result


def _per_level(levels: Tensor, values: Sequence, dtype) -> Tensor:
    """``values[levels]`` as a tensor on ``levels``' device, made from Python numbers without a host copy."""
    out = torch.full(levels.shape, values[-1], dtype=dtype, device=levels.device)
    for level, value in enumerate(values[:-1]):
        out = torch.where(levels == level, torch.full((), value, dtype=dtype, device=levels.device), out)
    return out


def _fused(features: Sequence[Tensor], rois: Tensor, levels: Tensor, output: tuple[int, int], sampling_ratio: int,
           scales: Sequence[float], aligned: bool, mode: str) -> Tensor:
    """Multi-level RoI Align in one pass, with fixed shapes: the maps are stacked channels-last in one (rows, C)
    table and each RoI samples its own level's rows. Nothing depends on the data's values (no grouping by level,
    no host read), so it runs on a device without synchronising and inside a CUDA graph. Per RoI the arithmetic is
    :func:`maskrt.ops.roi_align.roi_align`'s with its level's scale, so the results are the same to the bit.

    On the CPU the RoIs are pooled in blocks (``roi_align``'s memory bound); on other devices in one block.
    """
    import sys

    _ra = sys.modules["maskrt.ops.roi_align"]  # the module (the package exports a function of that name)

    ph, pw = output
    for f in features:
        _ra._check_input(f, rois, mode)
    n, channels = features[0].shape[0], features[0].shape[1]
    k = rois.shape[0]
    compute = torch.float64 if features[0].dtype == torch.float64 else torch.float32
    heights = [int(f.shape[-2]) for f in features]
    widths = [int(f.shape[-1]) for f in features]
    starts, total = [], 0
    for h, w in zip(heights, widths):
        starts.append(total)
        total += n * h * w
    flat = torch.cat([f.permute(0, 2, 3, 1).reshape(-1, channels) for f in features], dim=0)
    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    rois_c = rois.to(compute)
    batch = rois[:, 0].to(torch.int64)
    valid = (batch >= 0) & (batch < n) & torch.isfinite(rois_c[:, 1:]).all(dim=1)
    # A box of negative area has no level (NaN, cast to an out-of-range index): no level pools it, as before.
    valid = valid & (levels >= 0) & (levels < len(features))
    # Invalid RoIs are pooled at a harmless place and zeroed at the end.
    rois_c = torch.where(valid[:, None], rois_c, torch.zeros_like(rois_c))
    batch = torch.where(valid, batch, torch.zeros_like(batch))
    scale = _per_level(levels, [float(v) for v in scales], compute)
    height = _per_level(levels, heights, torch.int64)
    width = _per_level(levels, widths, torch.int64)
    offset = _per_level(levels, starts, torch.int64)
    x0, y0, roi_w, roi_h = _ra._scaled_box(rois_c, scale, aligned)
    bin_h = roi_h / ph
    bin_w = roi_w / pw
    out_dtype = features[0].dtype
    if flat.device.type == "cpu":
        step = max(1, _ra._BLOCK_ELEMENTS // (ph * pw * channels))
    else:
        step = k
    blocks = []
    for start in range(0, k, step):
        sl = slice(start, min(start + step, k))
        blocks.append(_ra._pool_group(flat, height[sl], width[sl], batch[sl], y0[sl], x0[sl], bin_h[sl], bin_w[sl],
                                      ph, pw, sampling_ratio, sampling_ratio, mode, offset=offset[sl]).to(out_dtype))
    out = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=0)
    return torch.where(valid[:, None, None, None], out, torch.zeros((), dtype=out.dtype, device=out.device))


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
