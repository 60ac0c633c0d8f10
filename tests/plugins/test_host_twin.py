"""The host (CPU) twin of the CUDA kernel against maskrt's PyTorch multi-level RoI Align.

The twin runs the kernel's own per-element code (mlra_math.h) on the CPU, so these tests pin down the math the
GPU runs; the CUDA build itself is compared in test_cuda.py where a GPU is present.
"""

from __future__ import annotations

import ctypes

import pytest
import torch

from maskrt import MaskrtError
from maskrt.ops.poolers import level_of_box, multilevel_roi_align
from maskrt.plugins import spec
from maskrt.plugins.library import (
    PluginStatusError,
    load_library,
    multilevel_roi_align_host,
)
from tests.plugins.helpers import SCALES, RawCall, feature_maps, random_rois


def _both(maps, rois, size=(7, 6), sampling_ratio=2, aligned=False, mode="avg", scales=SCALES, library=None):
    got = multilevel_roi_align_host(maps, rois, scales, size, sampling_ratio, aligned, mode, library=library)
    want = multilevel_roi_align(maps, rois, size, sampling_ratio, scales=scales, aligned=aligned, mode=mode)
    return got, want


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [2, 3, 0, -1])
def test_fp32_matches_reference(host_library, mode, aligned, sampling_ratio):
    maps = feature_maps(seed=sampling_ratio + 10)
    rois = random_rois(80, seed=sampling_ratio + 10)
    got, want = _both(maps, rois, sampling_ratio=sampling_ratio, aligned=aligned, mode=mode, library=host_library)
    assert got.dtype == torch.float32 and got.shape == (80, 5, 7, 6)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert want.abs().sum() > 0


def test_fp32_is_bit_identical(host_library):
    """Same operations in the same order, one rounding each: the twin reproduces the reference exactly."""
    maps = feature_maps(batch=3, channels=4, seed=3)
    rois = random_rois(200, batch=3, seed=3)
    for mode in ("avg", "max"):
        got, want = _both(maps, rois, sampling_ratio=0, aligned=True, mode=mode, library=host_library)
        assert torch.equal(got, want)


@pytest.mark.parametrize("roi_dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_fp16_matches_reference(host_library, roi_dtype, mode):
    maps = feature_maps(seed=5, dtype=torch.float16)
    rois = random_rois(80, seed=5, dtype=roi_dtype)
    got, want = _both(maps, rois, sampling_ratio=0, aligned=False, mode=mode, library=host_library)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), want.float(), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("roi_dtype", [torch.float32, torch.float16])
def test_level_borders(host_library, roi_dtype):
    """Boxes whose sqrt(area) sits exactly on the canonical thresholds (56, 112, 224, 448, 896) and just below."""
    sides = [56.0, 55.9, 112.0, 111.9, 224.0, 223.9, 448.0, 447.9, 896.0, 40.0]
    rois = [[0, 10.0, 12.0, 10.0 + s, 12.0 + s] for s in sides]
    rois += [[1, 5.0, 5.0, 5.0 + 112.0, 5.0 + 448.0], [1, 0.0, 0.0, 448.0, 112.0]]  # area 224^2, not square
    rois = torch.tensor(rois, dtype=roi_dtype)
    levels = level_of_box(rois[:, 1:], 2, 5).tolist()
    if roi_dtype == torch.float32:
        assert levels == [0, 0, 1, 0, 2, 1, 3, 2, 3, 0, 2, 2]
    dtype = torch.float16 if roi_dtype == torch.float16 else torch.float32
    maps = feature_maps(height=128, width=160, seed=7, dtype=dtype)
    for aligned in (False, True):
        got, want = _both(maps, rois, sampling_ratio=2, aligned=aligned, library=host_library)
        assert torch.equal(got, want)


def test_empty_roi_set(host_library):
    maps = feature_maps()
    got = multilevel_roi_align_host(maps, torch.zeros(0, 5), SCALES, 7, library=host_library)
    assert got.shape == (0, 5, 7, 7)
    assert multilevel_roi_align_host(maps, [torch.zeros(0, 4), torch.zeros(0, 4)], SCALES, 7).shape == (0, 5, 7, 7)


def test_single_level_and_list_boxes(host_library):
    maps = feature_maps(seed=2)[:1]
    boxes = [random_rois(10, seed=2)[:, 1:], random_rois(7, seed=3)[:, 1:]]
    got, want = _both(maps, boxes, scales=SCALES[:1], sampling_ratio=-1, library=host_library)
    assert got.shape == (17, 5, 7, 6)
    assert torch.equal(got, want)


def test_batch_index_rules(host_library):
    """Batch indices are truncated toward zero; outside [0, B) or not finite the RoI pools to zeros."""
    maps = feature_maps(batch=2, seed=4)
    box = [8.0, 8.0, 60.0, 50.0]
    index = [0.0, 1.0, 1.999, -0.5, 2.0, -1.0, 7.0, float("nan"), float("inf")]
    rois = torch.tensor([[i] + box for i in index])
    got, want = _both(maps, rois, library=host_library)
    assert torch.equal(got, want)
    assert torch.equal(got[2], got[1]) and torch.equal(got[3], got[0])
    assert got[:4].abs().sum(dim=(1, 2, 3)).gt(0).all()
    assert not got[4:].any()


def test_bad_boxes_pool_to_zeros(host_library):
    """NaN/inf coordinates, and boxes with negative area (x2 < x1 only: no level), give zeros, never a read."""
    maps = feature_maps(seed=6)
    nan, inf = float("nan"), float("inf")
    rois = torch.tensor([
        [0, nan, 10, 50, 60],
        [0, 10, 10, inf, 60],
        [1, -inf, -inf, inf, inf],
        [1, 60, 10, 20, 50],    # x2 < x1: negative area, no level
        [0, 10, 60, 50, 20],    # y2 < y1
        [0, 1e30, 1e30, 2e30, 2e30],  # finite, far outside
        [1, 60, 60, 20, 20],    # both inverted: positive area, pooled like the reference does
        [0, 10, 10, 10, 10],    # empty box: level k_min
    ])
    for aligned in (False, True):
        for mode in ("avg", "max"):
            for sampling_ratio in (2, 0):
                got, want = _both(maps, rois, sampling_ratio=sampling_ratio, aligned=aligned, mode=mode,
                                  library=host_library)
                torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=False)
                assert not got[:6].any()
                assert torch.isfinite(got).all()


def test_wrapper_errors(host_library):
    maps = feature_maps()
    rois = random_rois(4)
    with pytest.raises(PluginStatusError) as info:
        multilevel_roi_align_host([maps[0], maps[1][:, :3]], rois, SCALES[:2], 7, library=host_library)
    assert info.value.status == spec.ERR_SHAPE
    with pytest.raises(MaskrtError, match="mode"):
        multilevel_roi_align_host(maps, rois, SCALES, 7, mode="sum", library=host_library)
    with pytest.raises(MaskrtError, match="float32 or float16"):
        multilevel_roi_align_host([m.double() for m in maps], rois, SCALES, 7, library=host_library)
    with pytest.raises(MaskrtError, match="4 scales for 3"):
        multilevel_roi_align_host(maps[:3], rois, SCALES, 7, library=host_library)
    with pytest.raises(MaskrtError, match="one dtype"):
        multilevel_roi_align_host([m.half() for m in maps[:2]] + maps[2:], rois, SCALES, 7, library=host_library)
    with pytest.raises(PluginStatusError) as info:
        multilevel_roi_align_host(maps, rois.half(), SCALES, 7, library=host_library)
    assert info.value.status == spec.ERR_DTYPE


@pytest.mark.parametrize(
    "edit, status",
    [
        (lambda c: setattr(c, "num_levels", 0), spec.ERR_NUM_LEVELS),
        (lambda c: setattr(c, "num_levels", spec.MAX_LEVELS + 1), spec.ERR_NUM_LEVELS),
        (lambda c: setattr(c, "ptrs", None), spec.ERR_NULL_POINTER),
        (lambda c: c.ptrs.__setitem__(1, None), spec.ERR_NULL_POINTER),
        (lambda c: setattr(c, "roi_ptr", None), spec.ERR_NULL_POINTER),
        (lambda c: setattr(c, "out_ptr", None), spec.ERR_NULL_POINTER),
        (lambda c: c.shapes.__setitem__(5, 4), spec.ERR_SHAPE),      # level 1 has another channel count
        (lambda c: c.shapes.__setitem__(4, 3), spec.ERR_SHAPE),      # level 1 has another batch size
        (lambda c: c.shapes.__setitem__(6, -2), spec.ERR_SHAPE),     # negative height
        (lambda c: c.roi_shape.__setitem__(1, 4), spec.ERR_SHAPE),   # rois (K, 4)
        (lambda c: c.out_shape.__setitem__(0, 5), spec.ERR_SHAPE),   # output K differs from the rois'
        (lambda c: c.out_shape.__setitem__(1, 2), spec.ERR_SHAPE),   # output C differs from the maps'
        (lambda c: c.out_shape.__setitem__(2, 0), spec.ERR_ARGUMENT),
        (lambda c: setattr(c, "roi_dtype", 1), spec.ERR_DTYPE),      # fp16 rois with fp32 maps
        (lambda c: setattr(c, "feature_dtype", 3), spec.ERR_DTYPE),
        (lambda c: setattr(c, "mode", 2), spec.ERR_ARGUMENT),
        (lambda c: c.scales.__setitem__(2, 0.0), spec.ERR_ARGUMENT),
        (lambda c: c.scales.__setitem__(0, float("nan")), spec.ERR_ARGUMENT),
        (lambda c: setattr(c, "canonical_scale", 0.0), spec.ERR_ARGUMENT),
    ],
)
def test_status_codes(host_library, edit, status):
    """Bad arguments give their status and leave the output untouched."""
    lib = load_library(spec.HOST_LIBRARY, host_library)
    call = RawCall(feature_maps(), random_rois(4), SCALES)
    assert lib.maskrt_mlra_forward_host(*call.args()) == spec.OK
    call = RawCall(feature_maps(), random_rois(4), SCALES)
    edit(call)
    assert lib.maskrt_mlra_forward_host(*call.args()) == status
    assert bool((call.output == 7.0).all())
    assert lib.maskrt_mlra_status_string(status).decode() == spec.STATUS[status]


def test_host_library_has_no_cuda(host_library):
    lib = load_library(spec.HOST_LIBRARY, host_library)
    assert lib.maskrt_mlra_abi_version() == spec.ABI_VERSION
    assert lib.maskrt_mlra_has_cuda() == 0
    call = RawCall(feature_maps(), random_rois(4), SCALES)
    assert lib.maskrt_mlra_forward_cuda(*call.args(), ctypes.c_void_p()) == spec.ERR_NO_CUDA


def test_full_library_host_twin_on_cpu_machine(plugin_build):
    """libmaskrt_mlra (CUDA runtime linked statically) loads and runs its host twin without a GPU."""
    path = plugin_build.libraries.get(spec.KERNEL_LIBRARY)
    if path is None:
        pytest.skip("nvcc not installed: the CUDA library was not built")
    lib = load_library(spec.KERNEL_LIBRARY, path)
    assert lib.maskrt_mlra_has_cuda() == 1
    maps, rois = feature_maps(seed=8), random_rois(30, seed=8)
    got, want = _both(maps, rois, library=path)
    assert torch.equal(got, want)
