"""Where maskrt looks for plugin libraries, how it reports a missing one, and the build helper's arguments."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from maskrt import MaskrtError
from maskrt.plugins import build as build_module
from maskrt.plugins import library, spec
from maskrt.plugins.build import BuildResult, parse_cuda_archs
from tests.plugins.helpers import feature_maps


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No plugin library anywhere: empty MASKRT_PLUGIN_PATH folder, empty cache, empty package folder."""
    monkeypatch.setenv("MASKRT_PLUGIN_PATH", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(library, "package_dir", lambda: str(tmp_path / "pkg"))
    return tmp_path


def test_search_order(isolated, monkeypatch):
    first, second = isolated / "a", isolated / "b"
    monkeypatch.setenv("MASKRT_PLUGIN_PATH", os.pathsep.join([str(first), str(second), str(first)]))
    assert library.search_paths() == [str(first), str(second), os.path.join(str(isolated / "cache"), "maskrt", "plugins"),
                                      str(isolated / "pkg")]
    assert library.cache_dir() == os.path.join(str(isolated / "cache"), "maskrt", "plugins")


def test_find_library_prefers_the_first_folder(isolated, monkeypatch):
    first, second = isolated / "a", isolated / "b"
    for folder in (first, second):
        folder.mkdir()
        (folder / library.library_filename("maskrt_mlra_host")).write_bytes(b"")
    monkeypatch.setenv("MASKRT_PLUGIN_PATH", os.pathsep.join([str(first), str(second)]))
    assert library.find_library("maskrt_mlra_host") == str(first / "libmaskrt_mlra_host.so")


def test_missing_library_is_one_line_with_the_fix(isolated):
    with pytest.raises(MaskrtError) as info:
        library.find_library(spec.HOST_LIBRARY)
    message = str(info.value)
    assert "\n" not in message
    assert "libmaskrt_mlra_host.so not found" in message and "maskrt plugins build" in message
    with pytest.raises(MaskrtError, match="maskrt plugins build"):
        library.multilevel_roi_align_host(feature_maps(), torch.zeros(1, 5), [1 / 4, 1 / 8, 1 / 16, 1 / 32], 7)
    assert not library.host_available()
    lines = library.describe_paths()
    assert any(line.startswith("search path:") for line in lines)
    assert "libmaskrt_trt_plugins.so: not built" in lines


def test_broken_library_file(isolated):
    folder = isolated / "env"
    folder.mkdir()
    (folder / "libmaskrt_mlra_host.so").write_bytes(b"not a library")
    with pytest.raises(MaskrtError, match="cannot load plugin library"):
        library.load_library(spec.HOST_LIBRARY)


def test_parse_cuda_archs():
    assert parse_cuda_archs(None) == ("75", "80", "86", "89", "90", "100", "120")  # Turing to Blackwell
    assert parse_cuda_archs("80;90") == ("80", "90")
    assert parse_cuda_archs("sm_86, 89") == ("86", "89")
    assert parse_cuda_archs([75, "90a"]) == ("75", "90a")
    assert parse_cuda_archs("90-real") == ("90-real",)
    with pytest.raises(MaskrtError, match="--cuda-arch"):
        parse_cuda_archs("ampere")
    with pytest.raises(MaskrtError, match="empty"):
        parse_cuda_archs(";")


def test_build_needs_nvcc_when_asked(monkeypatch, tmp_path):
    monkeypatch.setattr(build_module, "find_nvcc", lambda: None)
    with pytest.raises(MaskrtError, match="nvcc not found"):
        build_module.build(build_dir=tmp_path, with_cuda=True)


def test_build_reports_cmake_failure(monkeypatch, tmp_path):
    monkeypatch.setattr(build_module, "SOURCE_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(MaskrtError, match="plugin configure failed"):
        build_module.build(build_dir=tmp_path / "b", output_dir=tmp_path / "o", with_cuda=False)


def test_build_result_summary(plugin_build):
    assert isinstance(plugin_build, BuildResult)
    lines = plugin_build.summary()
    assert lines[0] == f"output: {plugin_build.output_dir}"
    assert any(line.startswith("libmaskrt_mlra_host.so: /") for line in lines)
    assert plugin_build.driver and os.access(plugin_build.driver, os.X_OK)


def test_host_library_loads_without_cuda_in_a_fresh_process(host_library):
    """The host-only library needs no CUDA runtime: ldd-free check by loading it with CUDA hidden."""
    code = ("import ctypes, sys; lib = ctypes.CDLL(sys.argv[1]); "
            "assert lib.maskrt_mlra_abi_version() == 1 and lib.maskrt_mlra_has_cuda() == 0; print('ok')")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "LD_LIBRARY_PATH": ""}
    proc = subprocess.run([sys.executable, "-c", code, host_library], capture_output=True, text=True, env=env,
                          check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    with open(host_library, "rb") as f:
        assert b"libcudart" not in f.read()


def test_adaptive_grid_is_capped(host_library):
    """A finite but absurd box with adaptive sampling takes at most MAX_ADAPTIVE_GRID^2 samples per bin."""
    maps = [torch.randn(1, 1, 8, 8)]
    rois = torch.tensor([[0, -1e7, -1e7, 1e7, 1e7]])
    start = time.perf_counter()
    out = library.multilevel_roi_align_host(maps, rois, [1.0], (1, 1), sampling_ratio=0, library=host_library)
    assert time.perf_counter() - start < 10
    assert torch.isfinite(out).all()


def test_default_cuda_archs_follow_the_gpu_and_nvcc(monkeypatch):
    from maskrt.plugins import build as build_module

    monkeypatch.setattr(build_module, "local_gpu_architecture", lambda: None)
    monkeypatch.setattr(build_module, "nvcc_architectures", lambda nvcc: ("75", "80", "86", "90", "100", "120", "121"))
    assert build_module.default_cuda_archs("nvcc") == ("75", "80", "86", "90", "100", "120")  # no 89 in this nvcc
    monkeypatch.setattr(build_module, "local_gpu_architecture", lambda: "86")
    assert build_module.default_cuda_archs("nvcc") == ("86",)
    monkeypatch.setattr(build_module, "local_gpu_architecture", lambda: "70")
    with pytest.raises(MaskrtError, match="sm_70, which nvcc .* cannot build for"):
        build_module.default_cuda_archs("nvcc")


def test_the_installed_nvcc_offers_turing_to_blackwell():
    from maskrt.plugins.build import DEFAULT_CUDA_ARCHS, find_nvcc, nvcc_architectures

    offered = nvcc_architectures(find_nvcc())
    if offered is None:
        pytest.skip("no nvcc here")
    assert "75" in offered and set(DEFAULT_CUDA_ARCHS) <= set(offered), offered
