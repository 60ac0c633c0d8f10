"""maskrt check: one crafted graph per rule fails with that rule's message; a clean graph passes."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from maskrt.check import check_model, parse_versions
from maskrt.core.errors import MaskrtError
from maskrt.plugins import spec

F, F16, U8, I64, I32 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.UINT8, TensorProto.INT64, TensorProto.INT32


def model(nodes, inputs, outputs, initializers=(), opset=17, props=None, extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])
    m.ir_version = 8
    for k, v in (props or {}).items():
        m.metadata_props.add(key=k, value=v)
    return m


def vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def findings(m, rule=None, severity=None, **kw):
    report = check_model(m, **kw)
    return [f for f in report.findings if (rule is None or f.rule == rule) and (severity is None or f.severity == severity)]


def clean():
    """uint8 input -> Cast -> Relu: nothing to say."""
    return model([helper.make_node("Cast", ["x"], ["f"], to=F), helper.make_node("Relu", ["f"], ["y"])],
                 [vi("x", U8, [1, 3, 8, 8])], [vi("y", F, [1, 3, 8, 8])])


def test_a_clean_graph_passes():
    report = check_model(clean())
    assert report.ok and report.findings == [] and report.versions == ["10.16", "11.1"]
    assert "0 error(s), 0 warning(s)" in report.summary()


def test_versions():
    assert parse_versions("10") == [(10, "10.16")] and parse_versions("11.1") == [(11, "11.1")]
    with pytest.raises(MaskrtError, match="--tensorrt must be one of"):
        parse_versions("9")
    with pytest.raises(MaskrtError, match="--max-batch"):
        check_model(clean(), max_batch=0)


def test_opset():
    m = clean()
    m.opset_import[0].version = 8
    assert any("opsets 9 to 24" in f.message for f in findings(m, "opset", "error"))


def test_unsupported_and_unknown_operators():
    m = model([helper.make_node("Unique", ["x"], ["y"])], [vi("x", F, [4])], [vi("y", F, [None])])
    assert any("Unique is not supported" in f.message for f in findings(m, "operator", "error"))
    m = model([helper.make_node("Frobnicate", ["x"], ["y"], domain="acme")], [vi("x", F, [4])], [vi("y", F, [4])],
              extra_opsets=[helper.make_opsetid("acme", 1)])
    hits = findings(m, "operator", "warning")
    assert hits and "plugin creator named 'Frobnicate'" in hits[0].message
    # Swish is imported by 11.1 only
    m = model([helper.make_node("Swish", ["x"], ["y"])], [vi("x", F, [4])], [vi("y", F, [4])], opset=24)
    assert [f.versions for f in findings(m, "operator", "error")] == [("10.16",)]


def test_operator_types():
    m = model([helper.make_node("Sqrt", ["x"], ["y"])], [vi("x", TensorProto.INT32, [4])], [vi("y", TensorProto.INT32, [4])])
    assert any("Sqrt does not take INT32" in f.message for f in findings(m, "operator-type", "error"))
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", TensorProto.DOUBLE, [4])], [vi("y", TensorProto.DOUBLE, [4])])
    assert any("DOUBLE" in f.message for f in findings(m, "operator-type", "warning"))


def test_uint8_rules():
    m = model([helper.make_node("Cast", ["x"], ["f"], to=I32), helper.make_node("Relu", ["f"], ["y"])],
              [vi("x", U8, [4])], [vi("y", I32, [4])])
    assert any("converts uint8 network inputs only to FLOAT or HALF" in f.message for f in findings(m, "uint8"))
    m = model([helper.make_node("Cast", ["x"], ["u"], to=U8), helper.make_node("Cast", ["u"], ["y"], to=F)],
              [vi("x", F, [4])], [vi("y", F, [4])])
    assert any("uint8 intermediate tensor" in f.message for f in findings(m, "uint8", "error"))


def test_int64_io_is_noted():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", I64, [4])], [vi("y", I64, [4])])
    assert {f.node for f in findings(m, "int64-io", "info")} == {"x", "y"}


def _topk_model(batch_dim, per_image):
    """(B, N) scores -> flatten to (B*N,) -> TopK over all of them (K = B*N from the shape)."""
    nodes = [helper.make_node("Reshape", ["s", "flat"], ["v"]),
             helper.make_node("Shape", ["v"], ["n"]),
             helper.make_node("TopK", ["v", "n"], ["values", "idx"], axis=0, largest=1, sorted=1)]
    return model(nodes, [vi("s", F, [batch_dim, per_image])], [vi("values", F, [None]), vi("idx", I64, [None])],
                 [const("flat", np.array([-1], np.int64))])


def test_topk_limit_is_evaluated_at_the_largest_batch():
    m = _topk_model("batch", 1000)
    assert not findings(m, "topk-k", "error", max_batch=3)
    errors = findings(m, "topk-k", "error", max_batch=4)
    assert errors and "K = 4000 at batch 4" in errors[0].message
    assert any("K = 3840" in f.message for f in findings(_topk_model("batch", 960), "topk-k", "warning", max_batch=4))


def test_topk_attributes():
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=0, sorted=0)]
    m = model(nodes, [vi("x", F, [2, 3, 4, 5, 6])], [vi("v", F, [1, 3, 4, 5, 6]), vi("i", I64, [1, 3, 4, 5, 6])],
              [const("k", np.array([1], np.int64))])
    messages = [f.message for f in findings(m, "topk-attributes", "error")]
    assert any("sorted=0" in t for t in messages) and any("last four axes" in t for t in messages)


def _nms_model(boxes, classes, cap):
    nodes = [helper.make_node("NonMaxSuppression", ["b", "s", "cap", "iou", "thr"], ["sel"], center_point_box=0)]
    inits = [const("iou", np.array([0.5], np.float32)), const("thr", np.array([0.0], np.float32))]
    inputs = [vi("b", F, ["batch", boxes, 4]), vi("s", F, ["batch", classes, boxes])]
    if cap is None:
        inputs.append(vi("cap", I64, [1]))
    else:
        inits.append(const("cap", np.array([cap], np.int64)))
    return model(nodes, inputs, [vi("sel", I64, [None, 3])], inits)


def test_nms_output_bound_and_candidate_limit():
    hits = findings(_nms_model(90000, 91, 2**31 - 1), "nms", "warning")
    assert any("8,190,000 rows per image" in f.message for f in hits)
    assert any("only the 5000 highest-scoring" in f.message for f in hits)
    assert not findings(_nms_model(4000, 91, 100), "nms", "warning")
    assert any("computed at run time" in f.message for f in findings(_nms_model(100, 2, None), "nms", "warning"))


def _roialign_model(x_type=F, rois_type=F, **attrs):
    node = helper.make_node("RoiAlign", ["x", "rois", "bi"], ["y"], output_height=7, output_width=7, **attrs)
    return model([node], [vi("x", x_type, [1, 4, 16, 16]), vi("rois", rois_type, [3, 4]), vi("bi", I64, [3])],
                 [vi("y", x_type, [3, 4, 7, 7])])


def test_roialign_rules():
    ok = _roialign_model(sampling_ratio=2, coordinate_transformation_mode="output_half_pixel")
    assert not findings(ok, "roialign", "error")
    assert any("ROIAlign_TRT" in f.message and "init_libnvinfer_plugins" in f.message for f in findings(ok, "roialign", "info"))
    assert any("sampling_ratio is not written" in f.message for f in findings(_roialign_model(), "roialign", "error"))
    mixed = _roialign_model(F16, F, sampling_ratio=2)
    assert any("rois of the features' type" in f.message for f in findings(mixed, "roialign", "error"))


def _plugin_model(rois_type=F, **overrides):
    attrs = dict(plugin_version=spec.PLUGIN_VERSION, plugin_namespace=spec.PLUGIN_NAMESPACE, output_height=7,
                 output_width=7, sampling_ratio=2, aligned=0, mode="avg", canonical_scale=224, canonical_level=4,
                 scales=[0.25, 0.125])
    attrs.update(overrides)
    attrs = {k: v for k, v in attrs.items() if v is not None}
    node = helper.make_node(spec.PLUGIN_NAME, ["rois", "p2", "p3"], ["y"], domain=spec.ONNX_DOMAIN, **attrs)
    return model([node], [vi("rois", rois_type, [5, 5]), vi("p2", F, [1, 8, 32, 32]), vi("p3", F, [1, 8, 16, 16])],
                 [vi("y", F, [5, 8, 7, 7])], extra_opsets=[helper.make_opsetid(spec.ONNX_DOMAIN, 1)])


def test_maskrt_plugin_nodes():
    assert not findings(_plugin_model(), "maskrt-plugin", "error")
    assert not findings(_plugin_model(), "operator")  # not an unknown operator
    assert any("plugin_version '2'" in f.message for f in findings(_plugin_model(plugin_version="2"), "maskrt-plugin"))
    assert any("field 'mode' is missing" in f.message for f in findings(_plugin_model(mode=None), "maskrt-plugin"))
    assert any("not an INT attribute" in f.message for f in findings(_plugin_model(aligned=0.0), "maskrt-plugin"))
    assert any("1 scales for 2 feature maps" in f.message for f in findings(_plugin_model(scales=[0.25]), "maskrt-plugin"))
    assert any("FP32 rois" in f.message for f in findings(_plugin_model(rois_type=F16), "maskrt-plugin", "error"))


def test_inputs_the_parser_needs_constant():
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)]
    m = model(nodes, [vi("x", F, [2, 3]), vi("axes", I64, [1])], [vi("y", F, [None, None])])
    assert any("needs a constant" in f.message for f in findings(m, "constant-inputs", "error"))


def test_attribute_restrictions():
    m = model([helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="cubic", antialias=1,
                                coordinate_transformation_mode="half_pixel_symmetric")],
              [vi("x", F, [1, 1, 4, 4])], [vi("y", F, [1, 1, 8, 8])], [const("sc", np.array([1, 1, 2, 2], np.float32))],
              opset=18)
    messages = [f.message for f in findings(m, "attributes", "error")]
    assert any("antialias" in t for t in messages) and any("half_pixel_symmetric" in t for t in messages)
    m = model([helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2])], [vi("x", F, [1, 1, 4, 4])],
              [vi("y", F, [1, 1, 3, 3]), vi("i", I64, [1, 1, 3, 3])])
    assert any("Indices output" in f.message for f in findings(m, "attributes", "error"))


def test_data_dependent_shapes_are_noted():
    assert findings(_nms_model(100, 2, 10), "data-dependent", "info")


def test_strong_typing_needs_casts():
    m = model([helper.make_node("Add", ["a", "b"], ["y"])], [vi("a", F, [4]), vi("b", F16, [4])], [vi("y", F, [4])])
    errors = findings(m, "strong-typing", "error")
    assert errors and errors[0].versions == ("11.1",)  # 10.x builds an fp32 graph weakly typed
    assert findings(m, "strong-typing", "error", tensorrt="10", strongly_typed=True)


def _qdq_model(zero_point, per_channel_activation=False, weights_quantized=True):
    w = np.ones((4, 3, 3, 3), np.float32)
    inits = [const("w", w), const("s", np.array(0.1, np.float32)), const("zp", np.array(zero_point)),
             const("ws", np.full((4,), 0.01, np.float32)), const("wzp", np.zeros((4,), np.int8))]
    if per_channel_activation:
        inits[1] = const("s", np.full((3,), 0.1, np.float32))
        inits[2] = const("zp", np.zeros((3,), np.asarray(zero_point).dtype))
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], axis=1),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], axis=1)]
    if weights_quantized:
        nodes += [helper.make_node("QuantizeLinear", ["w", "ws", "wzp"], ["wq"], axis=0),
                  helper.make_node("DequantizeLinear", ["wq", "ws", "wzp"], ["wd"], axis=0),
                  helper.make_node("Conv", ["xd", "wd"], ["y"])]
    else:
        nodes.append(helper.make_node("Conv", ["xd", "w"], ["y"]))
    return model(nodes, [vi("x", F, [1, 3, 8, 8])], [vi("y", F, [1, 4, 6, 6])], inits)


def test_qdq_rules():
    assert not findings(_qdq_model(np.int8(0)), "qdq", "error")
    assert any("asymmetric" in f.message for f in findings(_qdq_model(np.uint8(128)), "qdq", "error"))
    assert any("not zero" in f.message for f in findings(_qdq_model(np.int8(3)), "qdq", "error"))
    assert any("per-channel" in f.message for f in findings(_qdq_model(np.int8(0), per_channel_activation=True), "qdq"))
    assert any("Q/DQ on one input only" in f.message
               for f in findings(_qdq_model(np.int8(0), weights_quantized=False), "qdq-placement", "warning"))


def _weights_model(axis, scales=4, stored=np.int8):
    """x -> Q/DQ -> Conv with int8 weights (4 output channels) behind a DequantizeLinear along ``axis``."""
    inits = [const("wq", np.ones((4, 3, 3, 3), stored)), const("ws", np.full((scales,), 0.01, np.float32)),
             const("s", np.array(0.1, np.float32)), const("zp", np.array(0, np.int8))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws"], ["wd"], axis=axis),
             helper.make_node("Conv", ["xd", "wd"], ["y"])]
    return model(nodes, [vi("x", F, [1, 3, 8, 8])], [vi("y", F, [1, 4, 6, 6])], inits)


def test_qdq_weight_rules():
    assert not findings(_weights_model(0), "qdq-weights")
    wrong = findings(_weights_model(1, scales=3), "qdq-weights", "error")
    assert wrong and "along axis 1" in wrong[0].message and "output-channel axis (0)" in wrong[0].message
    assert any("3 weight scales for 4" in f.message for f in findings(_weights_model(0, scales=3), "qdq-weights"))
    assert any("stored UINT8" in f.message for f in findings(_weights_model(0, stored=np.uint8), "qdq-weights"))


def test_dynamic_dimensions_need_profiles():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, ["batch", 3, "h", 8])], [vi("y", F, ["batch", 3, "h", 8])])
    assert any("no size was given" in f.message for f in findings(m, "dynamic-dims", "warning"))
    assert findings(m, "dynamic-dims", "info", sizes={"h": 64})


def test_every_rule_cites_a_source():
    from maskrt.check.rules import RULES

    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids)) >= 15
    for r in RULES:
        assert r.title and len(r.source) > 20, r.id


def test_control_flow():
    body = helper.make_graph([helper.make_node("Identity", ["c_in"], ["c_out"])], "body",
                             [vi("i", I64, []), vi("cond", TensorProto.BOOL, []), vi("c_in", F, [2])],
                             [vi("cond_out", TensorProto.BOOL, []), vi("c_out", F, [2])])
    body.node.insert(0, helper.make_node("Identity", ["cond"], ["cond_out"]))
    loop = helper.make_node("Loop", ["n", "", "x"], ["y"], body=body)
    m = model([loop], [vi("x", F, [2])], [vi("y", F, [2])], [const("n", np.array(3, np.int64))])
    assert [f.rule for f in findings(m, "control-flow", "warning")] == ["control-flow"]
    assert not findings(clean(), "control-flow")


def test_every_rule_is_tested_here_and_documented():
    import pathlib

    from maskrt.check.rules import RULES

    here = pathlib.Path(__file__).read_text()
    doc = (pathlib.Path(__file__).parents[2] / "docs" / "check.md").read_text()
    assert [r.id for r in RULES if f'"{r.id}"' not in here] == []
    assert [r.id for r in RULES if f"`{r.id}`" not in doc] == []
