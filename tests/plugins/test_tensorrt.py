"""The TensorRT wrapper: compiled against TensorRT headers, exercised through its entry points, and (with
TensorRT and a GPU) loaded by TensorRT, parsed from ONNX and run.

Header folders come from ``MASKRT_TRT_INCLUDE_DIRS`` (os.pathsep-separated; e.g. the include/ of several
NVIDIA/TensorRT release tags) and from an installed TensorRT ($TENSORRT_ROOT/include, the system folders).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from maskrt.ops.poolers import multilevel_roi_align
from maskrt.plugins import spec
from maskrt.plugins.build import SOURCE_DIR, build, find_nvcc
from tests.plugins.helpers import SCALES, feature_maps, random_rois

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(SOURCE_DIR, "csrc")
MLRA = os.path.join(CSRC, "multilevel_roi_align")


def installed_trt_includes() -> list[str]:
    roots = [os.environ.get("TENSORRT_ROOT", ""), "/usr/local/TensorRT"]
    candidates = [os.path.join(r, "include") for r in roots if r]
    candidates += ["/usr/include/x86_64-linux-gnu", "/usr/include/aarch64-linux-gnu", "/usr/include"]
    return [c for c in candidates if os.path.isfile(os.path.join(c, "NvInferRuntime.h"))]


def trt_includes() -> list[str]:
    extra = [p for p in os.environ.get("MASKRT_TRT_INCLUDE_DIRS", "").split(os.pathsep) if p]
    found = [p for p in extra if os.path.isfile(os.path.join(p, "NvInferRuntime.h"))]
    return list(dict.fromkeys(found + installed_trt_includes()))


def cuda_include() -> str | None:
    nvcc = find_nvcc()
    roots = [os.path.dirname(os.path.dirname(nvcc))] if nvcc else []
    roots += [os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"]
    for root in roots:
        if root and os.path.isfile(os.path.join(root, "include", "cuda_runtime_api.h")):
            return os.path.join(root, "include")
    return None


def _compiler():
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    cuda = cuda_include()
    if cuda is None:
        pytest.skip("CUDA headers (cuda_runtime_api.h) not found; TensorRT's headers include them")
    return cxx, cuda


@pytest.mark.parametrize("include", trt_includes() or [None])
def test_plugin_entry_points_against_headers(include, tmp_path):
    """Build the smoke driver with the plugin (no TensorRT library needed) under ASan/UBSan and run it."""
    if include is None:
        pytest.skip("no TensorRT headers: set MASKRT_TRT_INCLUDE_DIRS or TENSORRT_ROOT")
    cxx, cuda = _compiler()
    exe = tmp_path / "trt_plugin_smoke"
    cmd = [cxx, "-std=c++17", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-Wall",
           "-Wextra", "-Werror", "-isystem", include, "-isystem", cuda, "-I", MLRA,
           os.path.join(HERE, "trt_plugin_smoke.cpp"), os.path.join(CSRC, "tensorrt", "mlra_plugin.cpp"),
           os.path.join(MLRA, "mlra_common.cpp"), os.path.join(MLRA, "mlra_nocuda.cpp"), "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, check=False,
                         env={**os.environ, "ASAN_OPTIONS": "detect_leaks=0"})
    assert run.returncode == 0 and run.stdout.strip().endswith("OK"), run.stdout[-2000:] + run.stderr[-2000:]


@pytest.mark.needs_tensorrt
def test_wrapper_compiles_against_installed_tensorrt(tmp_path):
    includes = installed_trt_includes()
    if not includes:
        pytest.skip("the tensorrt package is installed but its C++ headers are not (set TENSORRT_ROOT)")
    cxx, cuda = _compiler()
    cmd = [cxx, "-std=c++17", "-O2", "-fPIC", "-Wall", "-Wextra", "-Werror", "-isystem", includes[0], "-isystem", cuda,
           "-I", MLRA, "-c", os.path.join(CSRC, "tensorrt", "mlra_plugin.cpp"), "-o", str(tmp_path / "plugin.o")]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def trt_plugin_library(tmp_path_factory):
    if find_nvcc() is None:
        pytest.skip("nvcc not installed")
    root = tmp_path_factory.mktemp("maskrt-trt")
    result = build(cuda_archs=os.environ.get("MASKRT_TEST_CUDA_ARCHS", "80;90"), build_dir=root / "build",
                   output_dir=root / "lib", with_cuda=True)
    if not result.tensorrt:
        pytest.skip("TensorRT headers or libnvinfer not found by CMake (set TENSORRT_ROOT)")
    return result.libraries[spec.TENSORRT_LIBRARY]


@pytest.mark.needs_tensorrt
def test_registry_loads_the_library(trt_plugin_library):
    import tensorrt as trt

    registry = trt.get_plugin_registry()
    handle = registry.load_library(trt_plugin_library)
    assert handle is not None
    creator = registry.get_creator(spec.PLUGIN_NAME, spec.PLUGIN_VERSION, spec.PLUGIN_NAMESPACE)
    assert creator is not None
    registry.deregister_library(handle)


@pytest.mark.needs_tensorrt
@pytest.mark.needs_cuda
def test_engine_from_onnx_matches_reference(trt_plugin_library, tmp_path):
    """Parse a one-node plugin graph with TensorRT's ONNX parser, build an engine, run it on dynamic RoI counts."""
    import tensorrt as trt
    from onnx import TensorProto, helper

    logger = trt.Logger(trt.Logger.WARNING)
    registry = trt.get_plugin_registry()
    handle = registry.load_library(trt_plugin_library)
    try:
        maps = feature_maps(batch=2, channels=8, height=128, width=160, seed=41)
        inputs = [helper.make_tensor_value_info("rois", TensorProto.FLOAT, ["K", 5])]
        inputs += [helper.make_tensor_value_info(f"p{i}", TensorProto.FLOAT, list(m.shape)) for i, m in enumerate(maps)]
        node = helper.make_node(
            spec.PLUGIN_NAME, ["rois"] + [f"p{i}" for i in range(len(maps))], ["out"], domain=spec.ONNX_DOMAIN,
            plugin_version=spec.PLUGIN_VERSION, plugin_namespace=spec.PLUGIN_NAMESPACE, output_height=7,
            output_width=7, sampling_ratio=2, aligned=0, mode="avg", canonical_scale=224, canonical_level=4,
            scales=SCALES,
        )
        out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["K", 8, 7, 7])
        model = helper.make_model(helper.make_graph([node], "plugin", inputs, [out]), ir_version=8,
                                  opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(spec.ONNX_DOMAIN, 1)])
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        assert parser.parse(model.SerializeToString()), [str(parser.get_error(i)) for i in range(parser.num_errors)]
        config = builder.create_builder_config()
        profile = builder.create_optimization_profile()
        profile.set_shape("rois", (1, 5), (100, 5), (300, 5))
        config.add_optimization_profile(profile)
        engine_bytes = builder.build_serialized_network(network, config)
        assert engine_bytes is not None
        engine = trt.Runtime(logger).deserialize_cuda_engine(engine_bytes)
        context = engine.create_execution_context()
        for count in (1, 57, 300):
            rois = random_rois(count, batch=2, height=128, width=160, seed=count)
            want = multilevel_roi_align(maps, rois, (7, 7), 2, scales=SCALES)
            tensors = {"rois": rois.cuda(), **{f"p{i}": m.cuda() for i, m in enumerate(maps)}}
            got = torch.empty((count, 8, 7, 7), device="cuda")
            context.set_input_shape("rois", tuple(rois.shape))
            for name, t in tensors.items():
                context.set_tensor_address(name, t.data_ptr())
            context.set_tensor_address("out", got.data_ptr())
            stream = torch.cuda.current_stream()
            assert context.execute_async_v3(stream.cuda_stream)
            stream.synchronize()
            np.testing.assert_allclose(got.cpu().numpy(), want.numpy(), rtol=0, atol=1e-5)
    finally:
        registry.deregister_library(handle)
