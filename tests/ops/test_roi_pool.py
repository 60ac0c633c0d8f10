"""maskrt.ops.roi_pool held to the loop reference in tests/ops/reference.py.

roi_pool is a max over input cells, so outputs are copies of input values: comparisons are exact
(``atol=0``) in every dtype. The reference computes the bin size in the same floating type as torchvision's
kernel (the input's dtype: float32 for float32 and float16 maps, float64 for float64 maps), since
``floor/ceil(p * roi / P)`` differs between float32 and float64 for some sizes (e.g. ``7 * (29 / 7)``).
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from maskrt import MaskrtError
from maskrt.ops import RoIPool, roi_pool

from .helpers import DYADIC_SCALES, as_list, grouped_by_image, random_map, random_rois, rois_tensor, to64
from .reference import roi_pool_ref, round_half_away

roi_pool_module = importlib.import_module("maskrt.ops.roi_pool")  # the package attribute is the function

EXACT = dict(atol=0, rtol=0)


def _bin_dtype(dtype):
    return np.float64 if dtype == torch.float64 else np.float32


def _check(x, rois_t, out, scale):
    got = roi_pool(x, rois_t, out, scale)
    assert got.dtype == x.dtype
    assert got.shape == (rois_t.shape[0], x.shape[1], *((out, out) if isinstance(out, int) else out))
    want = roi_pool_ref(to64(x), to64(rois_t), out, scale, bin_dtype=_bin_dtype(x.dtype))
    np.testing.assert_allclose(to64(got), want, **EXACT)


def _random_case(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3))
    c = int(rng.integers(1, 4))
    h = int(rng.choice([1, 2, 3, 6, 9, 12]))
    w = int(rng.choice([1, 2, 5, 8, 12]))
    out = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    scale = float(rng.choice(DYADIC_SCALES))
    k = int(rng.integers(1, 21))
    x = random_map(rng, n, c, h, w, torch.float64)
    # Half of the cases put corners on a grid of quarter pixels, so rounding meets exact halves.
    grid = 0.25 if seed % 2 else None
    rois = random_rois(rng, n, k, h, w, scale, grid=grid)
    return x, rois, out, scale


@pytest.mark.parametrize("seed", range(40))
def test_random_float32(seed):
    x, rois, out, scale = _random_case(seed)
    _check(x.float(), rois_tensor(rois, torch.float32), out, scale)


@pytest.mark.parametrize("seed", range(100, 120))
def test_random_float64(seed):
    x, rois, out, scale = _random_case(seed)
    _check(x, rois_tensor(rois, torch.float64), out, scale)


@pytest.mark.parametrize("seed", range(200, 210))
def test_random_float16(seed):
    x, rois, out, scale = _random_case(seed)
    _check(x.half(), rois_tensor(rois, torch.float16), out, scale)


def test_reference_hand_example():
    x = np.arange(36.0).reshape(1, 1, 6, 6)  # v[y, x] = 6y + x: the max of a window is its bottom-right cell
    # RoI [1, 1, 4, 4] -> cells 1..4 (4x4), bins of 2 cells: bottom-right cells (2,2), (2,4), (4,2), (4,4).
    got = roi_pool_ref(x, [[0, 1, 1, 4, 4]], 2)
    assert got[0, 0].tolist() == [[14.0, 16.0], [26.0, 28.0]]
    # 5 cells in 2 bins: [floor(0), ceil(2.5)) = [0, 3) and [floor(2.5), ceil(5)) = [2, 5): they overlap.
    got = roi_pool_ref(x, [[0, 0, 0, 4, 0]], (1, 2))
    assert got[0, 0].tolist() == [[2.0, 4.0]]
    assert [round_half_away(v) for v in (2.5, -2.5, 0.5, -0.5, 1.49, -1.51)] == [3, -3, 1, -1, 1, -2]


def test_rounding_half_away_from_zero():
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    rois = torch.tensor([
        [0, 2.5, 2.5, 4.5, 4.5],  # -> cells 3..5
        [0, 1.49, 0.51, 3.5, 2.49],
        [0, -0.5, -0.5, 0.5, 0.5],  # -> -1..1
        [0, -2.5, -1.5, 1.5, 0.5],
        [0, 5.0, 3.0, 9.0, 7.0],  # scale 0.5 -> 2.5, 1.5, 4.5, 3.5
    ])
    for scale in (1.0, 0.5):
        _check(x, rois, (2, 2), scale)
        _check(x.double(), rois.double(), (3, 2), scale)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_zero_negative_and_outside(scale):
    rng = np.random.default_rng(9)
    x = random_map(rng, 1, 2, 5, 6)
    rois = torch.tensor([
        [0, 2.0, 2.0, 2.0, 2.0],  # one cell
        [0, 4.0, 3.0, 1.0, 1.0],  # x2 < x1, y2 < y1: at least 1x1
        [0, -10.0, -10.0, -5.0, -5.0],  # wholly outside: every bin empty -> 0
        [0, 20.0, 1.0, 30.0, 4.0],
        [0, -3.0, -2.0, 3.0, 9.0],  # partly outside
        [0, -1.0, -1.0, 6.0, 5.0],
    ]) / scale
    for out in ((1, 1), (2, 3), (4, 4)):
        _check(x, rois, out, scale)
    assert torch.count_nonzero(roi_pool(x, rois[2:4], (2, 3), scale)) == 0


def test_one_by_one_map():
    x = torch.tensor([[[[3.0]], [[-2.0]]]])
    rois = torch.tensor([[0, 0.0, 0.0, 0.0, 0.0], [0, -1.0, -1.0, 2.0, 2.0], [0, 1.0, 1.0, 3.0, 3.0],
                         [0, -0.4, 0.4, -0.4, 0.4]])
    for out in ((1, 1), (3, 2)):
        _check(x, rois, out, 1.0)


def test_output_size_seven_float32_and_float64():
    """Mask R-CNN's 7x7 on RoIs whose bin edges fall differently in float32 and float64 (29/7*7 = 29.000000000000004
    in float64 -> ceil gives 30, in float32 it is 29). Each dtype must follow its own kernel arithmetic."""
    x = torch.randn(1, 2, 40, 40, generator=torch.Generator().manual_seed(2))
    rois = torch.tensor([
        [0, 0.0, 0.0, 28.0, 28.0],  # roi 29 cells
        [0, 1.0, 2.0, 57.0, 58.0],  # 57: float32 gives ceil 58, float64 57
        [0, 3.0, 0.0, 33.0, 30.0],  # 31
        [0, 0.0, 5.0, 27.0, 33.0],
    ])
    _check(x, rois, (7, 7), 1.0)
    _check(x.double(), rois.double(), (7, 7), 1.0)
    _check(x, rois, (14, 14), 1.0)
    _check(x.double(), rois.double(), (14, 14), 1.0)


def test_far_corner_keeps_bin_geometry():
    """A corner beyond the map still sets the bin size: on a 1x10 map, x1 = -60, x2 = 9 in 7 bins gives bins of
    10 cells, [-60, -50), ..., [0, 10): only the last bin reaches the map."""
    x = torch.arange(1.0, 11.0).reshape(1, 1, 1, 10)
    rois = torch.tensor([[0, -60.0, 0.0, 9.0, 0.0], [0, -53.0, 0.0, 9.0, 0.0], [0, 0.0, 0.0, 70.0, 0.0],
                         [0, -1000.0, 0.0, 9.0, 0.0]])
    want = roi_pool_ref(to64(x), to64(rois), (1, 7), bin_dtype=np.float32)
    assert want[0, 0, 0].tolist() == [0, 0, 0, 0, 0, 0, 10.0]
    _check(x, rois, (1, 7), 1.0)
    _check(x.double(), rois.double(), (1, 7), 1.0)


def test_invalid_batch_index_and_non_finite_are_zero():
    rng = np.random.default_rng(4)
    x = random_map(rng, 2, 2, 6, 6)
    rois = torch.tensor([
        [1, 0.0, 0.0, 4.0, 4.0],
        [2, 0.0, 0.0, 4.0, 4.0],
        [-1, 0.0, 0.0, 4.0, 4.0],
        [0, float("nan"), 0.0, 4.0, 4.0],
        [0, 0.0, 0.0, float("inf"), 4.0],
        [0, 1.0, 1.0, 3.0, 5.0],
    ])
    got = roi_pool(x, rois, (2, 3))
    assert torch.count_nonzero(got[1:5]) == 0
    _check(x, rois, (2, 3), 1.0)


def test_very_far_rois():
    x = torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(3))
    rois = torch.tensor([[0, 1e20, 1.0, 2e20, 3.0], [0, -3e19, 1.0, -1e19, 3.0], [0, 1.0, 1.0, 3.0, 3.0]])
    got = roi_pool(x, rois, 2)
    assert torch.count_nonzero(got[:2]) == 0
    torch.testing.assert_close(got[2:], roi_pool(x, rois[2:], 2), **EXACT)


@pytest.mark.parametrize("seed", range(4))
def test_list_form_equals_tensor_form(seed):
    rng = np.random.default_rng(400 + seed)
    n = 3
    x = random_map(rng, n, 2, 8, 8)
    rois = grouped_by_image(rois_tensor(random_rois(rng, n, 12, 8, 8, 0.5)), n)
    torch.testing.assert_close(roi_pool(x, rois, (2, 3), 0.5), roi_pool(x, as_list(rois, n), (2, 3), 0.5), **EXACT)


@pytest.mark.parametrize("boxes", [torch.zeros((0, 5)), [], [torch.zeros((0, 4)), torch.zeros((0, 4))]])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_empty_rois(boxes, dtype):
    got = roi_pool(torch.randn(2, 3, 5, 5).to(dtype), boxes, (2, 4), 0.5)
    assert got.shape == (0, 3, 2, 4) and got.dtype == dtype


def test_blocks(monkeypatch):
    rng = np.random.default_rng(12)
    x = random_map(rng, 2, 3, 12, 12)
    rois = rois_tensor(random_rois(rng, 2, 20, 12, 12, 1.0))
    whole = roi_pool(x, rois, (3, 2))
    monkeypatch.setattr(roi_pool_module, "_BLOCK_ELEMENTS", 40)
    torch.testing.assert_close(roi_pool(x, rois, (3, 2)), whole, **EXACT)
    _check(x, rois, (3, 2), 1.0)


def test_module_form():
    rng = np.random.default_rng(13)
    x = random_map(rng, 2, 2, 8, 8)
    rois = rois_tensor(random_rois(rng, 2, 9, 8, 8, 0.5))
    m = RoIPool((2, 3), 0.5)
    assert m.output_size == (2, 3)
    torch.testing.assert_close(m(x, rois), roi_pool(x, rois, (2, 3), 0.5), **EXACT)
    np.testing.assert_allclose(to64(m(x, rois)), roi_pool_ref(to64(x), to64(rois), (2, 3), 0.5, np.float32), **EXACT)
    assert RoIPool(3, 1.0).output_size == (3, 3)


@pytest.mark.parametrize("x, boxes", [
    (torch.zeros(2, 5, 5), torch.zeros(1, 5)),
    (torch.zeros(1, 2, 5, 5, dtype=torch.int32), torch.zeros(1, 5)),
    (torch.zeros(1, 2, 5, 5), torch.zeros(3, 4)),
    (torch.zeros(1, 2, 5, 5), [torch.zeros(2, 5)]),
    (torch.zeros(1, 2, 5, 5), torch.zeros(1, 5, dtype=torch.int64)),
])
def test_bad_inputs(x, boxes):
    with pytest.raises(MaskrtError):
        roi_pool(x, boxes, 2)
