"""maskrt's CUDA kernels for the custom ops: their design checked on the CPU (the NMS run layout and the greedy
walk the kernel performs, against the ops' CPU implementations), the source compiled with nvcc where one is
installed, and the kernels against the CPU implementations on a GPU (needs_cuda)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig

import pytest
import torch

from maskrt.ops import cuda_kernels
from maskrt.ops import library as _library  # noqa: F401
from maskrt.profiling.opcount import OpCounter


def _random_case(seed, b=2, n=300, categories=7):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(b, n, 2, generator=g) * 200
    wh = torch.rand(b, n, 2, generator=g) * 60 + 1
    boxes = torch.cat([xy, xy + wh], dim=-1)
    scores = torch.rand(b, n, generator=g)
    scores[:, ::17] = 0.5  # ties keep index order
    idxs = torch.randint(0, categories, (b, n), generator=g)
    valid = torch.rand(b, n, generator=g) > 0.2
    return boxes, scores, idxs, valid


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("limit", [0, 5])
def test_nms_runs_and_greedy_walk_equal_the_cpu_op(seed, limit):
    boxes, scores, idxs, valid = _random_case(seed)
    expected = torch.ops.maskrt.batched_nms_mask(boxes, scores, idxs, valid, 0.5, 7, limit)
    with torch.no_grad(), OpCounter(strict=True):  # the torch part of the CUDA path reads nothing back
        runs = cuda_kernels.nms_runs(boxes, scores, idxs, valid, 7)
    got = cuda_kernels.greedy_runs_reference(*runs, 0.5, limit)
    assert torch.equal(got, expected)
    assert not (got & ~valid).any()


def _compile_flags(tmp_path):
    include = os.path.join(os.path.dirname(torch.__file__), "include")
    stub = tmp_path / "stub" / "c10" / "cuda" / "impl"
    stub.mkdir(parents=True)
    # A CPU build of PyTorch ships the CUDA headers but not this generated one.
    (stub / "cuda_cmake_macros.h").write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    return ["-std=c++20", "-O1", "-arch=sm_90", "-DTORCH_EXTENSION_NAME=maskrt_torch_cuda",
            f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}", f"-I{include}",
            f"-I{include}/torch/csrc/api/include", f"-I{sysconfig.get_paths()['include']}", f"-I{tmp_path / 'stub'}",
            f"-I{cuda_kernels.MLRA_DIR}", "--expt-relaxed-constexpr", "-Xcompiler", "-fPIC", "-w"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None or shutil.which("nm") is None, reason="needs nvcc and nm")
def test_extension_sources_compile_and_link_without_missing_symbols(tmp_path):
    """The extension's sources (cuda_kernels.SOURCES, what load() builds) compile with nvcc against PyTorch's
    headers and link into a shared object that leaves none of maskrt's own symbols undefined: a Python extension
    links with undefined symbols allowed, so a missing source shows only as an ImportError on the GPU machine (the
    status-string function of the C ABI was once missing this way). PyTorch's symbols stay undefined here (a CPU
    PyTorch has no CUDA libraries to link)."""
    objects = []
    for i, source in enumerate(cuda_kernels.SOURCES):
        obj = tmp_path / f"{i}.o"
        compiler = ["nvcc", "-c", *_compile_flags(tmp_path / str(i))] if source.endswith(".cu") else [
            "nvcc", "-c", "-std=c++20", "-Xcompiler", "-fPIC", f"-I{cuda_kernels.MLRA_DIR}"]
        proc = subprocess.run([*compiler, source, "-o", str(obj)], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        objects.append(str(obj))
    library = tmp_path / "maskrt_torch_cuda.so"
    proc = subprocess.run(["nvcc", "-shared", *objects, "-o", str(library)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(library)], capture_output=True, text=True,
                               check=True).stdout.split()
    assert undefined, "nm listed nothing: the check would pass vacuously"
    assert [name for name in undefined if name.startswith("maskrt")] == []


@pytest.fixture(scope="module")
def cuda_ops():
    if not cuda_kernels.register_cuda_kernels():
        pytest.skip("CUDA kernels disabled")
    return True


@pytest.mark.needs_cuda
@pytest.mark.parametrize("limit", [0, 5])
def test_nms_kernel_equals_cpu(cuda_ops, limit):
    boxes, scores, idxs, valid = _random_case(4, b=3, n=2000, categories=11)
    expected = torch.ops.maskrt.batched_nms_mask(boxes, scores, idxs, valid, 0.6, 11, limit)
    got = torch.ops.maskrt.batched_nms_mask(boxes.cuda(), scores.cuda(), idxs.cuda(), valid.cuda(), 0.6, 11, limit)
    assert torch.equal(got.cpu(), expected)


@pytest.mark.needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_roi_align_kernel_equals_cpu(cuda_ops, dtype):
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 16, 200 // 2**i, 336 // 2**i, generator=g) for i in range(4)]
    xy = torch.rand(300, 2, generator=g) * 700
    wh = torch.rand(300, 2, generator=g) * 500 + 1
    rois = torch.cat([torch.randint(0, 2, (300, 1), generator=g).float(), xy, xy + wh], dim=1)
    args = ([1 / 4, 1 / 8, 1 / 16, 1 / 32], 7, 7, 2, False, "avg", 224, 4)
    expected = torch.ops.maskrt.multilevel_roi_align([f.to(dtype).float() for f in feats], rois, *args)
    got = torch.ops.maskrt.multilevel_roi_align([f.to(dtype).cuda() for f in feats], rois.cuda(), *args)
    assert got.dtype == dtype
    # fp32: the kernel follows the reference's rounding (mlra_math.h); fp16: one rounding of the stored bin.
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(got.float().cpu(), expected, **tol)
