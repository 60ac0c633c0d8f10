"""Random inputs shared by the ops tests. Everything is seeded: a failing case is reproducible by its seed."""

from __future__ import annotations

import numpy as np
import torch

# Scales that are exact in float32 and float64, so that ``image coordinate * scale`` rounds the same way in
# maskrt (float32) and in the float64 references.
DYADIC_SCALES = (1.0, 0.5, 0.25, 0.125, 2.0)


def random_map(rng: np.random.Generator, n: int, c: int, h: int, w: int, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(rng.standard_normal((n, c, h, w))).to(dtype)


def _side(rng: np.random.Generator, size: int) -> float:
    """A RoI side length in feature pixels: ordinary, large, tiny, zero or negative (x2 < x1)."""
    kind = rng.integers(0, 6)
    if kind == 0:
        return 0.0
    if kind == 1:
        return -rng.uniform(0.0, 3.0)
    if kind == 2:
        return rng.uniform(0.0, 0.6)
    if kind == 3:
        return rng.uniform(size, 2.0 * size + 2.0)
    return rng.uniform(0.3, size + 1.0)


def random_rois(rng: np.random.Generator, n_images: int, k: int, h: int, w: int, scale: float,
                grid: float | None = None) -> np.ndarray:
    """(k, 5) float64 RoIs in image pixels (feature pixels / scale) around an h x w map.

    Corners start anywhere from well outside the map on the top/left to well outside on the bottom/right, so
    the set holds RoIs inside, partly outside and wholly outside the map, and zero / negative / tiny / huge
    sizes. With ``grid``, feature-pixel coordinates are rounded to multiples of ``grid``.
    """
    rows = []
    for _ in range(k):
        b = rng.integers(0, n_images)
        x1 = rng.uniform(-0.6 * w - 2.0, 1.2 * w + 2.0)
        y1 = rng.uniform(-0.6 * h - 2.0, 1.2 * h + 2.0)
        x2 = x1 + _side(rng, w)
        y2 = y1 + _side(rng, h)
        coords = np.array([x1, y1, x2, y2])
        if grid is not None:
            coords = np.round(coords / grid) * grid
        rows.append([b, *(coords / scale)])
    return np.asarray(rows, dtype=np.float64).reshape(k, 5)


def rois_tensor(rois: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rois)).to(dtype)


def as_list(rois: torch.Tensor, n_images: int) -> list[torch.Tensor]:
    """The list-of-(Ki, 4) form of (K, 5) RoIs, and the permutation that groups them by image."""
    return [rois[rois[:, 0] == i, 1:] for i in range(n_images)]


def grouped_by_image(rois: torch.Tensor, n_images: int) -> torch.Tensor:
    return torch.cat([rois[rois[:, 0] == i] for i in range(n_images)], dim=0)


def to64(t: torch.Tensor) -> np.ndarray:
    """Exact float64 copy of a tensor's values (fp16 and fp32 both widen exactly)."""
    return t.detach().to(torch.float64).numpy()
