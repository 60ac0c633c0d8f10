"""Fixtures of the plugin tests: one CMake build of the plugin libraries per session, into a temporary folder.

The build holds the host twin and its driver always, and the CUDA library (sm_80 and sm_90) when nvcc is
installed. While the session runs, ``MASKRT_PLUGIN_PATH`` points at it, so maskrt finds these libraries first.
"""

from __future__ import annotations

import os
import shutil

import pytest

from maskrt.plugins.build import build, find_nvcc


@pytest.fixture(scope="session")
def plugin_build(tmp_path_factory):
    """BuildResult of the session's build (CUDA included when nvcc is found)."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed: the plugin libraries cannot be built")
    root = tmp_path_factory.mktemp("maskrt-plugins")
    result = build(cuda_archs="80;90", build_dir=root / "build", output_dir=root / "lib",
                   with_cuda=find_nvcc() is not None)
    saved = os.environ.get("MASKRT_PLUGIN_PATH")
    os.environ["MASKRT_PLUGIN_PATH"] = result.output_dir
    yield result
    if saved is None:
        os.environ.pop("MASKRT_PLUGIN_PATH", None)
    else:
        os.environ["MASKRT_PLUGIN_PATH"] = saved


@pytest.fixture(scope="session")
def host_library(plugin_build) -> str:
    """Path of the session's libmaskrt_mlra_host.so."""
    from maskrt.plugins import spec

    return plugin_build.libraries[spec.HOST_LIBRARY]


@pytest.fixture(scope="session")
def asan_build(tmp_path_factory):
    """A host-only build with AddressSanitizer (the maskrt_mlra_run driver is what the tests run)."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed: the plugin libraries cannot be built")
    root = tmp_path_factory.mktemp("maskrt-plugins-asan")
    return build(build_dir=root / "build", output_dir=root / "lib", with_cuda=False, asan=True)
