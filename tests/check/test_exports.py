"""Every graph maskrt exports passes ``maskrt check`` at batch 8 (no errors), for 10.16 and 11.1; ``maskrt build``
refuses a graph with errors before it imports TensorRT."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from maskrt.check import check_model
from maskrt.export.fp16 import convert_to_fp16
from maskrt.export.onnx_export import export_model_proto
from maskrt.model import build
from maskrt.model.presets import list_presets

SMALL = dict(min_size=96, max_size=128)


def _exported(name, **kw):
    torch.manual_seed(0)
    model = build(name, **SMALL).eval()
    return export_model_proto(model, input_size=(96, 128), **kw)


@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_passes_at_batch_8(preset):
    # dynamic batch: the limits that depend on the batch (TopK K, NMS bounds) are evaluated at 8
    proto = _exported(preset, dynamic_batch=True)
    report = check_model(proto, max_batch=8)
    assert report.ok, [f.to_dict() for f in report.errors]
    assert report.versions == ["10.16", "11.1"]
    # the portable graph has no TopK whose K grows with the batch: even batch 32 passes
    assert not [f for f in check_model(proto, max_batch=32).findings if f.rule == "topk-k"]


@pytest.fixture(scope="module")
def shapes_graphs():
    torch.manual_seed(0)
    model = build("shapes", **SMALL).eval()
    fixed = export_model_proto(model, input_size=(96, 128), batch=2)
    trt_dynamic = export_model_proto(model, input_size=(96, 128), dynamic_batch=True, target="tensorrt")
    any_size = export_model_proto(model, input_size=(96, 128), dynamic_batch=True, dynamic_size=True)
    trt_any_size = export_model_proto(model, input_size=(96, 128), dynamic_batch=True, dynamic_size=True,
                                      target="tensorrt")
    return {"fixed fp32": fixed, "fixed fp16": convert_to_fp16(fixed), "tensorrt-target dynamic": trt_dynamic,
            "tensorrt-target fp16": convert_to_fp16(trt_dynamic), "dynamic size": any_size,
            "dynamic size fp16": convert_to_fp16(any_size), "tensorrt-target dynamic size": trt_any_size}


@pytest.mark.parametrize("variant", ["fixed fp32", "fixed fp16", "tensorrt-target dynamic", "tensorrt-target fp16",
                                     "dynamic size", "dynamic size fp16", "tensorrt-target dynamic size"])
def test_every_export_variant_passes(shapes_graphs, variant):
    report = check_model(shapes_graphs[variant], max_batch=8)
    assert report.ok, [f.to_dict() for f in report.errors]
    rules = {f.rule for f in report.findings}
    assert "data-dependent" in rules  # NMS is there, and said to be
    if "tensorrt" in variant:
        assert "maskrt-plugin" in rules and "roialign" not in rules
    else:
        assert "roialign" in rules
    if "dynamic size" in variant:  # height and width are named and bounded by the export's metadata
        dims = [f for f in report.findings if f.rule == "dynamic-dims" and f.node == "images"]
        assert dims and dims[0].severity == "info" and "height" in dims[0].message and "width" in dims[0].message


def test_the_old_level_sort_would_have_failed():
    """The portable graph used to sort all RoIs of the batch with one TopK: K = batch x 1000 for the COCO presets.
    The same check on such a TopK fails at batch 4, so the passing exports above are a real result."""
    nodes = [helper.make_node("TopK", ["keys", "k"], ["v", "order"], axis=0, largest=0, sorted=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("keys", TensorProto.FLOAT, ["rois"])],
                              [helper.make_tensor_value_info("order", TensorProto.INT64, ["rois"])],
                              [numpy_helper.from_array(np.array([4000], np.int64), "k")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    report = check_model(m, max_batch=4)
    assert [f.rule for f in report.errors] == ["topk-k"]


def test_build_refuses_a_graph_with_errors_before_importing_tensorrt(tmp_path, monkeypatch):
    from maskrt.backends.trt.build import build_engine
    from maskrt.backends.trt.plan import CheckFailed

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # importing it would fail: it must not be reached
    nodes = [helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Reshape", ["f", "flat"], ["v"]),
             helper.make_node("Shape", ["v"], ["n"]),
             helper.make_node("TopK", ["v", "n"], ["values", "idx"], axis=0)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", 3, 32, 48])],
                              [helper.make_tensor_value_info("values", TensorProto.FLOAT, [None])],
                              [numpy_helper.from_array(np.array([-1], np.int64), "flat")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    with pytest.raises(CheckFailed) as e:
        build_engine(str(path), str(tmp_path / "m.engine"))
    assert "TensorRT would refuse this graph" in str(e.value)
    assert any("[topk-k]" in line and "K = 36864 at batch 8" in line for line in e.value.lines)
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]
