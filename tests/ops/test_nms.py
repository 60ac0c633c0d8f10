"""maskrt.ops.nms / batched_nms held to the greedy loop reference in tests/ops/reference.py.

NMS results are index lists, compared exactly. To keep threshold decisions free of rounding noise the random
boxes are either on an integer grid (float32: areas, intersections and therefore IoUs are exact rationals,
correctly rounded the same way in float32 and float64) or continuous float64 (maskrt computes the reference's
IoU formula in the reference's order, so IoUs are bit-identical).
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskrt import MaskrtError
from maskrt.ops import batched_nms, box_iou, nms

from .reference import batched_nms_ref, iou_ref, nms_ref

nms_module = importlib.import_module("maskrt.ops.nms")

THRESHOLDS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def _clustered_boxes(rng: np.random.Generator, n: int, integer: bool, span: float = 60.0) -> np.ndarray:
    """Boxes around a few centres, so that many overlap; some duplicates and degenerate (zero-size) boxes."""
    centres = rng.uniform(10.0, span, size=(max(1, n // 8), 2))
    c = centres[rng.integers(0, len(centres), size=n)] + rng.normal(0.0, 3.0, size=(n, 2))
    wh = rng.uniform(1.0, 25.0, size=(n, 2))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1)
    if integer:
        boxes = np.round(boxes)
    boxes = np.clip(boxes, 0.0, None)  # torchvision's contract: 0 <= x1 (offsets in batched_nms rely on it)
    if n >= 4:
        dup = rng.integers(0, n, size=n // 10 + 1)
        boxes[rng.integers(0, n, size=len(dup))] = boxes[dup]  # exact duplicates: IoU 1
        boxes[rng.integers(0, n)] = [5.0, 5.0, 5.0, 9.0]  # zero width: IoU 0 (or 0/0 with itself)
    return boxes


def _scores(rng: np.random.Generator, n: int, ties: bool) -> np.ndarray:
    if ties:
        return rng.choice([0.1, 0.5, 0.5, 0.9, 0.9, 0.9], size=n)
    return rng.uniform(0.0, 1.0, size=n)


def _check_nms(boxes_t, scores_t, thr):
    got = nms(boxes_t, scores_t, thr)
    assert got.dtype == torch.int64
    want = nms_ref(boxes_t.double().numpy(), scores_t.double().numpy(), thr)
    assert got.tolist() == want.tolist()
    return got


@pytest.mark.parametrize("seed", range(24))
def test_nms_random_integer_boxes(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 120))
    boxes = torch.from_numpy(_clustered_boxes(rng, n, integer=True)).float()
    scores = torch.from_numpy(_scores(rng, n, ties=seed % 3 == 0)).float()
    for thr in THRESHOLDS:
        _check_nms(boxes, scores, thr)


@pytest.mark.parametrize("seed", range(100, 112))
def test_nms_random_float64_boxes(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 150))
    boxes = torch.from_numpy(_clustered_boxes(rng, n, integer=False))
    scores = torch.from_numpy(_scores(rng, n, ties=seed % 2 == 0))
    for thr in (*THRESHOLDS, float(rng.uniform(0.0, 1.0))):
        _check_nms(boxes, scores, thr)


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 12), st.integers(0, 12), st.integers(0, 8), st.integers(0, 8), st.integers(0, 4)),
        min_size=0, max_size=25,
    ),
    thr=st.sampled_from([0.0, 0.25, 1 / 3, 0.5, 2 / 3, 0.75, 1.0]),
)
def test_nms_hypothesis_small_grid(rows, thr):
    """Small integer boxes with tied scores: many IoUs equal the threshold exactly (e.g. 1/3, 1/2)."""
    boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h, _ in rows], dtype=torch.float32).reshape(-1, 4)
    scores = torch.tensor([s / 4 for *_, s in rows], dtype=torch.float32)
    _check_nms(boxes, scores, thr)
    idxs = torch.tensor([s % 2 for *_, s in rows], dtype=torch.int64)
    assert batched_nms(boxes, scores, idxs, thr).tolist() == batched_nms_ref(boxes, scores, idxs, thr).tolist()


def test_iou_reference_self_check():
    assert iou_ref([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7)
    assert iou_ref([0, 0, 2, 2], [2, 0, 4, 2]) == 0.0  # touching edges
    assert iou_ref([0, 0, 2, 2], [0, 0, 2, 2]) == 1.0
    assert np.isnan(iou_ref([1, 1, 1, 3], [1, 1, 1, 3]))  # 0 / 0


def test_box_iou_matches_reference():
    rng = np.random.default_rng(8)
    a = _clustered_boxes(rng, 20, integer=False)
    b = _clustered_boxes(rng, 15, integer=False)
    got = box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    want = np.array([[iou_ref(p, q) for q in b] for p in a])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15, equal_nan=True)


def test_ties_keep_index_order():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [50, 50, 60, 60]])
    scores = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.9])
    assert nms(boxes, scores, 0.5).tolist() == [4, 0]
    assert nms(boxes, scores, 1.0).tolist() == [4, 0, 1, 2, 3]
    assert nms(boxes, torch.zeros(5), 0.5).tolist() == [0, 3]
    _check_nms(boxes, scores, 0.5)


def test_threshold_edges():
    boxes = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],
        [0.0, 0.0, 10.0, 10.0],  # identical: IoU exactly 1
        [10.0, 0.0, 20.0, 10.0],  # touches box 0: IoU exactly 0
        [5.0, 0.0, 15.0, 10.0],  # IoU 1/3 with 0 and 2
        [0.0, 0.0, 10.0, 5.0],  # IoU 1/2 with 0
    ])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    # 1.0: nothing has IoU > 1, everything is kept.
    assert nms(boxes, scores, 1.0).tolist() == [0, 1, 2, 3, 4]
    # 0.0: any positive overlap suppresses; edge contact (IoU 0) does not.
    assert nms(boxes, scores, 0.0).tolist() == [0, 2]
    # thresholds equal to an IoU do not suppress (strictly greater).
    assert nms(boxes, scores, 0.5).tolist() == [0, 2, 3, 4]
    assert nms(boxes, scores, 1 / 3).tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.3).tolist() == [0, 2]
    for thr in (0.0, 0.3, 1 / 3, 0.5, 0.99, 1.0):
        _check_nms(boxes, scores, thr)


def test_degenerate_boxes_are_never_suppressed_by_nan():
    boxes = torch.tensor([[1.0, 1.0, 1.0, 5.0], [1.0, 1.0, 1.0, 5.0], [0.0, 0.0, 4.0, 4.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.0).tolist() == [0, 1, 2]
    _check_nms(boxes, scores, 0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_empty(dtype):
    boxes = torch.zeros((0, 4), dtype=dtype)
    scores = torch.zeros((0,), dtype=dtype)
    for got in (nms(boxes, scores, 0.5), batched_nms(boxes, scores, torch.zeros((0,), dtype=torch.int64), 0.5)):
        assert got.shape == (0,) and got.dtype == torch.int64


def test_single_box():
    assert nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([0.3]), 0.5).tolist() == [0]
    assert batched_nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([0.3]), torch.tensor([7]), 0.5).tolist() == [0]


# ------------------------------------------------------------------------------------------------ batched


def _batched_case(seed: int, n: int, categories: int, integer: bool):
    rng = np.random.default_rng(seed)
    boxes = _clustered_boxes(rng, n, integer=integer, span=120.0)
    scores = _scores(rng, n, ties=seed % 2 == 0)
    idxs = rng.integers(0, categories, size=n)
    dtype = torch.float32 if integer else torch.float64
    return torch.from_numpy(boxes).to(dtype), torch.from_numpy(scores).to(dtype), torch.from_numpy(idxs)


def _check_batched(boxes, scores, idxs, thr):
    got = batched_nms(boxes, scores, idxs, thr)
    assert got.dtype == torch.int64
    want = batched_nms_ref(boxes.double().numpy(), scores.double().numpy(), idxs.numpy(), thr)
    assert got.tolist() == want.tolist()
    return got


@pytest.mark.parametrize("seed", range(10))
def test_batched_nms_few_boxes(seed):
    """<= 1000 boxes (<= 4000 elements): the coordinate-offset strategy."""
    n = int(np.random.default_rng(seed).integers(2, 200))
    boxes, scores, idxs = _batched_case(seed, n, categories=1 + seed % 5, integer=seed % 2 == 0)
    for thr in (0.0, 0.3, 0.5, 0.7, 1.0):
        _check_batched(boxes, scores, idxs, thr)


@pytest.mark.parametrize("n", [1000, 1001, 1500])
@pytest.mark.parametrize("integer", [True, False])
def test_batched_nms_around_the_strategy_switch(n, integer):
    """1000 boxes = 4000 elements (offset strategy) and 1001 / 1500 boxes (one NMS per category)."""
    boxes, scores, idxs = _batched_case(n + integer, n, categories=6, integer=integer)
    for thr in (0.5, 0.0):
        _check_batched(boxes, scores, idxs, thr)


@pytest.mark.parametrize("seed", range(4))
def test_both_batched_strategies_agree(seed):
    boxes, scores, idxs = _batched_case(500 + seed, 300, categories=4, integer=True)
    per_category = nms_module._batched_nms_per_category(boxes, scores, idxs, 0.5)
    assert per_category.tolist() == batched_nms(boxes, scores, idxs, 0.5).tolist()


def test_batched_categories_never_suppress_each_other():
    boxes = torch.tensor([[0.0, 0, 10, 10]] * 4 + [[0.0, 0, 10, 9]])
    scores = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.8])
    idxs = torch.tensor([0, 1, 2, 1, 2])
    assert batched_nms(boxes, scores, idxs, 0.5).tolist() == [1, 4, 0]
    _check_batched(boxes, scores, idxs, 0.5)


def test_batched_categories_with_negative_coordinates():
    """The definition is per-category NMS; boxes left or above the image (negative coordinates) must not
    suppress boxes of another category either."""
    boxes = torch.tensor([[-10.0, -10.0, -0.5, -0.5], [-10.0, -10.0, -0.5, -0.5], [-9.0, -10.0, -1.0, -1.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    idxs = torch.tensor([0, 1, 0])
    assert _check_batched(boxes, scores, idxs, 0.5).tolist() == [0, 1]


# --------------------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("boxes, scores", [
    (torch.zeros(5, 4), torch.zeros(4)),  # length mismatch
    (torch.zeros(5, 3), torch.zeros(5)),  # not XYXY
    (torch.zeros(5), torch.zeros(5)),
    (torch.zeros(2, 5, 4), torch.zeros(5)),
    (torch.zeros(5, 4), torch.zeros(5, 1)),
])
def test_nms_bad_shapes(boxes, scores):
    with pytest.raises(MaskrtError):
        nms(boxes, scores, 0.5)
    with pytest.raises(MaskrtError):
        batched_nms(boxes, scores, torch.zeros(scores.shape[0], dtype=torch.int64), 0.5)


def test_batched_nms_bad_idxs():
    with pytest.raises(MaskrtError):
        batched_nms(torch.zeros(5, 4), torch.zeros(5), torch.zeros(4, dtype=torch.int64), 0.5)
    with pytest.raises(MaskrtError):
        batched_nms(torch.zeros(5, 4), torch.zeros(5), torch.zeros(5, 1, dtype=torch.int64), 0.5)
