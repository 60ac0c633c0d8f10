"""The thin TensorRT layer's control flow, driven by a stand-in ``tensorrt`` module.

The stand-in records what is called; it verifies the order of calls, the files written and the error paths of
:func:`maskrt.backends.trt.build.build_engine` and :class:`maskrt.backends.trt.api.TrtSession` on a machine without
TensorRT. It says nothing about TensorRT's behaviour: that is for the ``needs_tensorrt`` tests, and the names
themselves are checked by tests/test_tensorrt_api_surface.py.
"""

from __future__ import annotations

import json
import os
import sys
import types

import pytest

from maskrt.backends.trt import build as trt_build
from maskrt.backends.trt import plan as trt_plan
from maskrt.backends.trt import sidecar as trt_sidecar
from maskrt.core.errors import MaskrtError
from tests.backends.engine_fixtures import tiny_onnx


class _Enum:
    def __init__(self, *names):
        for n in names:
            setattr(self, n, n)


def fake_tensorrt(version="10.16.0.72", parse_ok=True, build_ok=True):
    calls = []
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = calls
    trt.DataType = _Enum("FLOAT", "HALF", "BF16", "INT8", "INT32", "INT64", "BOOL", "UINT8")
    trt.TensorIOMode = _Enum("INPUT", "OUTPUT")
    trt.MemoryPoolType = _Enum("WORKSPACE")
    trt.ProfilingVerbosity = _Enum("DETAILED")
    trt.BuilderFlag = _Enum("FP16", "TF32")
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)

    class Logger:
        VERBOSE, WARNING = "VERBOSE", "WARNING"

        def __init__(self, severity):
            calls.append(("Logger", severity))

    def init_libnvinfer_plugins(logger, namespace):
        calls.append(("init_libnvinfer_plugins", namespace))
        return True

    trt.init_libnvinfer_plugins = init_libnvinfer_plugins

    class IProfiler:
        def __init__(self):
            pass

    class Config:
        def set_memory_pool_limit(self, pool, size):
            calls.append(("workspace", pool, size))

        def set_flag(self, flag):
            calls.append(("flag", flag))

        def clear_flag(self, flag):
            calls.append(("clear_flag", flag))

        def create_timing_cache(self, data):
            calls.append(("create_timing_cache", bytes(data)))
            return types.SimpleNamespace(serialize=lambda: b"cache!")

        def set_timing_cache(self, cache, ignore_mismatch):
            return True

        def get_timing_cache(self):
            return types.SimpleNamespace(serialize=lambda: b"cache!")

        def add_optimization_profile(self, profile):
            calls.append(("profile", profile.shapes))

        def __setattr__(self, name, value):
            calls.append(("set", name, value))

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = (lo, opt, hi)

    class Network:
        pass

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls.append(("create_network", flags))
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"ENGINE" if build_ok else None

    class ParserError:
        def node_name(self):
            return "/Mul"

        def node(self):
            return 1

        def node_operator(self):
            return "Mul"

        def desc(self):
            return "unsupported thing"

    class OnnxParser:
        num_errors = 0 if parse_ok else 2

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            calls.append(("parse_from_file", os.path.basename(path)))
            return parse_ok

        def get_error(self, i):
            return ParserError()

    class Context:
        def set_input_shape(self, name, shape):
            calls.append(("set_input_shape", name, shape))
            return shape[0] <= 8

        def get_tensor_shape(self, name):
            return [2, 3, 32, 48]

        def set_tensor_address(self, name, address):
            return True

        def execute_async_v3(self, stream):
            calls.append(("execute_async_v3", stream))
            return True

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i):
            return ["images", "out"][i]

        def get_tensor_mode(self, name):
            return "INPUT" if name == "images" else "OUTPUT"

        def get_tensor_dtype(self, name):
            return "UINT8" if name == "images" else "FLOAT"

        def get_tensor_shape(self, name):
            return [-1, 3, 32, 48]

        def get_tensor_profile_shape(self, name, index):
            return [[1, 3, 32, 48], [1, 3, 32, 48], [8, 3, 32, 48]]

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine() if bytes(data) == b"ENGINE" else None

    trt.Logger, trt.IProfiler, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, IProfiler, Builder, OnnxParser, Runtime
    return trt


@pytest.fixture
def gpu(monkeypatch):
    monkeypatch.setattr(trt_build, "cuda_device", lambda device=None: {"index": 0, "name": "Fake GPU", "compute_capability": "9.0"})


def test_build_flow_writes_engine_sidecar_and_cache(tmp_path, monkeypatch, gpu):
    trt = fake_tensorrt("10.16.0.72")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    onnx = tiny_onnx(tmp_path / "m.onnx")
    cache = tmp_path / "t.cache"
    logged = []
    result = trt_build.build_engine(onnx, str(tmp_path / "m.engine"),
                            trt_plan.BuildOptions(precision="fp16", workspace="1G", max_batch=8, timing_cache=str(cache),
                                           optimization_level=4), log=logged.append)
    assert (tmp_path / "m.engine").read_bytes() == b"ENGINE" and cache.read_bytes() == b"cache!"
    side = json.loads((tmp_path / "m.engine.json").read_text())
    assert side["inputs"][0] == {"name": "images", "dtype": "uint8", "shape": [-1, 3, 32, 48], "min": [1, 3, 32, 48],
                                 "opt": [1, 3, 32, 48], "max": [8, 3, 32, 48]}
    assert side["outputs"] == [{"name": "out", "dtype": "float32", "shape": [-1, 3, 32, 48]}]
    assert side["gpu"]["name"] == "Fake GPU" and side["precision_route"] == "builder-flag"
    assert ("create_network", 0) in trt.calls and ("flag", "FP16") in trt.calls
    assert ("workspace", "WORKSPACE", 2**30) in trt.calls
    assert ("set", "builder_optimization_level", 4) in trt.calls
    assert ("set", "profiling_verbosity", "DETAILED") in trt.calls
    assert ("profile", {"images": ((1, 3, 32, 48), (1, 3, 32, 48), (8, 3, 32, 48))}) in trt.calls
    assert trt.calls.index(("parse_from_file", "m.onnx")) < trt.calls.index(("flag", "FP16"))
    assert any("builder flag" in line for line in logged)
    assert result.timing_cache_written == str(cache)
    trt_sidecar.check_engine_file(result.path, side)
    # TensorRT's standard plugins (ROIAlign_TRT for ONNX RoiAlign) are registered before the parser runs, and an
    # "fp32" build does not let TensorRT use TF32
    assert trt.calls.index(("init_libnvinfer_plugins", "")) < trt.calls.index(("parse_from_file", "m.onnx"))
    assert ("clear_flag", "TF32") in trt.calls and side["tf32"] is False
    assert side["cuda_graph_capturable"] is True  # the tiny graph has no NMS


def test_build_flow_fp16_onnx_on_11(tmp_path, monkeypatch, gpu):
    trt = fake_tensorrt("11.1.0.106")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    result = trt_build.build_engine(tiny_onnx(tmp_path / "h.onnx", precision="fp16"), str(tmp_path / "h.engine"))
    assert result.plan.precision_route == "onnx-types"
    assert ("create_network", 0) in trt.calls and not any(c[0] == "flag" for c in trt.calls)


def test_build_flow_fp16_flag_refused_on_11(tmp_path, monkeypatch, gpu):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("11.1.0"))
    with pytest.raises(MaskrtError, match="export --precision fp16"):
        trt_build.build_engine(tiny_onnx(tmp_path / "m.onnx"), str(tmp_path / "m.engine"), trt_plan.BuildOptions(precision="fp16"))
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_build_flow_parser_errors(tmp_path, monkeypatch, gpu):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(parse_ok=False))
    with pytest.raises(trt_plan.OnnxParseError) as e:
        trt_build.build_engine(tiny_onnx(tmp_path / "m.onnx"), str(tmp_path / "m.engine"))
    assert e.value.lines == ["node /Mul (Mul): unsupported thing"] * 2
    assert "2 error(s)" in str(e.value) and sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_build_flow_failed_build_keeps_the_old_engine(tmp_path, monkeypatch, gpu):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(build_ok=False))
    (tmp_path / "m.engine").write_bytes(b"old")
    with pytest.raises(MaskrtError, match="could not build"):
        trt_build.build_engine(tiny_onnx(tmp_path / "m.onnx"), str(tmp_path / "m.engine"))
    assert (tmp_path / "m.engine").read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["m.engine", "m.onnx"]


def test_cli_prints_parser_errors_one_per_line(tmp_path, monkeypatch, gpu):
    from click.testing import CliRunner

    from maskrt.cli.app import cli

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(parse_ok=False))
    r = CliRunner().invoke(cli, ["build", tiny_onnx(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.engine")])
    assert r.exit_code == 2
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert lines[0].startswith("note: dynamic batch")
    assert lines[1:] == ["node /Mul (Mul): unsupported thing"] * 2 + [
        "error: TensorRT's ONNX parser refused m.onnx (2 error(s), listed above)"]


def test_cli_build_success_output(tmp_path, monkeypatch, gpu):
    from click.testing import CliRunner

    from maskrt.cli.app import cli

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt())
    onnx = tiny_onnx(tmp_path / "m.onnx", batch=1)
    r = CliRunner().invoke(cli, ["build", onnx, "-o", str(tmp_path / "m.engine"), "--max-batch", "4"])
    assert r.exit_code == 0, r.output
    assert "fixed batch of 1" in r.output and "built " in r.output and "TensorRT 10.16.0.72, Fake GPU (sm 9.0)" in r.output
    assert f"maskrt predict {tmp_path / 'm.engine'} IMAGE.jpg" in r.output and "maskrt profile" in r.output


def test_session_flow(monkeypatch):
    from maskrt.backends.trt.api import TrtSession

    trt = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    with pytest.raises(MaskrtError, match="cannot deserialise"):
        TrtSession(b"junk")
    s = TrtSession(b"ENGINE")
    # the standard plugins are registered (once) before an engine is deserialised; one logger for everything
    assert trt.calls.count(("init_libnvinfer_plugins", "")) == 1
    assert sum(1 for c in trt.calls if c[0] == "Logger") == 1
    assert [t["name"] for t in s.io] == ["images", "out"] and s.io[0]["max"] == [8, 3, 32, 48]
    s.set_input_shape("images", (2, 3, 32, 48))
    assert s.tensor_shape("out") == (2, 3, 32, 48)
    with pytest.raises(MaskrtError, match="outside its optimization profile"):
        s.set_input_shape("images", (9, 3, 32, 48))
    s.set_address("out", 1234)
    s.enqueue(7)
    assert ("execute_async_v3", 7) in trt.calls
    s.start_layer_profile()
    s.profiler.report_layer_time("conv", 1.5)
    s.profiler.report_layer_time("conv", 2.5)
    assert s.stop_layer_profile() == {"conv": [1.5, 2.5]}
    s.close()


def test_engines_with_nms_refuse_cuda_graphs_up_front(tmp_path, monkeypatch):
    from maskrt.backends.trt.runner import TrtRunner
    from tests.backends.engine_fixtures import fake_engine

    path = fake_engine(tmp_path / "m.engine")
    side = json.loads((tmp_path / "m.engine.json").read_text())
    side["cuda_graph_capturable"] = False
    (tmp_path / "m.engine.json").write_text(json.dumps(side))
    with pytest.raises(MaskrtError, match="data-dependent shapes .* without --cuda-graph"):
        TrtRunner(path, cuda_graph=True)
    TrtRunner(path)  # without CUDA graphs it is fine
    del side["cuda_graph_capturable"]  # a sidecar that does not say: refused too
    (tmp_path / "m.engine.json").write_text(json.dumps(side))
    with pytest.raises(MaskrtError, match="data-dependent shapes"):
        TrtRunner(path, cuda_graph=True)
