"""Where each image of a padded batch lies, so that the network computes every image as if it were alone.

The eager model (as torchvision) pads an image only to the next multiple of ``size_divisible`` (32). On a larger
canvas, or next to a larger image in a batch, three things change: the padding is no longer zero where
normalisation would make it non-zero, convolutions near the image's edge see activations of the padding instead
of their zero padding, and anchors over the padding compete for the RPN's top-k. :class:`ValidRegion` holds each
image's own padded extent (``extents``: (B, 2) multiples of 32) and undoes all three: :meth:`mask` zeroes a
feature map outside each image's extent at that map's stride (called before every convolution that looks at
neighbours), :meth:`replicate_edge` repeats the last valid row and column once (RoI Align's bilinear taps at the
edge of a lone image are clamped to it), and :meth:`anchor_grid` gives each image's anchors with the strides the
image alone would have, with a validity mask.

Every step is made of tensor operations on shapes, so the same code traces into a graph with dynamic height and
width. With an image that fills the canvas every mask is all ones and the results are those of the eager model.
"""

from __future__ import annotations

import math
import threading
from typing import Sequence

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake

_CACHE_LOCK = threading.Lock()


class AnchorTable:
    """What every level's anchors share whatever the images: for each anchor of each level (levels finest first,
    locations row-major, cell anchors innermost, as :meth:`ValidRegion.anchor_grid` orders them) its map position
    ``(x, y, x, y)``, its cell anchor and its level. Built once per set of map sizes (:meth:`cached`), so that a
    forward makes every level's anchors and validity in a dozen operators instead of about twenty per level."""

    # Tables kept per anchor generator: a few canvas sizes, never evicted (a captured CUDA graph may read them),
    # each at most MAX_BYTES (40 bytes an anchor: 11 MB at 800x1344; a larger canvas builds its table per forward).
    MAX_CACHED = 4
    MAX_BYTES = 64 * 2**20

    def __init__(self, sizes: Sequence[tuple[int, int]], strides: Sequence[int], bases: Sequence[Tensor]):
        device = bases[0].device
        positions, cells, levels = [], [], []
        for level, ((h, w), base) in enumerate(zip(sizes, bases)):
            a = base.shape[0]
            y = torch.arange(h, device=device)[:, None, None].expand(h, w, a).reshape(-1)
            x = torch.arange(w, device=device)[None, :, None].expand(h, w, a).reshape(-1)
            positions.append(torch.stack((x, y, x, y), dim=-1).to(torch.int32))
            cells.append(base.to(torch.float32)[None, None].expand(h, w, a, 4).reshape(-1, 4))
            levels.append(torch.full((h * w * a,), level, dtype=torch.int64, device=device))
        self.sizes = [int(p.shape[0]) for p in positions]
        self.positions = torch.cat(positions)  # (N, 4) int32
        self.cells = torch.cat(cells)  # (N, 4) float32
        self.levels = torch.cat(levels)  # (N,) int64
        # (1, L, 1) strides, filled on the device (a tensor made from a Python list would be a host copy)
        self.strides = torch.stack([torch.full((1,), s, dtype=torch.int64, device=device) for s in strides])[None]
        # own stride (h, w) and extent (h, w) -> (own w, own h, own w, own h, extent w, extent h)
        self.columns = torch.stack([torch.full((), c, dtype=torch.int64, device=device) for c in (1, 0, 1, 0, 3, 2)])

    @classmethod
    def cached(cls, cache: dict, sizes, strides, bases, fake: bool = False) -> AnchorTable:
        """The table for these map sizes from ``cache``, built and kept on first use. A forward on fake tensors
        (memory counting, shape checks) neither reads nor fills the cache: fake and real tensors do not mix."""
        if fake:
            return cls(sizes, strides, bases)
        key = (tuple(sizes), tuple(strides), str(bases[0].device))
        table = cache.get(key)
        if table is not None:
            return table
        table = cls(sizes, strides, bases)
        if table.nbytes > cls.MAX_BYTES or is_fake(table.positions):
            return table
        with _CACHE_LOCK:  # two threads on one model (a server): one table per key, the bound kept
            if key not in cache and len(cache) < cls.MAX_CACHED:
                if table.positions.device.type == "cuda":
                    # Complete before another thread's stream can read it (once per canvas; never inside a capture,
                    # which warms up first).
                    torch.cuda.current_stream(table.positions.device).synchronize()
                cache[key] = table
            return cache.get(key, table)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.positions, self.cells, self.levels))


class ValidRegion:
    """Per-image extents of a padded batch.

    Args:
        extents: (B, 2) int64 (height, width) of each image padded to ``size_divisible`` on its own.
        canvas: (H, W) of the batch the features were computed from (ints; traced values are fine).
    """

    def __init__(self, extents: Tensor, canvas):
        self.extents = extents.to(torch.int64)
        self.canvas = (canvas[0], canvas[1])
        self._masks: dict = {}

    @staticmethod
    def stride_of(canvas_side, feature_side) -> int:
        """The power of two a feature map is strided by (a trace-time constant: strides are the architecture's)."""
        return 2 ** int(round(math.log2(float(canvas_side) / float(feature_side))))

    def feature_extents(self, stride: int) -> Tensor:
        """(B, 2) int64: each image's extent on a map of ``stride`` (ceil, as the convolutions compute it)."""
        key = ("extents", stride)
        if key not in self._masks:  # computed once per forward and stride: fewer launches
            self._masks[key] = torch.div(self.extents + (stride - 1), stride, rounding_mode="floor")
        return self._masks[key]

    def _positions(self, height, width) -> tuple[Tensor, Tensor]:
        """(h,) and (w,) int64 row and column numbers of a map (made once per forward and map size)."""
        key = ("positions", height, width)
        if key not in self._masks:
            device = self.extents.device
            self._masks[key] = (torch.arange(height, device=device), torch.arange(width, device=device))
        return self._masks[key]

    def _valid(self, height, width, stride: int) -> tuple[Tensor, Tensor]:
        key = ("valid", stride, height, width)
        if key not in self._masks:
            ext = self.feature_extents(stride)
            rows, cols = self._positions(height, width)
            self._masks[key] = (rows[None, :] < ext[:, :1], cols[None, :] < ext[:, 1:])  # (B, h), (B, w)
        return self._masks[key]

    def mask(self, t: Tensor) -> Tensor:
        """``t`` (B, C, h, w) with everything outside each image's extent set to zero."""
        h, w = t.shape[-2], t.shape[-1]
        stride = self.stride_of(self.canvas[0], h)
        key = (stride, t.dtype, t.device)
        m = self._masks.get(key)
        if m is None:
            rows, cols = self._valid(h, w, stride)
            m = (rows[:, None, :, None] & cols[:, None, None, :]).to(t.dtype)
            self._masks[key] = m
        return t * m

    def replicate_edge(self, t: Tensor) -> Tensor:
        """``t`` with the first row and column past each image's extent set to the last ones inside it.

        RoI Align on an image alone clamps bilinear taps that fall past the map's last row or column to it; on a
        larger map those taps read the next row or column instead, which this makes equal to the last valid one.
        """
        h, w = t.shape[-2], t.shape[-1]
        ext = self.feature_extents(self.stride_of(self.canvas[0], h))
        rows, cols = self._positions(h, w)
        at_col = (cols[None, :] == ext[:, 1:])[:, None, None, :]  # (B, 1, 1, w)
        previous_col = torch.cat([t[..., :1], t[..., :-1]], dim=-1)
        t = torch.where(at_col, previous_col, t)
        at_row = (rows[None, :] == ext[:, :1])[:, None, :, None]  # (B, 1, h, 1)
        previous_row = torch.cat([t[..., :1, :], t[..., :-1, :]], dim=-2)
        return torch.where(at_row, previous_row, t)

    def anchor_grids(self, features: Sequence[Tensor], bases: Sequence[Tensor], cache: dict) -> tuple[list, list]:
        """:meth:`anchor_grid` for every level at once (the same values), from an :class:`AnchorTable` kept in
        ``cache`` for these map sizes. For running; a trace takes :meth:`anchor_grid`, level by level, whose
        operators follow dynamic map sizes."""
        sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in features]
        strides = [self.stride_of(self.canvas[0], h) for h, _ in sizes]
        table = AnchorTable.cached(cache, sizes, strides, bases, fake=is_fake(self.extents) or is_fake(bases[0]))
        extents = self.extents[:, None, :]  # (B, 1, 2)
        ext = torch.div(extents + (table.strides - 1), table.strides, rounding_mode="floor")  # (B, L, 2)
        own = torch.div(extents, ext, rounding_mode="floor")  # each image's own stride per level, (h, w)
        per_anchor = torch.cat((own, ext), dim=-1).index_select(-1, table.columns)[:, table.levels]  # (B, N, 6)
        anchors = table.positions * per_anchor[..., :4] + table.cells  # int64 products, then float32 as per level
        valid = (table.positions[:, :2] < per_anchor[..., 4:]).all(dim=-1)
        return list(anchors.split(table.sizes, dim=1)), list(valid.split(table.sizes, dim=1))

    def anchor_grid(self, feature: Tensor, base: Tensor) -> tuple[Tensor, Tensor]:
        """Anchors of one level for every image, as the eager model places them for the image alone.

        Args:
            feature: the level's map (B, C, h, w) on the canvas.
            base: (A, 4) zero-centred cell anchors (:func:`maskrt.model.anchors.cell_anchors`).

        Returns:
            anchors (B, h * w * A, 4) float32, location-major as the eager order, at ``(x, y) * stride`` with the
            stride the image alone gets (its padded size // its feature size, per axis: 61 for the stride-64 level
            of an 800-pixel side, say); valid (B, h * w * A) bool, False for locations past the image's extent.
        """
        h, w = feature.shape[-2], feature.shape[-1]
        stride = self.stride_of(self.canvas[0], h)
        ext = self.feature_extents(stride)  # (B, 2)
        own_stride = torch.div(self.extents, ext, rounding_mode="floor")  # (B, 2) int64
        rows, cols = self._valid(h, w, stride)
        y, x = self._positions(h, w)
        shift_y = y[None, :] * own_stride[:, :1]  # (B, h), int64: exact, as the float anchors it makes
        shift_x = x[None, :] * own_stride[:, 1:]  # (B, w)
        b = shift_x.shape[0]
        sx = shift_x[:, None, :].expand(b, h, w)
        sy = shift_y[:, :, None].expand(b, h, w)
        shifts = torch.stack((sx, sy, sx, sy), dim=-1).reshape(b, -1, 1, 4)  # (B, h*w, 1, 4)
        anchors = (shifts + base.view(1, 1, -1, 4)).reshape(b, -1, 4)
        num_cell = base.shape[0]
        valid = (rows[:, :, None] & cols[:, None, :]).reshape(b, -1, 1).expand(b, h * w, num_cell).reshape(b, -1)
        return anchors, valid
