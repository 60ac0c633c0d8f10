"""The engine sidecar, the compatibility check, atomic writes, and what happens without TensorRT."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import types

import pytest

from maskrt.backends.trt import build as trt_build
from maskrt.backends.trt import plan as trt_plan
from maskrt.backends.trt import sidecar as trt_sidecar
from maskrt.core.errors import InternalError, MaskrtError
from maskrt.core.fileio import atomic_write
from tests.backends.engine_fixtures import fake_engine, tiny_onnx

H100 = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}


def _sidecar(tmp_path, **kw):
    onnx = tiny_onnx(tmp_path / "m.onnx")
    info = trt_plan.inspect_onnx(onnx)
    plan = trt_plan.plan_build(info, trt_plan.BuildOptions(precision="fp16", max_batch=4, workspace="1G"), "10.16.0.72")
    io = [{"name": "images", "input": True, "dtype": "uint8", "shape": [-1, 3, 32, 48], "min": [1, 3, 32, 48],
           "opt": [1, 3, 32, 48], "max": [4, 3, 32, 48]},
          {"name": "out", "input": False, "dtype": "float32", "shape": [-1, 3, 32, 48]}]
    data = b"engine bytes"
    return trt_sidecar.make_sidecar(engine_file=str(tmp_path / "m.engine"), engine_size=len(data),
                          engine_sha256=hashlib.sha256(data).hexdigest(), plan=plan, info=info, io=io, gpu=H100,
                          seconds=12.34, maskrt_version="0.1.0", **kw), data, info


def test_sidecar_round_trip(tmp_path):
    sidecar, data, info = _sidecar(tmp_path)
    engine = tmp_path / "m.engine"
    engine.write_bytes(data)
    path = trt_sidecar.write_sidecar(str(engine), sidecar)
    assert path == str(engine) + ".json"
    back = trt_sidecar.read_sidecar(str(engine))
    assert back == json.loads(json.dumps(sidecar))
    assert back["tensorrt"]["version"] == "10.16.0.72"
    assert back["gpu"] == {"name": H100["name"], "compute_capability": "9.0"}
    assert back["precision"] == "fp16" and back["precision_route"] == "builder-flag"
    assert back["onnx"]["sha256"] == info.sha256 and back["onnx"]["metadata"]["preset"] == "tiny"
    assert back["inputs"] == [{"name": "images", "dtype": "uint8", "shape": [-1, 3, 32, 48], "min": [1, 3, 32, 48],
                               "opt": [1, 3, 32, 48], "max": [4, 3, 32, 48]}]
    assert back["outputs"] == [{"name": "out", "dtype": "float32", "shape": [-1, 3, 32, 48]}]
    assert back["build"]["workspace_bytes"] == 2**30 and back["build"]["builder_flags"] == ["FP16"]
    assert back["build"]["profiles"] == [{"images": [[1, 3, 32, 48], [1, 3, 32, 48], [4, 3, 32, 48]]}]
    assert back["plugin_library"] is None
    assert trt_sidecar.sidecar_specs(back["inputs"]) == {"images": ("uint8", (None, 3, 32, 48))}
    trt_sidecar.check_engine_file(str(engine), back)  # the file is the one described


def test_read_sidecar_refusals(tmp_path):
    engine = str(tmp_path / "m.engine")
    assert trt_sidecar.read_sidecar(engine) is None
    side = tmp_path / "m.engine.json"
    side.write_text("{not json")
    with pytest.raises(MaskrtError, match="cannot read the engine sidecar"):
        trt_sidecar.read_sidecar(engine)
    side.write_text(json.dumps({"schema": "something.else"}))
    with pytest.raises(MaskrtError, match="not a maskrt engine sidecar"):
        trt_sidecar.read_sidecar(engine)
    side.write_text(json.dumps({"schema": trt_sidecar.SIDECAR_SCHEMA, "schema_version": 99}))
    with pytest.raises(MaskrtError, match="newer than this maskrt"):
        trt_sidecar.read_sidecar(engine)
    side.write_text(json.dumps({"schema": trt_sidecar.SIDECAR_SCHEMA, "schema_version": 1, "engine": {}}))
    with pytest.raises(MaskrtError, match="lacks 'tensorrt'"):
        trt_sidecar.read_sidecar(engine)


# -- compatibility -------------------------------------------------------------------------------------------------
SIDE = {"tensorrt": {"version": "10.16.0.72"}, "gpu": dict(H100), "onnx": {"file": "model.onnx"}}


def test_compatible_engine():
    assert trt_sidecar.compatibility_problems(SIDE, "10.16.0.72", H100) == []
    assert trt_sidecar.compatibility_problems(SIDE, "10.16.0.99", H100) == []  # same release, another build number


@pytest.mark.parametrize("version", ["10.15.1.29", "11.1.0.106", "10.16.1.2"])
def test_another_tensorrt_version_is_refused(version):
    problems = trt_sidecar.compatibility_problems(SIDE, version, H100)
    assert problems == [f"it was built with TensorRT 10.16.0.72 and this is TensorRT {version}"]


def test_another_gpu_is_refused():
    a100 = {"name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}
    problems = trt_sidecar.compatibility_problems(SIDE, "10.16.0.72", a100)
    assert len(problems) == 1 and "compute capability 9.0" in problems[0] and "compute capability 8.0" in problems[0]
    h100_pcie = {"name": "NVIDIA H100 PCIe", "compute_capability": "9.0"}
    assert "same compute capability" in trt_sidecar.compatibility_problems(SIDE, "10.16.0.72", h100_pcie)[0]
    assert trt_sidecar.compatibility_problems(SIDE, "10.16.0.72", h100_pcie, check_gpu_name=False) == []


def test_check_compatible_says_one_line_and_how_to_rebuild():
    with pytest.raises(MaskrtError) as e:
        trt_sidecar.check_compatible("out/model.engine", SIDE, "11.1.0", {"name": "NVIDIA L4", "compute_capability": "8.9"})
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("out/model.engine cannot run here: it was built with TensorRT 10.16.0.72 and this is TensorRT 11.1.0")
    assert "NVIDIA L4" in msg and msg.endswith("`maskrt build model.onnx -o model.engine`")


def test_engine_file_checks(tmp_path):
    path = fake_engine(tmp_path / "m.engine", data=b"x" * 100)
    side = trt_sidecar.read_sidecar(path)
    trt_sidecar.check_engine_file(path, side)
    with open(path, "wb") as f:
        f.write(b"x" * 60)
    with pytest.raises(MaskrtError, match="is truncated: 60 bytes, its sidecar says 100"):
        trt_sidecar.check_engine_file(path, side)
    with open(path, "wb") as f:
        f.write(b"y" * 100)
    with pytest.raises(MaskrtError, match="sha256 differs"):
        trt_sidecar.check_engine_file(path, side)
    trt_sidecar.check_engine_file(path, side, sha256=False)


def test_missing_sidecar_message_says_what_cannot_be_checked():
    msg = trt_sidecar.missing_sidecar_message("m.engine")
    assert "m.engine.json" in msg and "TensorRT version and GPU" in msg and "cannot be checked" in msg
    assert "metadata" in msg


# -- writing -------------------------------------------------------------------------------------------------------
def test_write_atomic(tmp_path):
    target = tmp_path / "a.engine"
    atomic_write(str(target), b"one")
    atomic_write(str(target), b"two")
    assert target.read_bytes() == b"two" and os.listdir(tmp_path) == ["a.engine"]
    with pytest.raises(MaskrtError, match="does not exist"):
        atomic_write(str(tmp_path / "no" / "a.engine"), b"x")


def test_write_atomic_leaves_nothing_on_failure(tmp_path, monkeypatch):
    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(MaskrtError, match="No space left"):
        atomic_write(str(tmp_path / "a.engine"), b"x" * 10)
    assert os.listdir(tmp_path) == []


# -- without TensorRT ----------------------------------------------------------------------------------------------
@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError, as on this machine


def test_import_tensorrt_missing_is_one_line(no_tensorrt):
    from maskrt.backends.trt import api as engine_trt

    with pytest.raises(MaskrtError) as e:
        engine_trt.import_tensorrt()
    assert str(e.value) == trt_plan.TENSORRT_MISSING
    assert "pip install maskrt[gpu]" in str(e.value) and "\n" not in str(e.value)


def test_build_engine_without_tensorrt_leaves_no_file(tmp_path, no_tensorrt):
    onnx = tiny_onnx(tmp_path / "m.onnx")
    out = tmp_path / "m.engine"
    with pytest.raises(MaskrtError, match=r"pip install maskrt\[gpu\]"):
        trt_build.build_engine(onnx, str(out))
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_build_engine_checks_before_tensorrt(tmp_path, no_tensorrt):
    onnx = tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(MaskrtError, match="larger than --max-batch"):
        trt_build.build_engine(onnx, str(tmp_path / "m.engine"), trt_plan.BuildOptions(min_batch=8, max_batch=2))
    with pytest.raises(MaskrtError, match="model not found"):
        trt_build.build_engine(str(tmp_path / "none.onnx"), str(tmp_path / "m.engine"))
    with pytest.raises(MaskrtError, match="folder .* does not exist"):
        trt_build.build_engine(onnx, str(tmp_path / "nowhere" / "m.engine"))
    with pytest.raises(MaskrtError, match="is one of the inputs"):
        trt_build.build_engine(onnx, onnx)
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


# -- the thin layer's control flow, with a stand-in module (this does not verify TensorRT) ------------------------------
def _fake_trt(version):
    flags = types.SimpleNamespace(STRONGLY_TYPED=0)
    return types.SimpleNamespace(__version__=version, NetworkDefinitionCreationFlag=flags,
                                 BuilderFlag=types.SimpleNamespace(FP16="fp16-flag"))


def test_gated_function_refuses_other_majors():
    from maskrt.backends.trt import api as engine_trt

    calls = []
    config = types.SimpleNamespace(set_flag=calls.append)
    engine_trt._set_fp16_builder_flag(_fake_trt("10.16.0.72"), config)
    assert calls == ["fp16-flag"]
    with pytest.raises(InternalError, match="runs on TensorRT"):
        engine_trt._set_fp16_builder_flag(_fake_trt("11.1.0"), config)


def test_network_flags_follow_the_plan():
    from maskrt.backends.trt import api as engine_trt

    strongly = trt_plan.plan_build(trt_plan.OnnxInfo("m.onnx", {"images": {"dtype": "uint8", "shape": [1, 3, 8, 8]}}, {},
                                       precision="fp16"), trt_plan.BuildOptions(), "10.16.0")
    weak = trt_plan.plan_build(trt_plan.OnnxInfo("m.onnx", {"images": {"dtype": "uint8", "shape": [1, 3, 8, 8]}}, {}),
                        trt_plan.BuildOptions(), "10.16.0")
    assert engine_trt._network_flags(_fake_trt("10.16.0"), strongly) == 1
    assert engine_trt._network_flags(_fake_trt("10.16.0"), weak) == 0


def test_nothing_imports_tensorrt_at_import_time():
    import subprocess

    code = ("import sys\n"
            "class Refuse:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'tensorrt':\n"
            "            raise SystemExit('tensorrt was imported')\n"
            "sys.meta_path.insert(0, Refuse())\n"
            "import maskrt.backends.trt.plan, maskrt.backends.trt.build, maskrt.backends.trt.api, maskrt.backends.trt.runner, maskrt.cli.app\n"
            "from maskrt.backends import TrtRunner\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok" and out.returncode == 0, out.stderr
