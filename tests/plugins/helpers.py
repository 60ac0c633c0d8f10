"""Inputs shared by the plugin tests."""

from __future__ import annotations

import ctypes
import math

import torch

SCALES = [1 / 4, 1 / 8, 1 / 16, 1 / 32]


def feature_maps(batch: int = 2, channels: int = 5, height: int = 96, width: int = 128, *, seed: int = 0,
                 dtype=torch.float32, scales=SCALES) -> list[torch.Tensor]:
    """Random FPN maps for an image of (height, width), finest first."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, channels, math.ceil(height * s), math.ceil(width * s), generator=g).to(dtype)
            for s in scales]


def random_rois(count: int, batch: int = 2, height: int = 96, width: int = 128, *, seed: int = 0,
                dtype=torch.float32) -> torch.Tensor:
    """(count, 5) RoIs whose sizes (4 to 700 px, log-uniform) reach every FPN level; some stick out of the image."""
    g = torch.Generator().manual_seed(seed + 1000)
    size = torch.exp(torch.empty(count, 2).uniform_(math.log(4.0), math.log(700.0), generator=g))
    centre = torch.rand(count, 2, generator=g) * torch.tensor([width * 1.2, height * 1.2]) - torch.tensor(
        [width * 0.1, height * 0.1])
    xy1 = centre - size / 2
    xy2 = centre + size / 2
    index = torch.randint(0, batch, (count, 1), generator=g).float()
    return torch.cat([index, xy1, xy2], dim=1).to(dtype)


class RawCall:
    """Arguments of one raw C call (features float32 (N, C, H, W) per level, rois float32 (K, 5)), editable."""

    def __init__(self, maps, rois, scales, out_hw=(3, 4)):
        self.maps = [m.contiguous() for m in maps]
        self.rois = rois.contiguous()
        n = len(self.maps)
        self.feature_dtype = 0
        self.roi_dtype = 0
        self.num_levels = n
        self.ptrs = (ctypes.c_void_p * max(n, 1))(*[m.data_ptr() for m in self.maps])
        self.shapes = (ctypes.c_int64 * max(4 * n, 1))(*[int(d) for m in self.maps for d in m.shape])
        self.scales = (ctypes.c_float * max(n, 1))(*scales)
        self.roi_ptr = self.rois.data_ptr()
        self.roi_shape = (ctypes.c_int64 * 2)(*self.rois.shape)
        k, c = int(self.rois.shape[0]), int(self.maps[0].shape[1])
        self.output = torch.full((k, c, *out_hw), 7.0)
        self.out_ptr = self.output.data_ptr()
        self.out_shape = (ctypes.c_int64 * 4)(k, c, *out_hw)
        self.sampling_ratio = 2
        self.aligned = 0
        self.mode = 0
        self.canonical_scale = 224.0
        self.canonical_level = 4

    def args(self):
        return (self.feature_dtype, self.roi_dtype, self.num_levels, self.ptrs, self.shapes, self.scales,
                self.roi_ptr, self.roi_shape, self.out_ptr, self.out_shape, self.sampling_ratio, self.aligned,
                self.mode, self.canonical_scale, self.canonical_level)
