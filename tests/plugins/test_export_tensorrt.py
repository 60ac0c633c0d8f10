"""``target="tensorrt"`` exports (one plugin node per RoI pooling stage) and the ONNX Runtime bridge that runs them."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from maskrt import MaskrtError
from maskrt.backends.onnxrt import bridge as ort_bridge
from maskrt.export import to_onnx
from maskrt.export.onnx_export import export_model_proto
from maskrt.export.tensorrt_target import plugin_nodes
from maskrt.ops.poolers import multilevel_roi_align
from maskrt.plugins import spec
from tests.model.helpers import small_model, uint8_images
from tests.plugins.helpers import SCALES, feature_maps, random_rois

H, W = 128, 160

pytest.importorskip("onnxruntime_extensions", reason="the bridge needs onnxruntime-extensions")


@pytest.fixture(scope="module")
def r18():
    return small_model(min_size=H, max_size=W)


@pytest.fixture(scope="module")
def exports(tmp_path_factory, r18):
    folder = tmp_path_factory.mktemp("trt-target")
    out = {}
    for target in ("portable", "tensorrt"):
        out[target] = to_onnx(r18, folder / f"r18_{target}.onnx", input_size=(H, W), batch=2, dynamic_batch=True,
                              target=target)
    return out


def test_tensorrt_graph_structure(exports):
    model = onnx.load(exports["tensorrt"].path)
    onnx.checker.check_model(model, full_check=True)
    nodes = plugin_nodes(model)
    assert len(nodes) == 2  # box and mask stages
    ops = {n.op_type for n in model.graph.node}
    assert "RoiAlign" not in ops
    assert "NonMaxSuppression" in ops
    assert {(o.domain, o.version) for o in model.opset_import} >= {(spec.ONNX_DOMAIN, spec.ONNX_DOMAIN_VERSION)}
    assert exports["tensorrt"].metadata["target"] == "tensorrt"
    assert exports["portable"].metadata["target"] == "portable"
    sizes = []
    for node in nodes:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["plugin_version"] == spec.PLUGIN_VERSION.encode()
        assert attrs["plugin_namespace"] == spec.PLUGIN_NAMESPACE.encode()
        assert set(attrs) == set(spec.PLUGIN_FIELDS) | {"plugin_version", "plugin_namespace"}
        for name, (kind, _) in spec.PLUGIN_FIELDS.items():
            assert onnx.AttributeProto.AttributeType.Name(next(a.type for a in node.attribute if a.name == name)) == kind
        assert attrs["scales"] == pytest.approx(SCALES)
        assert attrs["mode"] == b"avg" and attrs["aligned"] == 0 and attrs["sampling_ratio"] == 2
        assert len(node.input) == 1 + len(SCALES)
        sizes.append((attrs["output_height"], attrs["output_width"]))
    assert sorted(sizes) == [(7, 7), (14, 14)]
    # the plugin output is typed, so shape inference and fp16 conversion see through it
    inferred = {v.name: v for v in model.graph.value_info}
    for node in nodes:
        assert inferred[node.output[0]].type.tensor_type.elem_type == TensorProto.FLOAT


def test_portable_graph_has_no_plugin(exports):
    model = onnx.load(exports["portable"].path)
    assert not plugin_nodes(model)
    assert not ort_bridge.needs_bridge(model)
    assert all(o.domain in ("", "ai.onnx") for o in model.opset_import)


@pytest.mark.parametrize("backend, batch", [("host", 2), ("torch", 1)])
def test_bridge_gives_the_portable_detections(exports, plugin_build, backend, batch):
    images = uint8_images(batch, H, W).numpy()
    sizes = np.array([[H, W], [H - 10, W - 20]][:batch], dtype=np.int32)  # the second image leaves padding
    feeds = {"images": images, "image_sizes": sizes}
    portable = ort.InferenceSession(exports["portable"].path, providers=["CPUExecutionProvider"])
    want = portable.run(None, feeds)
    session = ort_bridge.make_session(exports["tensorrt"].path, backend=backend)
    got = session.run(None, feeds)
    assert int(want[0].sum()) > 0, "no detections: the comparison would be empty"
    for name, a, b in zip([o.name for o in portable.get_outputs()], want, got):
        assert a.shape == b.shape, name
        np.testing.assert_allclose(b.astype(np.float64), a.astype(np.float64), rtol=0, atol=1e-5, err_msg=name)


def test_fp16_dynamic_opset22_export(r18, tmp_path):
    proto = export_model_proto(r18, input_size=(H, W), dynamic_batch=True, opset=22, precision="fp16",
                               target="tensorrt")
    assert len(plugin_nodes(proto)) == 2
    onnx.checker.check_model(proto, full_check=True)
    data, options = ort_bridge.prepare_session(proto)
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    out = session.run(None, {"images": uint8_images(1, H, W).numpy(), "image_sizes": np.array([[H, W]], np.int32)})
    assert out[1].shape == (1, 100, 4)


def test_unknown_target(r18):
    with pytest.raises(MaskrtError, match="target must be one of"):
        export_model_proto(r18, input_size=(H, W), target="tensorrt-llm")


def _tiny(feature_type, roi_type, levels=2, mode="max"):
    inputs = [helper.make_tensor_value_info("rois", roi_type, ["K", 5])]
    inputs += [helper.make_tensor_value_info(f"p{i}", feature_type, [2, 3, None, None]) for i in range(levels)]
    node = helper.make_node(
        spec.PLUGIN_NAME, ["rois"] + [f"p{i}" for i in range(levels)], ["out"], domain=spec.ONNX_DOMAIN,
        plugin_version="1", plugin_namespace="maskrt", output_height=3, output_width=4, sampling_ratio=0, aligned=1,
        mode=mode, canonical_scale=224, canonical_level=4, scales=SCALES[:levels],
    )
    output = helper.make_tensor_value_info("out", feature_type, ["K", 3, 3, 4])
    graph = helper.make_graph([node], "tiny", inputs, [output])
    return helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17),
                                                                  helper.make_opsetid(spec.ONNX_DOMAIN, 1)])


@pytest.mark.parametrize("types", [(TensorProto.FLOAT, TensorProto.FLOAT), (TensorProto.FLOAT16, TensorProto.FLOAT),
                                   (TensorProto.FLOAT16, TensorProto.FLOAT16)])
@pytest.mark.parametrize("backend", ["host", "torch"])
def test_bridge_single_node(plugin_build, types, backend):
    feature_type, roi_type = types
    fdt = torch.float16 if feature_type == TensorProto.FLOAT16 else torch.float32
    rdt = torch.float16 if roi_type == TensorProto.FLOAT16 else torch.float32
    maps = feature_maps(batch=2, channels=3, seed=31, dtype=fdt)[:2]
    rois = random_rois(25, seed=31, dtype=rdt)
    model = _tiny(feature_type, roi_type)
    onnx.checker.check_model(model, full_check=True)
    session = ort_bridge.make_session(model, backend=backend)
    got = session.run(None, {"rois": rois.numpy(), "p0": maps[0].numpy(), "p1": maps[1].numpy()})[0]
    want = multilevel_roi_align(maps, rois, (3, 4), 0, scales=SCALES[:2], aligned=True, mode="max").numpy()
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_bridge_leaves_the_source_alone_and_plain_models_pass(plugin_build):
    model = _tiny(TensorProto.FLOAT, TensorProto.FLOAT)
    before = model.SerializeToString()
    bridged = ort_bridge.bridge_model(model, backend="torch")
    assert model.SerializeToString() == before
    assert not ort_bridge.needs_bridge(bridged)
    assert {n.domain for n in bridged.graph.node} == {ort_bridge.BRIDGE_DOMAIN}
    plain = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "plain",
                                                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]))
    data, options = ort_bridge.prepare_session(plain)
    assert data == plain.SerializeToString() and isinstance(options, ort.SessionOptions)


def test_bridge_without_extensions_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime_extensions", None)
    with pytest.raises(MaskrtError, match="pip install onnxruntime-extensions"):
        ort_bridge.prepare_session(_tiny(TensorProto.FLOAT, TensorProto.FLOAT))


def test_bridge_host_backend_without_library(monkeypatch, tmp_path):
    monkeypatch.setenv("MASKRT_PLUGIN_PATH", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("maskrt.plugins.library.package_dir", lambda: str(tmp_path / "pkg"))
    assert ort_bridge.resolve_backend("auto") == "torch"
    with pytest.raises(MaskrtError, match="maskrt plugins build"):
        ort_bridge.resolve_backend("host")
