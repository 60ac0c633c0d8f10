"""The CUDA kernel: compiled for sm_80 and sm_90 (needs nvcc only) and, with a GPU, run against the reference."""

from __future__ import annotations

import re
import struct
import subprocess

import pytest
import torch

from maskrt.ops.poolers import multilevel_roi_align
from maskrt.plugins import spec
from maskrt.plugins.build import SOURCE_DIR, find_nvcc
from tests.plugins.helpers import SCALES, feature_maps, random_rois

_EM_CUDA = 190


def _cubin_archs(path: str) -> set[int]:
    """SM versions of the CUDA ELF images (cubins) embedded in a shared library."""
    with open(path, "rb") as f:
        data = f.read()
    archs = set()
    start = 1
    while (at := data.find(b"\x7fELF\x02\x01\x01", start)) != -1:
        start = at + 1
        if struct.unpack_from("<H", data, at + 18)[0] == _EM_CUDA:
            flags = struct.unpack_from("<I", data, at + 48)[0]
            archs.add((flags >> 8) & 0xFF)  # EF_CUDA_SM field of CUDA >= 12.x ELF headers
    return archs


@pytest.fixture(scope="module")
def cuda_library(plugin_build):
    if find_nvcc() is None:
        pytest.skip("nvcc not installed: the CUDA kernel cannot be compiled")
    assert plugin_build.cuda, "nvcc is installed but the CUDA library was not built"
    return plugin_build.libraries[spec.KERNEL_LIBRARY]


def test_kernel_compiled_for_sm80_and_sm90(cuda_library, plugin_build):
    assert plugin_build.cuda_archs == ("80", "90")
    archs = _cubin_archs(cuda_library)
    if not archs:  # an ELF layout this parser does not know: fall back to the compiler's embedded options
        with open(cuda_library, "rb") as f:
            data = f.read()
        archs = {a for a in (80, 90) if f"-arch sm_{a}".encode() in data}
    assert {80, 90} <= archs


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvcc_compiles_kernel(arch, tmp_path):
    nvcc = find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc not installed")
    src = f"{SOURCE_DIR}/csrc/multilevel_roi_align/mlra_cuda.cu"
    out = tmp_path / f"mlra_{arch}.cubin"
    proc = subprocess.run([nvcc, "-std=c++17", "-O3", "-cubin", f"-arch={arch}", "-Xptxas", "-v", "-Werror",
                           "all-warnings", src, "-o", str(out)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.stat().st_size > 0
    spills = re.findall(r"(\d+) bytes spill stores", proc.stderr)
    assert spills and all(n == "0" for n in spills), proc.stderr


@pytest.mark.needs_cuda
@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
@pytest.mark.parametrize("dtypes", [(torch.float32, torch.float32), (torch.float16, torch.float32),
                                    (torch.float16, torch.float16)])
def test_cuda_kernel_matches_reference(cuda_library, mode, aligned, sampling_ratio, dtypes):
    from maskrt.plugins.library import multilevel_roi_align_cuda

    feature_dtype, roi_dtype = dtypes
    maps = feature_maps(batch=2, channels=16, height=160, width=224, seed=21, dtype=feature_dtype)
    rois = random_rois(300, batch=2, height=160, width=224, seed=21, dtype=roi_dtype)
    rois[:3] = torch.tensor([[0, float("nan"), 1, 2, 3], [5, 1, 1, 40, 40], [1, 50, 40, 10, 5]], dtype=roi_dtype)
    want = multilevel_roi_align(maps, rois, (7, 7), sampling_ratio, scales=SCALES, aligned=aligned, mode=mode)
    got = multilevel_roi_align_cuda([m.cuda() for m in maps], rois.cuda(), SCALES, (7, 7), sampling_ratio, aligned,
                                    mode, library=cuda_library)
    torch.cuda.synchronize()
    assert got.dtype == feature_dtype and got.is_cuda
    if feature_dtype == torch.float32:
        torch.testing.assert_close(got.cpu(), want, rtol=0, atol=1e-5)
    else:
        torch.testing.assert_close(got.cpu().float(), want.float(), rtol=2e-3, atol=2e-3)
    # A NaN box and a batch index past the batch pool to zeros. [1, 50, 40, 10, 5] is inverted on both axes, so its
    # area is positive: the reference pools it (to non-zeros in 18 of these 24 cases), and the kernel must match it
    # (checked above), not zero it.
    assert not got[:2].any()


@pytest.mark.needs_cuda
def test_cuda_kernel_empty_and_errors(cuda_library):
    from maskrt.plugins.library import PluginStatusError, multilevel_roi_align_cuda

    maps = [m.cuda() for m in feature_maps(seed=22)]
    out = multilevel_roi_align_cuda(maps, torch.zeros(0, 5, device="cuda"), SCALES, 7, library=cuda_library)
    assert out.shape == (0, 5, 7, 7)
    with pytest.raises(PluginStatusError) as info:
        multilevel_roi_align_cuda([maps[0], maps[1][:, :2]], random_rois(3).cuda(), SCALES[:2], 7,
                                  library=cuda_library)
    assert info.value.status == spec.ERR_SHAPE
