"""maskrt.ops.roi_align held to the loop reference in tests/ops/reference.py.

Tolerances: float32 vs the float64 reference, ``atol=1e-5, rtol=1e-5`` (inputs are standard normal, so
outputs are O(1)); float64 vs reference ``atol=1e-12`` (same formulas, same association order); float16
``rtol=1e-2, atol=2e-3`` against the float64 reference on the float16 values.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskrt import MaskrtError
from maskrt.ops import RoIAlign, roi_align

from .helpers import DYADIC_SCALES, as_list, grouped_by_image, random_map, random_rois, rois_tensor, to64
from .reference import bilinear_ref, roi_align_ref

roi_align_module = importlib.import_module("maskrt.ops.roi_align")  # the package attribute is the function

F32 = dict(atol=1e-5, rtol=1e-5)
F64 = dict(atol=1e-12, rtol=0)
F16 = dict(atol=2e-3, rtol=1e-2)


def _random_case(seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3))
    c = int(rng.integers(1, 4))
    h = int(rng.choice([1, 2, 3, 5, 8, 12]))
    w = int(rng.choice([1, 2, 4, 7, 12]))
    out = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    scale = float(rng.choice(DYADIC_SCALES))
    sampling = int(rng.choice([-1, 0, 1, 2, 3]))
    aligned = bool(rng.integers(0, 2))
    mode = str(rng.choice(["avg", "max"]))
    k = int(rng.integers(1, 21))
    x = random_map(rng, n, c, h, w, torch.float64)
    rois = random_rois(rng, n, k, h, w, scale)
    return x, rois, out, scale, sampling, aligned, mode


def _check(x, rois_t, out, scale, sampling, aligned, mode, tol):
    got = roi_align(x, rois_t, out, scale, sampling, aligned, mode)
    assert got.dtype == x.dtype
    assert got.shape == (rois_t.shape[0], x.shape[1], *out)
    want = roi_align_ref(to64(x), to64(rois_t), out, scale, sampling, aligned, mode)
    np.testing.assert_allclose(to64(got), want, **tol)


@pytest.mark.parametrize("seed", range(40))
def test_random_float32(seed):
    x, rois, out, scale, sampling, aligned, mode = _random_case(seed)
    _check(x.float(), rois_tensor(rois, torch.float32), out, scale, sampling, aligned, mode, F32)


@pytest.mark.parametrize("seed", range(100, 130))
def test_random_float64(seed):
    x, rois, out, scale, sampling, aligned, mode = _random_case(seed)
    _check(x, rois_tensor(rois, torch.float64), out, scale, sampling, aligned, mode, F64)


@pytest.mark.parametrize("seed", range(200, 215))
def test_random_float16(seed):
    x, rois, out, scale, sampling, aligned, mode = _random_case(seed)
    # float16 RoIs: the reference sees the same (rounded) corners.
    _check(x.half(), rois_tensor(rois, torch.float16), out, scale, sampling, aligned, mode, F16)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("sampling", [-1, 0, 1, 2, 3])
def test_every_mode_and_sampling(aligned, mode, sampling):
    rng = np.random.default_rng(1000 + 10 * sampling + 2 * aligned + (mode == "max"))
    x = random_map(rng, 2, 2, 9, 11)
    rois = random_rois(rng, 2, 16, 9, 11, 0.5)
    _check(x, rois_tensor(rois), (3, 2), 0.5, sampling, aligned, mode, F32)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    ph=st.integers(1, 3),
    pw=st.integers(1, 3),
    sampling=st.sampled_from([-1, 0, 1, 2, 3]),
    aligned=st.booleans(),
    mode=st.sampled_from(["avg", "max"]),
    scale=st.sampled_from([1.0, 0.5, 2.0]),
)
def test_hypothesis_half_pixel_grid(data, h, w, ph, pw, sampling, aligned, mode, scale):
    """float64 RoIs on a half-pixel grid: samples land exactly on pixel centres, borders and the -1 / size
    limits; maskrt's float64 path uses the reference's arithmetic order, so these agree to rounding."""
    coord = st.integers(-8, 20).map(lambda v: v / 2.0)
    k = data.draw(st.integers(1, 5))
    rows = []
    for _ in range(k):
        x1, y1, x2, y2 = (data.draw(coord) for _ in range(4))
        rows.append([0.0, x1 / scale, y1 / scale, x2 / scale, y2 / scale])
    rois = torch.tensor(rows, dtype=torch.float64)
    x = torch.arange(h * w * 2, dtype=torch.float64).reshape(1, 2, h, w).sin()
    _check(x, rois, (ph, pw), scale, sampling, aligned, mode, F64)


def test_bilinear_reference_self_check():
    """The reference's interpolation on hand-computed points of a 2x3 map."""
    plane = np.array([[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]])
    assert bilinear_ref(plane, 0.0, 0.0) == 0.0
    assert bilinear_ref(plane, 0.5, 0.5) == pytest.approx(5.5)
    assert bilinear_ref(plane, 1.0, 2.0) == 12.0
    assert bilinear_ref(plane, 2.0, 3.0) == 12.0  # at the far limit: clamped to the last pixel
    assert bilinear_ref(plane, 2.0001, 1.0) == 0.0  # beyond y = H
    assert bilinear_ref(plane, -1.0, -1.0) == 0.0  # clamped to (0, 0)
    assert bilinear_ref(plane, -1.0001, 0.0) == 0.0
    assert bilinear_ref(plane, -0.5, 1.5) == pytest.approx(1.5)


def test_reference_hand_example():
    """One 4x4 map, one RoI, 1x1 output, sampling 2: the four sample points are averaged by hand."""
    x = np.arange(16.0).reshape(1, 1, 4, 4)  # v[y, x] = 4y + x, linear, so bilinear is exact
    # aligned=False: RoI [0, 0, 2, 2] -> samples at 0.5 and 1.5 on each axis, mean position (1, 1) -> 5.
    assert roi_align_ref(x, [[0, 0, 0, 2, 2]], 1, 1.0, 2, False)[0, 0, 0, 0] == pytest.approx(5.0)
    # aligned=True: shifted by half a pixel -> mean position (0.5, 0.5) -> 2.5.
    assert roi_align_ref(x, [[0, 0, 0, 2, 2]], 1, 1.0, 2, True)[0, 0, 0, 0] == pytest.approx(2.5)
    # max of the samples at (0.5|1.5, 0.5|1.5): the largest is at (1.5, 1.5) -> 7.5.
    assert roi_align_ref(x, [[0, 0, 0, 2, 2]], 1, 1.0, 2, False, "max")[0, 0, 0, 0] == pytest.approx(7.5)
    got = roi_align(torch.from_numpy(x), torch.tensor([[0, 0, 0, 2, 2]], dtype=torch.float64), 1, 1.0, 2, False)
    assert got.item() == pytest.approx(5.0)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("sampling", [-1, 2])
def test_one_by_one_map(aligned, mode, sampling):
    x = torch.tensor([[[[3.0]], [[-2.0]]]])
    rois = torch.tensor([
        [0, 0.0, 0.0, 1.0, 1.0],
        [0, -0.5, -0.5, 0.5, 0.5],
        [0, -3.0, -3.0, 4.0, 4.0],
        [0, 0.2, 0.2, 0.2, 0.2],
        [0, 1.5, 0.0, 0.5, 1.0],
        [0, 2.5, 2.5, 3.0, 3.0],
    ])
    _check(x, rois, (2, 3), 1.0, sampling, aligned, mode, F32)


def test_zero_and_negative_sizes():
    rng = np.random.default_rng(7)
    x = random_map(rng, 1, 2, 6, 6)
    rois = torch.tensor([
        [0, 2.0, 2.0, 2.0, 2.0],  # zero size
        [0, 3.0, 1.0, 1.0, 4.0],  # x2 < x1
        [0, 4.0, 5.0, 1.0, 0.5],  # both negative
        [0, 1.25, 1.25, 1.25, 3.5],  # zero width
    ])
    for aligned in (False, True):
        for sampling in (-1, 0, 1, 2, 3):
            for mode in ("avg", "max"):
                _check(x, rois, (2, 2), 1.0, sampling, aligned, mode, F32)
    # aligned=True with an adaptive grid: a zero-size RoI has no samples, so both modes give 0.
    for mode in ("avg", "max"):
        assert torch.count_nonzero(roi_align(x, rois[:1], 2, 1.0, 0, True, mode)) == 0


@pytest.mark.parametrize("sampling", [-1, 2])
def test_rois_outside_the_map(sampling):
    rng = np.random.default_rng(11)
    x = random_map(rng, 1, 3, 5, 7)
    rois = torch.tensor([
        [0, -20.0, -20.0, -10.0, -10.0],  # wholly outside, above left
        [0, 30.0, 1.0, 40.0, 3.0],  # wholly outside, right
        [0, -3.0, -3.0, 2.0, 2.0],  # partly outside
        [0, 5.5, 3.0, 9.0, 8.0],  # partly outside, bottom right
        [0, -1.0, -1.0, 8.0, 6.0],  # just around the map
    ])
    for aligned in (False, True):
        for mode in ("avg", "max"):
            _check(x, rois, (3, 4), 1.0, sampling, aligned, mode, F32)
    far = roi_align(x, rois[:2], (3, 4), 1.0, sampling, False, "avg")
    assert torch.count_nonzero(far) == 0


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_rois_very_far_outside_give_zeros(mode):
    """Definition: a sample beyond the map is 0, however far (fixed sampling keeps the grid bounded)."""
    x = torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    rois = torch.tensor([
        [0, 1e20, 1.0, 2e20, 3.0],
        [0, -3e19, 1.0, -1e19, 3.0],
        [0, 1.0, 3e38, 2.0, 3.2e38],
        [0, 1.0, 1.0, 3.0, 3.0],
    ])
    got = roi_align(x, rois, 2, 1.0, 2, False, mode)
    want = roi_align_ref(to64(x), to64(rois), 2, 1.0, 2, False, mode)
    np.testing.assert_allclose(to64(got), want, **F32)
    assert torch.count_nonzero(got[:3]) == 0


def test_invalid_batch_index_and_non_finite_rois_are_zero():
    rng = np.random.default_rng(3)
    x = random_map(rng, 2, 2, 6, 6)
    rois = torch.tensor([
        [1, 0.0, 0.0, 4.0, 4.0],  # fine, image 1
        [2, 0.0, 0.0, 4.0, 4.0],  # batch index == N
        [-1, 0.0, 0.0, 4.0, 4.0],  # negative
        [7, 0.0, 0.0, 4.0, 4.0],
        [0, float("nan"), 0.0, 4.0, 4.0],
        [0, 0.0, 0.0, float("inf"), 4.0],
        [0, 0.0, float("-inf"), 4.0, 4.0],
        [0, 1.0, 1.0, 3.0, 5.0],  # fine, image 0
    ])
    for sampling in (-1, 0, 2):
        for mode in ("avg", "max"):
            got = roi_align(x, rois, (2, 3), 1.0, sampling, False, mode)
            assert torch.count_nonzero(got[1:7]) == 0
            assert torch.count_nonzero(got[0]) > 0 and torch.count_nonzero(got[7]) > 0
            _check(x, rois, (2, 3), 1.0, sampling, False, mode, F32)


def test_batch_index_selects_the_image():
    rng = np.random.default_rng(5)
    x = random_map(rng, 3, 2, 6, 6)
    box = [0.5, 1.0, 4.5, 5.0]
    rois = torch.tensor([[b, *box] for b in (2, 0, 1)])
    got = roi_align(x, rois, 2, 1.0, 2, True)
    for row, b in enumerate((2, 0, 1)):
        alone = roi_align(x[b : b + 1], torch.tensor([[0, *box]]), 2, 1.0, 2, True)
        torch.testing.assert_close(got[row : row + 1], alone, rtol=0, atol=0)
    _check(x, rois, (2, 2), 1.0, 2, True, "avg", F32)


@pytest.mark.parametrize("seed", range(5))
def test_list_form_equals_tensor_form(seed):
    rng = np.random.default_rng(300 + seed)
    n = 3
    x = random_map(rng, n, 2, 8, 8)
    rois = grouped_by_image(rois_tensor(random_rois(rng, n, 12, 8, 8, 0.5)), n)
    for aligned in (False, True):
        for mode in ("avg", "max"):
            a = roi_align(x, rois, (2, 3), 0.5, -1, aligned, mode)
            b = roi_align(x, as_list(rois, n), (2, 3), 0.5, -1, aligned, mode)
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_list_form_with_empty_images():
    x = torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(1))
    boxes = [torch.zeros((0, 4)), torch.tensor([[0.0, 0.0, 3.0, 3.0], [1.0, 2.0, 5.0, 6.0]]), torch.zeros((0, 4))]
    got = roi_align(x, boxes, 2, 1.0, 2)
    want = roi_align(x, torch.tensor([[1, 0.0, 0.0, 3.0, 3.0], [1, 1.0, 2.0, 5.0, 6.0]]), 2, 1.0, 2)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("boxes", [
    torch.zeros((0, 5)),
    [],
    [torch.zeros((0, 4)), torch.zeros((0, 4))],
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_empty_rois(boxes, dtype):
    x = torch.randn(2, 3, 5, 5).to(dtype)
    for mode in ("avg", "max"):
        got = roi_align(x, boxes, (2, 4), 0.5, -1, True, mode)
        assert got.shape == (0, 3, 2, 4) and got.dtype == dtype


def test_non_square_output_and_output_size_forms():
    rng = np.random.default_rng(21)
    x = random_map(rng, 1, 2, 10, 12)
    rois = rois_tensor(random_rois(rng, 1, 10, 10, 12, 0.25))
    _check(x, rois, (1, 4), 0.25, 2, False, "avg", F32)
    _check(x, rois, (4, 1), 0.25, -1, True, "max", F32)
    torch.testing.assert_close(roi_align(x, rois, 3, 0.25, 2), roi_align(x, rois, (3, 3), 0.25, 2), rtol=0, atol=0)
    torch.testing.assert_close(roi_align(x, rois, [2, 3], 0.25, 2), roi_align(x, rois, (2, 3), 0.25, 2), rtol=0, atol=0)


def test_non_dyadic_spatial_scale():
    """A scale that is not exact in binary (1/3, 0.3): continuous random corners keep every sample well away
    from the discontinuities (the -1 / size limits, ceil of the adaptive grid), so fp32 rounding is harmless."""
    rng = np.random.default_rng(33)
    x = random_map(rng, 1, 2, 9, 9)
    for scale in (1.0 / 3.0, 0.3):
        rois = rois_tensor(random_rois(rng, 1, 15, 9, 9, scale))
        for aligned in (False, True):
            _check(x, rois, (2, 2), scale, -1, aligned, "avg", F32)
            _check(x, rois, (3, 2), scale, 2, aligned, "max", F32)


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_blocks_and_grid_groups(monkeypatch, mode):
    """Tiny blocks force many blocks per sampling-grid group; the result must not change."""
    rng = np.random.default_rng(44)
    x = random_map(rng, 2, 3, 12, 12)
    rois = rois_tensor(random_rois(rng, 2, 20, 12, 12, 1.0))
    whole = roi_align(x, rois, (3, 3), 1.0, -1, True, mode)
    monkeypatch.setattr(roi_align_module, "_BLOCK_ELEMENTS", 50)
    blocked = roi_align(x, rois, (3, 3), 1.0, -1, True, mode)
    torch.testing.assert_close(blocked, whole, rtol=0, atol=0)
    _check(x, rois, (3, 3), 1.0, -1, True, mode, F32)


def test_large_vectorised_matches_per_roi_calls():
    """A larger size (C=32, 7x7, 150 RoIs on 50x60 maps) pooled at once equals pooling RoIs alone."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 32, 50, 60, generator=g)
    xy = torch.rand(150, 2, generator=g) * torch.tensor([240.0, 200.0]) - 20
    wh = torch.rand(150, 2, generator=g) * 120
    rois = torch.cat([torch.randint(0, 2, (150, 1), generator=g).float(), xy, xy + wh], dim=1)
    for sampling, aligned in ((2, False), (-1, True)):
        whole = roi_align(x, rois, 7, 0.25, sampling, aligned)
        single = torch.cat([roi_align(x, rois[i : i + 1], 7, 0.25, sampling, aligned) for i in range(0, 150, 10)])
        torch.testing.assert_close(whole[::10], single, rtol=0, atol=0)


def test_module_form():
    rng = np.random.default_rng(55)
    x = random_map(rng, 2, 2, 8, 8)
    rois = rois_tensor(random_rois(rng, 2, 9, 8, 8, 0.5))
    for aligned, mode in ((False, "avg"), (True, "max")):
        m = RoIAlign((2, 3), spatial_scale=0.5, sampling_ratio=-1, aligned=aligned, mode=mode)
        torch.testing.assert_close(m(x, rois), roi_align(x, rois, (2, 3), 0.5, -1, aligned, mode), rtol=0, atol=0)
        want = roi_align_ref(to64(x), to64(rois), (2, 3), 0.5, -1, aligned, mode)
        np.testing.assert_allclose(to64(m(x, rois)), want, **F32)
    m = RoIAlign(4, 0.25, 2)
    assert m.output_size == (4, 4)
    assert "output_size=(4, 4)" in repr(m) and "sampling_ratio=2" in repr(m)
    grouped = grouped_by_image(rois, 2)
    torch.testing.assert_close(m(x, as_list(grouped, 2)), m(x, grouped), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("x, boxes, kwargs", [
    (torch.zeros(2, 5, 5), torch.zeros(1, 5), {}),  # 3-D input
    (torch.zeros(1, 1, 2, 5, 5), torch.zeros(1, 5), {}),  # 5-D input
    (torch.zeros(1, 2, 5, 5, dtype=torch.int64), torch.zeros(1, 5), {}),  # integer input
    (torch.zeros(1, 2, 5, 5, dtype=torch.uint8), torch.zeros(1, 5), {}),
    (torch.zeros(1, 2, 5, 5), torch.zeros(3, 4), {}),  # (K, 4) tensor
    (torch.zeros(1, 2, 5, 5), torch.zeros(5), {}),  # 1-D
    (torch.zeros(1, 2, 5, 5), torch.zeros(1, 5), {"mode": "sum"}),
    (torch.zeros(1, 2, 5, 5), torch.zeros(1, 5, dtype=torch.int64), {}),  # integer RoIs
    (torch.zeros(1, 2, 5, 5), [torch.zeros(2, 5)], {}),  # list entries must be (Ki, 4)
    (torch.zeros(1, 2, 5, 5), [[0.0, 0.0, 1.0, 1.0]], {}),  # list of non-tensors
    (torch.zeros(1, 2, 5, 5), np.zeros((1, 5), dtype=np.float32), {}),  # not a tensor
    (torch.zeros(1, 2, 5, 5), torch.zeros(1, 5), {"output_size": (1, 2, 3)}),
])
def test_bad_inputs(x, boxes, kwargs):
    kwargs = {"output_size": 2, **kwargs}
    with pytest.raises(MaskrtError):
        roi_align(x, boxes, **kwargs)


def test_maskrt_error_is_value_error():
    with pytest.raises(ValueError):
        roi_align(torch.zeros(2, 5, 5), torch.zeros(1, 5), 2)
    with pytest.raises(MaskrtError):
        RoIAlign(2, 1.0, 2, mode="median")(torch.zeros(1, 1, 4, 4), torch.zeros(1, 5))


def test_reference_counts_no_samples_as_zero_in_both_modes():
    x = np.ones((1, 1, 4, 4))
    for mode in ("avg", "max"):
        assert roi_align_ref(x, [[0, 2, 2, 2, 2]], 2, 1.0, 0, True, mode).tolist() == [[[[0.0, 0.0], [0.0, 0.0]]]]
        assert math.isclose(roi_align_ref(x, [[0, 2, 2, 2, 2]], 2, 1.0, 0, False, mode)[0, 0, 0, 0], 1.0)
