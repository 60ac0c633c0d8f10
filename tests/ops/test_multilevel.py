"""FPN level assignment and multi-level RoI Align held to tests/ops/reference.py.

Tolerances: float32 vs the float64 reference ``atol=2e-4, rtol=1e-5``: RoIs here are image-sized (corners up
to ~700 px), where float32 spacing is ~6e-5 px, and sample positions carry that rounding into values through
map slopes of a few units (largest error seen over 300 random seeds: 6.7e-5). A RoI pooled on the wrong level
is off by O(1). float64 ``atol=1e-12``. Level indices are compared exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maskrt import MaskrtError
from maskrt.ops import MultiLevelRoIAlign, infer_scale, level_of_box, multilevel_roi_align, roi_align

from .helpers import random_map, to64
from .reference import infer_scale_ref, level_ref, multilevel_roi_align_ref

F32 = dict(atol=2e-4, rtol=1e-5)
F64 = dict(atol=1e-12, rtol=0)
SCALES = [1 / 4, 1 / 8, 1 / 16, 1 / 32]  # k_min = 2, k_max = 5


def _pyramid(rng, n, c, image_hw, dtype=torch.float32, strides=(4, 8, 16, 32)):
    return [random_map(rng, n, c, math.ceil(image_hw[0] / s), math.ceil(image_hw[1] / s), dtype) for s in strides]


def _random_boxes(rng, n_images, k, image_hw):
    """RoIs from 4 to ~700 pixels a side (every FPN level, and clamping at both ends), some outside the image."""
    h, w = image_hw
    cx = rng.uniform(-30, w + 30, k)
    cy = rng.uniform(-30, h + 30, k)
    side = np.exp(rng.uniform(np.log(4), np.log(700), k))
    aspect = np.exp(rng.uniform(-1.0, 1.0, k))
    bw, bh = side * aspect, side / aspect
    zero = rng.random(k) < 0.1
    bw[zero] = 0.0  # zero area -> log2(0) = -inf -> the finest level
    b = rng.integers(0, n_images, k)
    return np.stack([b, cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)


# Boxes (x1, y1, x2, y2) on and around the level borders, with the 0-based level for k_min=2, k_max=5.
BORDER_BOXES = [
    ((0, 0, 112, 112), 1),  # area exactly 112^2: level 3
    ((0, 0, 111, 113), 0),  # 112^2 - 1: level 2
    ((10, 20, 122.5, 132), 1),  # 112.5 x 112
    ((0, 0, 224, 224), 2),  # exactly 224^2: canonical level 4
    ((0, 0, 223, 225), 1),  # 224^2 - 1
    ((0, 0, 223.5, 224.5), 1),  # 224^2 - 0.25: log2 = -3.6e-6, beyond eps
    ((5, 5, 229, 229.25), 2),  # 224 x 224.25
    ((0, 0, 448, 448), 3),  # exactly 448^2: level 5
    ((0, 0, 447, 449), 2),  # 448^2 - 1: 4 + log2(sqrt(area) / 224) + 1e-6 = 5 - 3.6e-6 + 1e-6 -> level 4
    ((0, 0, 448, 448.5), 3),
    ((0, 0, 2000, 2000), 3),  # clamped to k_max
    ((0, 0, 1, 1), 0),  # clamped to k_min
    ((3, 3, 3, 50), 0),  # zero area
]


def test_border_table_is_right():
    for box, level in BORDER_BOXES:
        assert level_ref(box, 2, 5) == level, box  # the table's levels are computed by hand in its comments


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_level_of_box_on_borders(dtype):
    boxes = torch.tensor([b for b, _ in BORDER_BOXES], dtype=dtype)
    got = level_of_box(boxes, 2, 5)
    assert got.dtype == torch.int64
    assert got.tolist() == [level_ref(b, 2, 5) for b, _ in BORDER_BOXES]
    assert got[[0, 3, 7]].tolist() == [1, 2, 3]  # exactly 112^2, 224^2, 448^2


def test_level_of_box_epsilon_float64():
    """The 1e-6 in eq. 1 lifts boxes a hair below a border; float64 resolves the difference."""
    below = [224 * 2 ** -5e-7, 224 * 2 ** -2e-6, 112 * 2 ** -5e-7, 112 * 2 ** -2e-6, 448 * 2 ** -5e-7, 448 * 2 ** -2e-6]
    boxes = torch.tensor([[0.0, 0.0, s, s] for s in below], dtype=torch.float64)
    got = level_of_box(boxes, 2, 5).tolist()
    assert got == [level_ref(b, 2, 5) for b in boxes.tolist()]
    assert got == [2, 1, 1, 0, 3, 2]


@pytest.mark.parametrize("k_min, k_max, canonical_scale, canonical_level", [(2, 5, 224, 4), (2, 6, 224, 4),
                                                                           (3, 5, 224, 4), (1, 4, 160, 3)])
def test_level_of_box_random(k_min, k_max, canonical_scale, canonical_level):
    rng = np.random.default_rng(k_min * 100 + k_max)
    boxes = _random_boxes(rng, 1, 300, (600, 800))[:, 1:]
    t = torch.from_numpy(boxes).float()
    got = level_of_box(t, k_min, k_max, canonical_scale, canonical_level)
    want = [level_ref(b, k_min, k_max, canonical_scale, canonical_level) for b in to64(t)]
    assert got.tolist() == want


@pytest.mark.parametrize("feature, image", [(64, 256), (63, 250), (32, 250), (16, 250), (8, 250), (200, 800),
                                            (7, 250), (1, 25), (100, 100), (50, 25), (13, 100)])
def test_infer_scale(feature, image):
    assert infer_scale((feature, feature + 3), (image, image + 1)) == infer_scale_ref(feature, image)


@pytest.mark.parametrize("seed", range(12))
def test_random_float32(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3))
    c = int(rng.integers(1, 4))
    image = (int(rng.integers(96, 257)), int(rng.integers(96, 257)))
    feats = _pyramid(rng, n, c, image)
    rois = torch.from_numpy(_random_boxes(rng, n, 20, image)).float()
    out = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    sampling = int(rng.choice([-1, 0, 1, 2, 3]))
    aligned = bool(rng.integers(0, 2))
    mode = str(rng.choice(["avg", "max"]))
    got = multilevel_roi_align(feats, rois, out, sampling, scales=SCALES, aligned=aligned, mode=mode)
    assert got.shape == (20, c, *out) and got.dtype == torch.float32
    want = multilevel_roi_align_ref([to64(f) for f in feats], to64(rois), out, sampling, scales=SCALES,
                                    aligned=aligned, mode=mode)
    np.testing.assert_allclose(to64(got), want, **F32)
    # Inferring the scales from the image size gives the same maps' scales here.
    inferred = multilevel_roi_align(feats, rois, out, sampling, image_size=image, aligned=aligned, mode=mode)
    torch.testing.assert_close(inferred, got, rtol=0, atol=0)


@pytest.mark.parametrize("seed", range(50, 54))
def test_random_float64_inferred_scales(seed):
    rng = np.random.default_rng(seed)
    image = (250, 333)
    feats = _pyramid(rng, 2, 2, image, torch.float64)
    rois = torch.from_numpy(_random_boxes(rng, 2, 16, image))
    got = multilevel_roi_align(feats, rois, (3, 2), 2, image_size=image, aligned=True)
    want = multilevel_roi_align_ref([to64(f) for f in feats], to64(rois), (3, 2), 2, image_size=image, aligned=True)
    np.testing.assert_allclose(to64(got), want, **F64)


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_border_rois_pool_on_their_level(mode):
    rng = np.random.default_rng(77)
    image = (512, 512)
    feats = _pyramid(rng, 1, 2, image)
    rois = torch.tensor([[0.0, *b] for b, _ in BORDER_BOXES])
    got = multilevel_roi_align(feats, rois, (2, 2), 2, scales=SCALES, mode=mode)
    want = multilevel_roi_align_ref([to64(f) for f in feats], to64(rois), (2, 2), 2, scales=SCALES, mode=mode)
    np.testing.assert_allclose(to64(got), want, **F32)
    # And each RoI equals roi_align on the map of its level.
    levels = level_of_box(rois[:, 1:], 2, 5)
    for i, level in enumerate(levels.tolist()):
        single = roi_align(feats[level], rois[i : i + 1], (2, 2), SCALES[level], 2, False, mode)
        torch.testing.assert_close(got[i : i + 1], single, rtol=0, atol=0)


def test_invalid_batch_index_gives_zeros():
    rng = np.random.default_rng(3)
    feats = _pyramid(rng, 2, 2, (128, 128))
    rois = torch.tensor([[2.0, 0, 0, 50, 50], [-1.0, 0, 0, 300, 300], [1.0, 0, 0, 300, 300]])
    got = multilevel_roi_align(feats, rois, 2, 2, scales=SCALES)
    assert torch.count_nonzero(got[:2]) == 0 and torch.count_nonzero(got[2]) > 0


def test_single_feature_map():
    rng = np.random.default_rng(4)
    feat = random_map(rng, 2, 3, 16, 20)
    rois = torch.from_numpy(_random_boxes(rng, 2, 10, (64, 80))).float()
    got = multilevel_roi_align([feat], rois, (2, 3), 2, scales=[0.25])
    torch.testing.assert_close(got, roi_align(feat, rois, (2, 3), 0.25, 2), rtol=0, atol=0)
    inferred = multilevel_roi_align([feat], rois, (2, 3), 2, image_size=(64, 80))
    torch.testing.assert_close(inferred, got, rtol=0, atol=0)
    want = multilevel_roi_align_ref([to64(feat)], to64(rois), (2, 3), 2, scales=[0.25])
    np.testing.assert_allclose(to64(got), want, **F32)


@pytest.mark.parametrize("boxes", [torch.zeros((0, 5)), [], [torch.zeros((0, 4)), torch.zeros((0, 4))]])
def test_empty_rois(boxes):
    feats = _pyramid(np.random.default_rng(5), 2, 3, (64, 64))
    got = multilevel_roi_align(feats, boxes, (2, 4), 2, scales=SCALES)
    assert got.shape == (0, 3, 2, 4)


def test_list_form_equals_tensor_form():
    rng = np.random.default_rng(6)
    feats = _pyramid(rng, 3, 2, (160, 160))
    boxes = [torch.from_numpy(_random_boxes(rng, 1, k, (160, 160))[:, 1:]).float() for k in (4, 0, 7)]
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(boxes)])
    a = multilevel_roi_align(feats, boxes, 3, 2, scales=SCALES, aligned=True)
    b = multilevel_roi_align(feats, rois, 3, 2, scales=SCALES, aligned=True)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_module_form():
    rng = np.random.default_rng(8)
    shapes = [(250, 333), (240, 320)]
    largest = (250, 333)
    levels = _pyramid(rng, 2, 2, largest)
    features = {"0": levels[0], "1": levels[1], "2": levels[2], "3": levels[3], "pool": levels[3][:, :, ::2, ::2]}
    boxes = [torch.from_numpy(_random_boxes(rng, 1, k, s)[:, 1:]).float() for k, s in zip((6, 9), shapes)]
    m = MultiLevelRoIAlign(["0", "1", "2", "3"], output_size=(3, 2), sampling_ratio=2)
    got = m(features, boxes, shapes)
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(boxes)])
    want = multilevel_roi_align_ref([to64(f) for f in levels], to64(rois), (3, 2), 2, image_size=largest)
    np.testing.assert_allclose(to64(got), want, **F32)
    with pytest.raises(MaskrtError):
        m(features, boxes, [])


# --------------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs():
    rng = np.random.default_rng(9)
    feats = _pyramid(rng, 1, 2, (64, 64))
    rois = torch.tensor([[0.0, 0, 0, 10, 10]])
    unequal = [feats[0], random_map(rng, 1, 3, 8, 8), feats[2], feats[3]]
    with pytest.raises(MaskrtError):
        multilevel_roi_align(unequal, rois, 2, 2, scales=SCALES)
    with pytest.raises(MaskrtError):
        multilevel_roi_align([], rois, 2, 2, scales=[])
    with pytest.raises(MaskrtError):
        multilevel_roi_align(feats, rois, 2, 2)  # neither scales nor image_size
    with pytest.raises(MaskrtError):
        multilevel_roi_align(feats, rois, 2, 2, scales=SCALES[:3])
    with pytest.raises(MaskrtError):
        multilevel_roi_align(feats, torch.zeros(1, 4), 2, 2, scales=SCALES)
    with pytest.raises(MaskrtError):
        multilevel_roi_align(feats, rois, 2, 2, scales=SCALES, mode="min")
