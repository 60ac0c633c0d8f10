"""RoI Align (avg and max) and its inputs, in vectorised PyTorch.

Semantics follow torchvision's ``roi_align`` kernel:

* a RoI ``(x1, y1, x2, y2)`` is scaled by ``spatial_scale``; with ``aligned=True`` half a pixel is subtracted
  so that box corners sit on pixel corners, with ``aligned=False`` the RoI is at least 1x1;
* each of the ``PH x PW`` bins holds a ``gh x gw`` grid of sample points at the centres of its sub-cells;
  ``gh = sampling_ratio`` when it is > 0, else ``ceil(roi_height / PH)`` (adaptive, per RoI);
* a sample is bilinearly interpolated from its four neighbours; a sample farther than one pixel outside the
  map (``y < -1``, ``y > H``, ``x < -1`` or ``x > W``) is 0, and coordinates in ``[-1, 0)`` are clamped to 0;
* ``mode="avg"``: a bin is the mean of its samples (``count = max(gh * gw, 1)``);
  ``mode="max"``: a bin is the maximum of its interpolated sample values (not of the weighted corner
  terms, which is what ONNX Runtime computes). A bin with no samples is 0.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

from maskrt.core.errors import MaskrtError

BoxesLike = Union[Tensor, Sequence[Tensor]]

# Upper bound of gathered (sample, channel) elements per corner in one block, to bound memory.
_BLOCK_ELEMENTS = 1 << 20


def output_pair(output_size) -> tuple[int, int]:
    if isinstance(output_size, int):
        return output_size, output_size
    if isinstance(output_size, (list, tuple)) and len(output_size) == 2:
        return int(output_size[0]), int(output_size[1])
    raise MaskrtError(f"output_size must be an int or a pair of ints, got {output_size!r}")


def convert_boxes_to_rois(boxes: BoxesLike, like: Tensor | None = None) -> Tensor:
    """Turn a list of per-image (Ki, 4) boxes, or a (K, 5) tensor, into (K, 5) ``[batch_index, x1, y1, x2, y2]``."""
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise MaskrtError(f"rois must have shape (K, 5) [batch_index, x1, y1, x2, y2], got {tuple(boxes.shape)}")
        return boxes
    if not isinstance(boxes, (list, tuple)):
        raise MaskrtError(f"rois must be a (K, 5) tensor or a list of (Ki, 4) tensors, got {type(boxes).__name__}")
    for i, b in enumerate(boxes):
        if not isinstance(b, Tensor) or b.dim() != 2 or b.shape[1] != 4:
            shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
            raise MaskrtError(f"boxes[{i}] must be a (Ki, 4) tensor, got {shape}")
    if len(boxes) == 0:
        dtype = like.dtype if like is not None else torch.float32
        device = like.device if like is not None else None
        return torch.zeros((0, 5), dtype=dtype, device=device)
    concat = torch.cat(list(boxes), dim=0)
    ids = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)], dim=0)
    return torch.cat([ids, concat], dim=1)


def _check_input(input: Tensor, rois: Tensor, mode: str) -> None:
    if not isinstance(input, Tensor) or input.dim() != 4:
        raise MaskrtError(f"input must be a (N, C, H, W) tensor, got {getattr(input, 'shape', type(input).__name__)}")
    if not input.is_floating_point():
        raise MaskrtError(f"input must be a floating-point tensor, got {input.dtype}")
    if mode not in ("avg", "max"):
        raise MaskrtError(f"mode must be 'avg' or 'max', got {mode!r}")
    if rois.shape[0] and not rois.is_floating_point():
        raise MaskrtError(f"rois must be floating point, got {rois.dtype}")


def _start(input: Tensor, boxes: BoxesLike, output_size, mode: str) -> tuple[Tensor, tuple[int, int], Tensor]:
    """Validate the arguments of a pooling op; return (rois (K, 5), (PH, PW), zero output (K, C, PH, PW))."""
    rois = convert_boxes_to_rois(boxes, input)
    _check_input(input, rois, mode)
    ph, pw = output_pair(output_size)
    return rois, (ph, pw), input.new_zeros((rois.shape[0], input.shape[1], ph, pw))


def _axis_samples(start: Tensor, bin_size: Tensor, pooled: int, grid: int, size):
    """Sample positions and bilinear taps along one axis.

    ``size``: the map's extent along the axis, an int or a (K,) int64 tensor (one per RoI).
    Returns (low, high, w_low, w_high), each (K, pooled * grid): the two neighbouring indices and their
    weights; weights are 0 for samples outside [-1, size].
    """
    dtype = start.dtype
    p = torch.arange(pooled, dtype=dtype, device=start.device)
    i = torch.arange(grid, dtype=dtype, device=start.device) + 0.5
    # Same association as the reference kernel: (start + p * bin) + ((i + .5) * bin) / grid.
    pos = (start[:, None, None] + p[None, :, None] * bin_size[:, None, None]) + (
        i[None, None, :] * bin_size[:, None, None]
    ) / grid
    pos = pos.reshape(start.shape[0], pooled * grid)
    if isinstance(size, Tensor):  # one size per RoI (RoIs on different maps), (K,) int64
        limit = size[:, None]
        inside = (pos >= -1.0) & (pos <= limit)
        pos = torch.minimum(pos.clamp(min=0), limit.to(dtype))
        low = pos.floor().to(torch.int64)
        last = limit - 1
        at_edge = low >= last
        low = torch.where(at_edge, last.expand_as(low), low)
    else:
        inside = (pos >= -1.0) & (pos <= size)
        # Samples beyond the map have weight 0; clamping them to it keeps the int64 cast below from overflowing.
        pos = pos.clamp(min=0, max=size)
        low = pos.floor().to(torch.int64)
        at_edge = low >= size - 1
        low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    pos = torch.where(at_edge, low.to(dtype), pos)
    frac = pos - low.to(dtype)
    w_high = frac
    w_low = 1.0 - frac
    zero = torch.zeros((), dtype=dtype, device=start.device)
    return low, high, torch.where(inside, w_low, zero), torch.where(inside, w_high, zero)


def _corners(ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, iy: int, ix: int):
    """The four bilinear neighbours of sample (iy, ix) of every bin, in the reference kernel's order:
    (row index, row weight, column index, column weight) for (low, low), (low, high), (high, low), (high, high)."""
    return (
        (ylo[:, :, iy], wylo[:, :, iy], xlo[:, :, ix], wxlo[:, :, ix]),
        (ylo[:, :, iy], wylo[:, :, iy], xhi[:, :, ix], wxhi[:, :, ix]),
        (yhi[:, :, iy], wyhi[:, :, iy], xlo[:, :, ix], wxlo[:, :, ix]),
        (yhi[:, :, iy], wyhi[:, :, iy], xhi[:, :, ix], wxhi[:, :, ix]),
    )


def _pool_group(
    flat: Tensor, height, width, batch: Tensor, y0: Tensor, x0: Tensor, bin_h: Tensor, bin_w: Tensor,
    ph: int, pw: int, gh: int, gw: int, mode: str, offset: Tensor | None = None,
) -> Tensor:
    """Pool RoIs that share one sampling grid. ``flat`` is the (N*H*W, C) channels-last feature map.

    For RoIs on different maps stacked in one ``flat`` (multi-level pooling), ``height`` and ``width`` are (K,)
    int64 tensors and ``offset`` (K,) the row of ``flat`` where each RoI's map starts."""
    k = batch.shape[0]
    channels = flat.shape[1]
    ylo, yhi, wylo, wyhi = (t.reshape(k, ph, gh) for t in _axis_samples(y0, bin_h, ph, gh, height))
    xlo, xhi, wxlo, wxhi = (t.reshape(k, pw, gw) for t in _axis_samples(x0, bin_w, pw, gw, width))
    if isinstance(width, Tensor):
        base = (batch * (height * width) + (offset if offset is not None else 0))[:, None, None]
        width = width[:, None, None]
    else:
        base = batch[:, None, None] * (height * width)

    if flat.requires_grad and torch.is_grad_enabled():
        return _pool_group_differentiable(flat, width, base, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi,
                                          k, ph, pw, gh, gw, mode)
    rows = k * ph * pw
    taps = [flat.new_empty((rows, channels)) for _ in range(2)]
    out = flat.new_empty((rows, channels))
    # Sample positions are visited one at a time for every bin, accumulated in the reference kernel's order
    # (samples row by row; w1*v1 + w2*v2 + w3*v3 + w4*v4 within a sample) so that results match it to the last
    # bit. Buffers are reused and updated in place: the op is bound by memory traffic.
    first = True
    for iy in range(gh):
        for ix in range(gw):
            val = out if first else taps[1]
            for corner, (yi, wy, xi, wx) in enumerate(_corners(ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, iy, ix)):
                index = (base + yi[:, :, None] * width + xi[:, None, :]).reshape(-1)
                w = (wy[:, :, None] * wx[:, None, :]).reshape(-1, 1).to(flat.dtype)
                if corner == 0:
                    torch.index_select(flat, 0, index, out=val)
                    val.mul_(w)
                else:
                    torch.index_select(flat, 0, index, out=taps[0])
                    val.add_(taps[0].mul_(w))
            if not first:
                if mode == "avg":
                    out.add_(val)
                else:
                    torch.maximum(out, val, out=out)
            first = False
    out = out.reshape(k, ph, pw, channels)
    if mode == "avg":
        out = out / max(gh * gw, 1)
    return out.permute(0, 3, 1, 2)  # (k, C, ph, pw)


def _pool_group_differentiable(flat, width, base, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, k, ph, pw, gh, gw,
                               mode) -> Tensor:
    """:func:`_pool_group` without in-place buffers, so that autograd can differentiate it (training)."""
    out = None
    for iy in range(gh):
        for ix in range(gw):
            val = None
            for yi, wy, xi, wx in _corners(ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, iy, ix):
                index = (base + yi[:, :, None] * width + xi[:, None, :]).reshape(-1)
                w = (wy[:, :, None] * wx[:, None, :]).reshape(-1, 1).to(flat.dtype)
                term = flat.index_select(0, index) * w
                val = term if val is None else val + term
            if out is None:
                out = val
            else:
                out = out + val if mode == "avg" else torch.maximum(out, val)
    out = out.reshape(k, ph, pw, flat.shape[1])
    if mode == "avg":
        out = out / max(gh * gw, 1)
    return out.permute(0, 3, 1, 2)


def _scaled_box(rois: Tensor, scale, aligned: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x0, y0, width, height) of each RoI in feature-map pixels: ``scale`` is a float or one value per RoI;
    ``aligned`` shifts by half a pixel, otherwise the box is at least one pixel wide and high (torchvision's rule).
    """
    shift = 0.5 if aligned else 0.0
    x0 = rois[:, 1] * scale - shift
    y0 = rois[:, 2] * scale - shift
    roi_w = rois[:, 3] * scale - shift - x0
    roi_h = rois[:, 4] * scale - shift - y0
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    return x0, y0, roi_w, roi_h


def roi_align(
    input: Tensor,
    boxes: BoxesLike,
    output_size,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    mode: str = "avg",
) -> Tensor:
    """RoI Align.

    Args:
        input: (N, C, H, W) floating-point feature map.
        boxes: (K, 5) ``[batch_index, x1, y1, x2, y2]`` or a list of N tensors (Ki, 4) XYXY, in input-image
            pixels (multiplied by ``spatial_scale`` to reach feature-map pixels).
        output_size: int or (PH, PW).
        spatial_scale: feature-map pixels per image pixel (1/stride).
        sampling_ratio: sample points per bin along each axis; <= 0 picks ``ceil(roi_size / output_size)``.
        aligned: subtract half a pixel from the scaled box (pixel-corner convention).
        mode: "avg" or "max".

    Returns:
        (K, C, PH, PW) tensor of ``input``'s dtype. RoIs whose batch index is outside [0, N) give zeros.
    """
    rois, (ph, pw), out = _start(input, boxes, output_size, mode)
    if out.numel() == 0 or input.shape[-2] == 0 or input.shape[-1] == 0:
        return out
    n, channels, height, width = input.shape
    k = rois.shape[0]
    compute = torch.float64 if input.dtype == torch.float64 else torch.float32
    rois_c = rois.to(compute)
    batch = rois[:, 0].to(torch.int64)
    x0, y0, roi_w, roi_h = _scaled_box(rois_c, spatial_scale, aligned)
    bin_h = roi_h / ph
    bin_w = roi_w / pw
    if sampling_ratio > 0:
        grid_h = torch.full((k,), int(sampling_ratio), dtype=torch.int64, device=input.device)
        grid_w = grid_h
    else:
        # Non-finite boxes would ask for an unbounded grid; they pool to zeros instead.
        grid_h = torch.nan_to_num(torch.ceil(roi_h / ph), nan=0.0, posinf=0.0, neginf=0.0).clamp(min=0).to(torch.int64)
        grid_w = torch.nan_to_num(torch.ceil(roi_w / pw), nan=0.0, posinf=0.0, neginf=0.0).clamp(min=0).to(torch.int64)
    valid = (batch >= 0) & (batch < n) & torch.isfinite(rois_c[:, 1:]).all(dim=1)
    flat = input.permute(0, 2, 3, 1).reshape(n * height * width, channels)
    if input.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()

    # RoIs are grouped by their sampling grid (one group for a fixed sampling_ratio), then pooled in blocks
    # that bound the size of the gathered tensors.
    pairs = torch.stack([grid_h, grid_w], dim=1)
    pairs = torch.where(valid[:, None], pairs, torch.full_like(pairs, -1))
    for gh, gw in torch.unique(pairs, dim=0).tolist():
        if gh < 0:
            continue
        members = torch.where((pairs[:, 0] == gh) & (pairs[:, 1] == gw))[0]
        if gh == 0 or gw == 0:
            continue  # no samples: the bin is 0 in both modes
        per_roi = ph * pw * channels
        # Blocks bound memory on the CPU; a GPU takes each group at once (one launch per tap, not per block).
        step = max(1, _BLOCK_ELEMENTS // per_roi) if flat.device.type == "cpu" else max(1, members.shape[0])
        for start in range(0, members.shape[0], step):
            idx = members[start : start + step]
            pooled = _pool_group(
                flat, height, width, batch[idx], y0[idx], x0[idx], bin_h[idx], bin_w[idx], ph, pw, gh, gw, mode
            )
            out[idx] = pooled.to(out.dtype)
    return out


class RoIAlign(torch.nn.Module):
    """Module form of :func:`roi_align` that stores its arguments."""

    def __init__(self, output_size, spatial_scale: float, sampling_ratio: int, aligned: bool = False, mode: str = "avg"):
        super().__init__()
        self.output_size = output_pair(output_size)
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.mode = mode

    def forward(self, input: Tensor, rois: BoxesLike) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned, self.mode)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}, mode={self.mode!r}"
        )
