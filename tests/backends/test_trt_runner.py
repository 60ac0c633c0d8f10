"""TrtRunner and the runtime's TensorRT wiring, up to where TensorRT itself is needed (no TensorRT, no GPU here)."""

from __future__ import annotations

import sys

import pytest
import torch

from maskrt.backends.select import RunnerSpec
from maskrt.backends.trt.plan import TENSORRT_MISSING
from maskrt.backends.trt.runner import TrtRunner, layer_rows
from maskrt.core.errors import MaskrtError
from maskrt.profiling.report import FIGURES, Figure, LatencyReport, Run
from tests.backends.engine_fixtures import fake_engine, tiny_onnx


def test_runner_reads_its_sidecar(tmp_path):
    path = fake_engine(tmp_path / "m.engine")
    r = TrtRunner(path)
    assert r.backend == "tensorrt" and r.device == "cuda" and r.name == "tensorrt:m.engine"
    specs = r.input_specs()
    assert specs["images"].dtype == "uint8" and specs["images"].shape == (None, 3, 32, 48)
    assert r.batch is None
    assert set(r.output_specs()) == {"num_detections", "boxes"}
    assert r.meta.input_size == (32, 48) and r.meta.class_names == ("__background__", "x") and r.meta.batch is None
    assert r.plugin_library is None and not r.is_active
    fixed = TrtRunner(fake_engine(tmp_path / "f.engine", batch=2))
    assert fixed.batch == 2


def test_runner_refuses_bad_engines(tmp_path):
    with pytest.raises(MaskrtError, match="engine not found"):
        TrtRunner(tmp_path / "none.engine")
    path = fake_engine(tmp_path / "m.engine", data=b"z" * 50)
    with open(path, "wb") as f:
        f.write(b"z" * 20)
    with pytest.raises(MaskrtError, match="truncated"):
        TrtRunner(path)
    with pytest.raises(MaskrtError, match="CUDA device"):
        TrtRunner(fake_engine(tmp_path / "c.engine"), device="cpu")


def test_engine_without_sidecar(tmp_path):
    path = tmp_path / "bare.engine"
    path.write_bytes(b"abc")
    with pytest.raises(MaskrtError) as e:
        TrtRunner(path)
    msg = str(e.value)
    assert "\n" not in msg and "no sidecar" in msg and "cannot be checked" in msg and "maskrt build" in msg
    r = TrtRunner(path, require_metadata=False)
    assert r.meta is None and any("cannot be checked" in n for n in r.notes)
    with pytest.raises(MaskrtError, match="once the runner is active"):
        r.input_specs()


def test_sidecar_plugin_library(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MASKRT_PLUGIN_PATH", str(tmp_path / "plugins"))
    lib = tmp_path / "libmaskrt_trt_plugins.so"
    lib.write_bytes(b"x")
    assert TrtRunner(fake_engine(tmp_path / "a.engine", plugin_library=str(lib))).plugin_library == str(lib)
    with pytest.raises(MaskrtError, match="needs the maskrt plugin library.*maskrt plugins build"):
        TrtRunner(fake_engine(tmp_path / "b.engine", plugin_library="/gone/libmaskrt_trt_plugins.so"))
    (tmp_path / "plugins").mkdir()
    found = tmp_path / "plugins" / "libmaskrt_trt_plugins.so"
    found.write_bytes(b"x")
    r = TrtRunner(fake_engine(tmp_path / "c.engine", plugin_library="/gone/libmaskrt_trt_plugins.so"))
    assert r.plugin_library == str(found) and any("is gone" in n for n in r.notes)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_activate_without_cuda_is_one_line(tmp_path):
    r = TrtRunner(fake_engine(tmp_path / "m.engine"))
    with pytest.raises(MaskrtError) as e:
        r.activate()
    assert "\n" not in str(e.value) and "CUDA device" in str(e.value)
    assert not r.is_active


def test_layer_rows():
    rows = layer_rows({"conv1": [1.0, 3.0], "relu": [0.5, 0.5], "empty": [], "nms": [4.0, 4.0]})
    assert [r["name"] for r in rows] == ["nms", "conv1", "relu"]
    assert rows[0]["mean_ms"] == 4.0 and rows[1]["mean_ms"] == 2.0 and rows[2]["runs"] == 2
    assert [round(r["percent"], 3) for r in rows] == [61.538, 30.769, 7.692]
    assert layer_rows({}) == []


# -- RunnerSpec, profiling, reports --------------------------------------------------------------------------------
def test_runner_spec_picks_tensorrt_for_engines(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    path = fake_engine(tmp_path / "m.engine")
    spec = RunnerSpec(path)
    assert spec.resolved_backend() == "tensorrt" and spec.kind == "engine" and spec.name() == "m.engine [tensorrt]"
    with pytest.raises(MaskrtError) as e:
        spec.check()
    assert str(e.value) == TENSORRT_MISSING
    with pytest.raises(MaskrtError, match="use --backend tensorrt"):
        RunnerSpec(path, backend="onnxruntime").check()
    onnx = tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(MaskrtError, match="needs an engine"):
        RunnerSpec(onnx, backend="tensorrt").check()
    with pytest.raises(MaskrtError, match="unknown backend"):
        RunnerSpec(onnx, backend="tvm").check()


def test_runner_spec_onnxruntime_trt_needs_the_provider(tmp_path):
    import onnxruntime

    onnx = tiny_onnx(tmp_path / "m.onnx")
    spec = RunnerSpec(onnx, backend="onnxruntime-trt")
    if "TensorrtExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the TensorRT provider")
    with pytest.raises(MaskrtError, match="TensorRT provider"):
        spec.check()


def test_ort_trt_options():
    from maskrt.backends.onnxrt.runner import ORT_TRT_OPTION_NAMES, ort_trt_provider_options

    plain = ort_trt_provider_options()
    assert plain == {"trt_fp16_enable": "False"}
    assert set(plain) <= set(ORT_TRT_OPTION_NAMES)


def test_ort_runner_places_trt_options(tmp_path):
    from maskrt.backends.onnxrt.runner import ORT_TRT_OPTION_NAMES, OrtRunner, ort_trt_provider_options

    opts = ort_trt_provider_options(fp16=True, cache_dir=str(tmp_path / "cache"), workspace_bytes=2**30)
    assert set(opts) <= set(ORT_TRT_OPTION_NAMES)
    assert opts["trt_fp16_enable"] == "True" and opts["trt_engine_cache_enable"] == "True"
    assert opts["trt_engine_cache_path"] == str(tmp_path / "cache") == opts["trt_timing_cache_path"]
    assert (tmp_path / "cache").is_dir() and opts["trt_max_workspace_size"] == str(2**30)
    r = OrtRunner(tiny_onnx(tmp_path / "m.onnx"), trt_options=opts)
    assert r.requested_providers == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert r.provider_options == [opts, {}, {}]
    with pytest.raises(MaskrtError, match="TensorrtExecutionProvider"):
        OrtRunner(tiny_onnx(tmp_path / "n.onnx"), providers=["CPUExecutionProvider"], trt_options=opts)


def _report_with_layers() -> LatencyReport:
    layers = layer_rows({f"layer{i}": [float(i + 1)] * 3 for i in range(30)})
    run = Run(label="m.engine [tensorrt]", backend="tensorrt", device="cuda", precision="fp16", batch=1,
              figures={"model": Figure(FIGURES["model"], [1.0, 1.1, 0.9])}, layers=layers)
    return LatencyReport(kind="profile", runs=[run])


def test_layers_survive_the_json_report():
    report = _report_with_layers()
    back = LatencyReport.from_dict(report.to_dict())
    assert back.runs[0].layers == report.runs[0].layers
    old = report.to_dict()
    del old["runs"][0]["layers"]  # a report written before the field existed
    assert LatencyReport.from_dict(old).runs[0].layers == []


def test_layer_table_in_reports():
    from maskrt.profiling import render as reports
    from maskrt.profiling.render import tables

    report = _report_with_layers()
    (title, header, rows), = tables.layer_tables(report, top=5)
    assert header == ["#", "layer", "mean ms", "% of total"] and "3 runs" in title
    assert [r[1] for r in rows[:5]] == ["layer29", "layer28", "layer27", "layer26", "layer25"]
    assert rows[5][1] == "(25 other layers)" and rows[-1][1] == "total (sum of layer means)"
    assert abs(sum(float(r[3]) for r in rows[:-1]) - 100.0) < 0.2
    md = reports.to_markdown(report)
    assert "per-layer time" in md and "| 1 | layer29 |" in md
    assert "per-layer time" in reports.to_html(report)
    from rich.console import Console

    console = Console(record=True, width=200)
    reports.print_report(report, console)
    assert "layer29" in console.export_text()
