"""Anchor generation for the RPN, as torchvision's ``AnchorGenerator``."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float], dtype=torch.float32) -> Tensor:
    """Zero-centred anchors (A, 4) for one level: for each ratio (= height / width) then each size,
    ``round([-w, -h, w, h] / 2)`` with ``h = size * sqrt(ratio)``, ``w = size / sqrt(ratio)``."""
    scales = torch.as_tensor(sizes, dtype=dtype)
    ratios = torch.as_tensor(aspect_ratios, dtype=dtype)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


class AnchorGenerator(nn.Module):
    """Anchors for every location of every feature map.

    Anchors sit at ``(x * stride_w, y * stride_h)`` (no half-stride offset), where the stride is
    ``image_size // feature_size`` of the padded batch. Per location they come in the order of
    :func:`cell_anchors`; locations are row-major; levels are concatenated finest first.
    """

    def __init__(self, sizes=((32,), (64,), (128,), (256,), (512,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5):
        super().__init__()
        self.sizes = tuple(tuple(s) for s in sizes)
        self.aspect_ratios = tuple(tuple(a) for a in aspect_ratios)
        # Buffers (not saved in checkpoints), so that ``module.to(device)`` moves them with the model and the
        # forward never copies them from the host.
        for i, (s, a) in enumerate(zip(self.sizes, self.aspect_ratios)):
            self.register_buffer(f"cell_anchors_{i}", cell_anchors(s, a), persistent=False)
        # maskrt.model.region.AnchorTable per map sizes and device, for the deploy forward (not state)
        self.tables: dict = {}

    @property
    def cell_anchors(self) -> list[Tensor]:
        """Per level, the (A, 4) zero-centred anchors of :func:`cell_anchors` (float32 buffers)."""
        return [getattr(self, f"cell_anchors_{i}") for i in range(len(self.sizes))]

    def _apply(self, fn, recurse=True):
        # Anchors stay float32 under ``.half()``: their coordinates need float32 at image scale.
        device = self.cell_anchors_0.device
        super()._apply(fn, recurse)
        if self.cell_anchors_0.device != device:
            # Built again where the anchors now live. Only then: a captured CUDA graph reads the tables, and
            # .to() to the same device, .float() or .half() (which keep the anchors where they are) must not free them.
            self.tables = {}
        for i in range(len(self.sizes)):
            name = f"cell_anchors_{i}"
            buf = self._buffers[name]
            if buf is not None and buf.dtype != torch.float32:
                self._buffers[name] = buf.float()
        return self

    def __getstate__(self):
        # Copies (copy.copy, deepcopy, pickle) start without tables: they are a cache of this instance's anchors,
        # up to 4 x 64 MiB that a copy made for fake-tensor counting or saving would only carry along.
        return {**super().__getstate__(), "tables": {}}

    def num_anchors_per_location(self) -> list[int]:
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios)]

    def forward(self, image_size: Sequence[int], feature_sizes: Sequence[Sequence[int]], dtype=torch.float32,
                device=None) -> list[Tensor]:
        """Per-level anchors [(Hi * Wi * A, 4)] for a padded batch of ``image_size = (H, W)``."""
        out = []
        for (gh, gw), base in zip(feature_sizes, self.cell_anchors):
            gh, gw = int(gh), int(gw)
            stride_h = int(image_size[0]) // gh
            stride_w = int(image_size[1]) // gw
            shifts_x = torch.arange(0, gw, dtype=torch.int32, device=device) * stride_w
            shifts_y = torch.arange(0, gh, dtype=torch.int32, device=device) * stride_h
            shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
            shift_x = shift_x.reshape(-1)
            shift_y = shift_y.reshape(-1)
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
            base = base.to(dtype=dtype, device=device)
            out.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
        return out
