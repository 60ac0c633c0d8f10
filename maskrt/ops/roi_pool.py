"""Quantized Fast R-CNN RoI pooling (max), with torchvision's ``roi_pool`` semantics.

Box corners are scaled and rounded to whole feature-map cells (half away from zero), the RoI is at least
1x1 cell, and bin ``p`` covers cells ``[floor(p * bin), ceil((p + 1) * bin))`` offset by the RoI's start and
clipped to the map. A bin that ends up empty is 0; otherwise it is the maximum over its cells.
"""

from __future__ import annotations

import torch
from torch import Tensor

from maskrt.ops.roi_align import BoxesLike, _start, output_pair

_BLOCK_ELEMENTS = 1 << 23
# Corners are clamped to +-_FAR cells before the int64 cast (which would overflow for huge boxes). It is far
# beyond any map, so bin edges of every box that fits are untouched (a tighter, map-relative clamp changed
# the bin size of boxes with one corner a few maps away and so which bins reach the map).
_FAR = float(1 << 40)


def _round_half_away(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _bin_edges(
    start: Tensor, length: Tensor, pooled: int, size: int, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """(K, pooled) first and one-past-last cell of each bin along one axis, clipped to [0, size].

    The bin size is computed in ``dtype`` (the kernel's scalar type): float32 and float64 round some
    ``floor/ceil(p * length / pooled)`` differently, e.g. ``ceil(7 * (29 / 7))`` is 29 in float32, 30 in float64.
    """
    bin_size = length.to(dtype) / pooled
    p = torch.arange(pooled, dtype=dtype, device=start.device)
    lo = torch.floor(p[None, :] * bin_size[:, None]).to(torch.int64)
    hi = torch.ceil((p[None, :] + 1) * bin_size[:, None]).to(torch.int64)
    lo = (lo + start[:, None]).clamp(0, size)
    hi = (hi + start[:, None]).clamp(0, size)
    return lo, hi


def roi_pool(input: Tensor, boxes: BoxesLike, output_size, spatial_scale: float = 1.0) -> Tensor:
    """Quantized RoI max pooling.

    Args:
        input: (N, C, H, W) floating-point feature map.
        boxes: (K, 5) ``[batch_index, x1, y1, x2, y2]`` or a list of N tensors (Ki, 4), image pixels.
        output_size: int or (PH, PW).
        spatial_scale: feature-map cells per image pixel.

    Returns:
        (K, C, PH, PW), ``input``'s dtype. RoIs with a batch index outside [0, N) or non-finite corners give zeros.
    """
    rois, (ph, pw), out = _start(input, boxes, output_size, "max")
    if out.numel() == 0 or input.shape[-2] == 0 or input.shape[-1] == 0:
        return out
    n, channels, height, width = input.shape
    compute = torch.float64 if input.dtype == torch.float64 else torch.float32
    r = rois.to(compute)
    valid = (r[:, 0] >= 0) & (r[:, 0] < n) & torch.isfinite(r).all(dim=1)
    idx_valid = torch.where(valid)[0]
    if idx_valid.numel() == 0:
        return out
    r = r[idx_valid]
    batch = r[:, 0].to(torch.int64)
    corners = _round_half_away(r[:, 1:] * spatial_scale)
    corners = corners.clamp(-_FAR, _FAR).to(torch.int64)
    x1, y1, x2, y2 = corners.unbind(1)
    roi_w = (x2 - x1 + 1).clamp(min=1)
    roi_h = (y2 - y1 + 1).clamp(min=1)
    hs, he = _bin_edges(y1, roi_h, ph, height, compute)  # (k, ph)
    ws, we = _bin_edges(x1, roi_w, pw, width, compute)  # (k, pw)
    span_h = (he - hs).clamp(min=0)
    span_w = (we - ws).clamp(min=0)
    flat = input.permute(0, 2, 3, 1).reshape(n * height * width, channels)
    kv = idx_valid.shape[0]
    # RoIs are sorted by window size and pooled in blocks; a block pads every window to its largest one
    # (masked with -inf) and holds at most _BLOCK_ELEMENTS gathered values.
    win_h = span_h.amax(1).clamp(min=1)
    win_w = span_w.amax(1).clamp(min=1)
    order = torch.argsort(win_h * win_w, stable=True)
    per_roi = (win_h[order] * win_w[order]) * (ph * pw * channels)
    start = 0
    while start < kv:
        cost = torch.arange(1, kv - start + 1, device=per_roi.device) * per_roi[start:]
        step = max(1, int((cost <= _BLOCK_ELEMENTS).sum()))
        sel = order[start : start + step]
        mh, mw = int(win_h[sel].max()), int(win_w[sel].max())
        out[idx_valid[sel]] = _pool_block(flat, height, width, batch[sel], hs[sel], span_h[sel], ws[sel], span_w[sel], mh, mw).to(out.dtype)
        start += step
    return out


def _pool_block(flat, height, width, batch, hs, span_h, ws, span_w, mh: int, mw: int) -> Tensor:
    k, ph = hs.shape
    pw = ws.shape[1]
    channels = flat.shape[1]
    dh = torch.arange(mh, device=flat.device)
    dw = torch.arange(mw, device=flat.device)
    rows = hs[:, :, None] + dh  # (k, ph, mh)
    cols = ws[:, :, None] + dw  # (k, pw, mw)
    row_ok = dh < span_h[:, :, None]
    col_ok = dw < span_w[:, :, None]
    rows = torch.where(row_ok, rows, torch.zeros_like(rows)).clamp(max=height - 1)
    cols = torch.where(col_ok, cols, torch.zeros_like(cols)).clamp(max=width - 1)
    index = (
        batch[:, None, None, None, None] * (height * width)
        + rows[:, :, :, None, None] * width
        + cols[:, None, None, :, :]
    )  # (k, ph, mh, pw, mw)
    vals = flat.index_select(0, index.reshape(-1)).reshape(k, ph, mh, pw, mw, channels)
    ok = (row_ok[:, :, :, None, None] & col_ok[:, None, None, :, :])[..., None]
    vals = torch.where(ok, vals, torch.full_like(vals, float("-inf")))
    pooled = vals.amax(dim=(2, 4))  # (k, ph, pw, C)
    empty = (span_h[:, :, None] == 0) | (span_w[:, None, :] == 0)
    pooled = torch.where(empty[..., None], torch.zeros_like(pooled), pooled)
    return pooled.permute(0, 3, 1, 2)


class RoIPool(torch.nn.Module):
    """Module form of :func:`roi_pool`."""

    def __init__(self, output_size, spatial_scale: float):
        super().__init__()
        self.output_size = output_pair(output_size)
        self.spatial_scale = spatial_scale

    def forward(self, input: Tensor, rois: BoxesLike) -> Tensor:
        return roi_pool(input, rois, self.output_size, self.spatial_scale)
