"""``maskrt build`` on bad input and without TensorRT, engines in predict/profile, and ``maskrt env``."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
from click.testing import CliRunner

from maskrt.cli.app import cli
from tests.backends.engine_fixtures import fake_engine, tiny_onnx
from tests.cli.test_cli import run

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def _one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.skipif(HAS_TRT, reason="checks the message where TensorRT is missing")
def test_build_without_tensorrt_is_one_line_and_writes_nothing(tmp_path):
    onnx = tiny_onnx(tmp_path / "m.onnx")
    line = _one_error_line(run("build", onnx, "-o", str(tmp_path / "m.engine")))
    assert "TensorRT is not installed: pip install maskrt[gpu]" in line
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


@pytest.mark.parametrize("make, args, fragment", [
    (None, [], "model not found"),
    ("corrupt", [], "not a readable ONNX model"),
    ("ok", ["--workspace", "4X"], "--workspace must be bytes"),
    ("ok", ["--workspace", "0"], "more than 0 bytes"),
    ("ok", ["--min-batch", "8", "--max-batch", "2"], "--min-batch 8 is larger than --max-batch 2"),
    ("ok", ["--optimization-level", "9"], "--optimization-level must be 0 to 5"),
    ("ok", ["--plugins", "missing.so"], "no such file"),
    ("ok", ["--timing-cache", "nowhere/t.cache"], "does not exist"),
])
def test_build_bad_input(tmp_path, make, args, fragment):
    onnx = tmp_path / "m.onnx"
    if make == "ok":
        tiny_onnx(onnx)
    elif make == "corrupt":
        onnx.write_bytes(b"\x0a\x05junk" * 50)
    args = [a if not a.endswith((".so", ".cache")) else str(tmp_path / a) for a in args]
    r = CliRunner().invoke(cli, ["build", str(onnx), "-o", str(tmp_path / "m.engine"), *args])
    assert r.exit_code == 2, r.output
    assert fragment in r.output and len([x for x in r.output.splitlines() if x.strip()]) == 1, r.output
    assert not (tmp_path / "m.engine").exists() and not (tmp_path / "m.engine.json").exists()
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


def test_build_help_lists_the_options():
    r = CliRunner().invoke(cli, ["build", "--help"])
    assert r.exit_code == 0
    for option in ("--precision", "--workspace", "--min-batch", "--opt-batch", "--max-batch", "--timing-cache",
                   "--optimization-level", "--plugins", "--verbose"):
        assert option in r.output


@pytest.mark.skipif(HAS_TRT, reason="checks the message where TensorRT is missing")
def test_engines_in_profile_predict_bench_without_tensorrt(tmp_path):
    engine = fake_engine(tmp_path / "m.engine")
    line = _one_error_line(run("profile", engine, "--iterations", "1"))
    assert "TensorRT is not installed: pip install maskrt[gpu]" in line
    img = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (48, 32)).save(img)
    r = CliRunner().invoke(cli, ["predict", engine, str(img), "--out", str(tmp_path / "pred")])
    assert r.exit_code == 2 and "TensorRT is not installed" in r.output
    r = CliRunner().invoke(cli, ["bench", engine, "--iterations", "1", "--warmup", "0"])
    assert r.exit_code == 2 and "every row failed" in r.output and "TensorRT is not installed" in r.output


def test_layers_needs_an_engine(tmp_path):
    onnx = tiny_onnx(tmp_path / "m.onnx")
    r = CliRunner().invoke(cli, ["profile", onnx, "--layers", "--iterations", "1"])
    assert r.exit_code == 2
    assert r.output.strip() == "error: --layers needs a TensorRT engine (.engine): the onnxruntime backend has no " \
                               "per-layer profile"


def test_engine_with_a_torch_backend_is_refused(tmp_path):
    engine = fake_engine(tmp_path / "m.engine")
    r = CliRunner().invoke(cli, ["predict", engine, "x.png", "--backend", "onnxruntime"])
    assert r.exit_code == 2 and "--backend tensorrt" in r.output
    r = CliRunner().invoke(cli, ["profile", engine, "--fp16"])
    assert r.exit_code == 2


# -- env -----------------------------------------------------------------------------------------------------------
def test_env_prints_what_is_here():
    r = run("env")
    assert r.returncode == 0, r.stderr
    for key in ("python", "torch", "onnxruntime", "onnxruntime-extensions", "tensorrt", "nvcc",
                "libmaskrt_trt_plugins.so", "commands:"):
        assert key in r.stdout, key
    build = [line for line in r.stdout.splitlines() if line.strip().endswith("build") or " build " in line]
    assert build
    if not HAS_TRT:
        assert "not importable: TensorRT is not installed" in r.stdout
        assert "pip install maskrt[gpu]" in r.stdout


def test_env_json():
    r = CliRunner().invoke(cli, ["env", "--json"])
    assert r.exit_code == 0
    data = json.loads(r.output)
    assert {"python", "torch", "onnxruntime", "onnxruntime_extensions", "tensorrt", "plugins", "nvcc",
            "commands"} <= set(data)
    rows = {row["command"]: row for row in data["commands"]}
    assert {"export", "build", "predict / profile / bench: .engine", "plugins build (host twin)"} <= set(rows)
    assert rows["build"]["ok"] == (data["tensorrt"]["importable"] and data["torch"]["cuda_available"])
    if not HAS_TRT:
        assert data["tensorrt"]["version"] is None and "pip install maskrt[gpu]" in data["tensorrt"]["error"]
        assert "tensorrt" in rows["build"]["reason"] and "pip install maskrt[gpu]" in rows["build"]["install"]


def _report(**over):
    base = {"maskrt": "0", "python": {"version": "3.11", "executable": "python"},
            "torch": {"version": "2.13.0", "cuda": "12.8", "cuda_available": True, "gpus": [
                {"index": 0, "name": "NVIDIA H100", "compute_capability": "9.0", "memory_gb": 80}]},
            "nvidia_driver": "570", "onnx": "1.17", "onnxruntime": {"version": "1.20", "providers": [
                "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]},
            "onnxruntime_extensions": "0.13", "pycocotools": "2.0.8",
            "tensorrt": {"version": "10.16.0.72", "importable": True, "error": None, "package": "10.16.0.72"},
            "plugins": {"search_paths": [], "libraries": {"libmaskrt_trt_plugins.so": "/x/libmaskrt_trt_plugins.so"}},
            "nvcc": {"path": "/usr/local/cuda/bin/nvcc", "version": "12.8"}, "cmake": "/usr/bin/cmake"}
    base.update(over)
    return base


def test_capabilities_on_a_full_gpu_machine():
    from maskrt.inventory import capabilities, report_lines

    rows = capabilities(_report())
    assert all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]
    text = "\n".join(report_lines(_report(), rows))
    assert "tensorrt                10.16.0.72" in text and "install:" not in text


def test_capabilities_name_what_is_missing():
    from maskrt.inventory import capabilities

    cpu = _report(torch={"version": "2.13.0+cpu", "cuda": None, "cuda_available": False, "gpus": []},
                  tensorrt={"version": None, "importable": False, "error": "TensorRT is not installed", "package": None},
                  onnxruntime={"version": "1.31", "providers": ["CPUExecutionProvider"]},
                  plugins={"search_paths": [], "libraries": {"libmaskrt_trt_plugins.so": None}})
    rows = {r["command"]: r for r in capabilities(cpu)}
    assert rows["export"]["ok"] and rows["predict / profile / bench: .onnx"]["ok"]
    assert not rows["build"]["ok"] and rows["build"]["reason"] == "needs tensorrt, a CUDA device"
    assert rows["build"]["install"].startswith("pip install maskrt[gpu]")
    assert not rows["predict / profile / bench: .onnx --device cuda"]["ok"]
    assert "onnxruntime-gpu" in rows["predict / profile / bench: .onnx --device cuda"]["install"]
    assert "plugin library" in rows["build: graph with plugin nodes"]["reason"]
    broken = _report(tensorrt={"version": None, "importable": False, "package": "10.16.0",
                               "error": "tensorrt is installed but cannot be imported (libnvinfer.so.10: missing)"})
    row = {r["command"]: r for r in capabilities(broken)}["build"]
    assert "cannot be imported" in row["install"]
