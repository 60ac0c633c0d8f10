"""ONNX export: graph structure, metadata, static shapes, and ONNX Runtime against the PyTorch deploy forward."""

from __future__ import annotations

import json
import os

import onnx
import pytest
import torch

from maskrt import MaskrtError
from maskrt.backends import OrtRunner
from maskrt.evaluation.verify import compare_outputs
from maskrt.export import to_onnx
from maskrt.model import DeployMaskRCNN
from tests.model.helpers import small_model, uint8_images

H, W = 128, 160


@pytest.fixture(scope="module")
def r18():
    return small_model(min_size=H, max_size=W)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, r18):
    """One export per (batch, dynamic, opset, precision) asked for, shared by the tests."""
    cache = {}
    folder = tmp_path_factory.mktemp("onnx")

    def get(batch=1, dynamic=False, opset=17, precision="fp32"):
        key = (batch, dynamic, opset, precision)
        if key not in cache:
            path = folder / f"r18_b{batch}_{'dyn' if dynamic else 'fix'}_op{opset}_{precision}.onnx"
            cache[key] = to_onnx(r18, path, input_size=(H, W), batch=batch, dynamic_batch=dynamic, opset=opset,
                                 precision=precision)
        return cache[key]

    return get


def _run_both(model, path, images, precision="fp32"):
    with OrtRunner(path, providers=["CPUExecutionProvider"]) as ort_runner:
        cand = ort_runner.infer({"images": images})
    with torch.inference_mode():
        ref = dict(zip(DeployMaskRCNN.output_names, DeployMaskRCNN(model)(images)))
    return ref, cand


def _assert_agree(ref, cand, batch, precision="fp32"):
    for i in range(batch):
        check, failures = compare_outputs(ref, cand, i, f"image {i}", precision)
        assert not failures, failures
        assert check.reference > 0, "no detections: the comparison would be empty"
    if precision == "fp32":
        # positional equality too: same count, same order
        assert torch.equal(ref["num_detections"], cand["num_detections"])
        assert torch.equal(ref["labels"], cand["labels"])
        torch.testing.assert_close(cand["boxes"], ref["boxes"], rtol=0, atol=1e-3)
        torch.testing.assert_close(cand["scores"], ref["scores"], rtol=0, atol=1e-4)
        torch.testing.assert_close(cand["masks"], ref["masks"], rtol=0, atol=1e-3)


def test_graph_structure_and_metadata(exported):
    result = exported()
    model = onnx.load(result.path)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"RoiAlign", "NonMaxSuppression"} <= ops
    assert not ops & {"Loop", "If", "SequenceAt", "Scan"}
    roi_aligns = [n for n in model.graph.node if n.op_type == "RoiAlign"]
    assert len(roi_aligns) == 8  # four levels, box and mask stages
    for n in roi_aligns:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert attrs["coordinate_transformation_mode"] == b"output_half_pixel"
        assert attrs["sampling_ratio"] == 2
        assert attrs["mode"] == b"avg"
    assert model.ir_version <= 10
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["input_size"]) == [H, W]
    assert len(json.loads(meta["class_names"])) == 5
    assert meta["precision"] == "fp32" and meta["batch"] == "1" and meta["preset"] == "maskrcnn_resnet18_fpn"
    assert meta["min_size"] == str(H) and meta["max_size"] == str(W)
    shapes = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    assert shapes == {"num_detections": [1], "boxes": [1, 100, 4], "scores": [1, 100], "labels": [1, 100],
                      "masks": [1, 100, 28, 28]}
    inputs = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    assert inputs == {"images": onnx.TensorProto.UINT8, "image_sizes": onnx.TensorProto.INT32}


@pytest.mark.parametrize("opset", [16, 17, 18, 20, 21, 22])
def test_opsets_run_in_onnxruntime(exported, r18, opset):
    result = exported(opset=opset)
    model = onnx.load(result.path)
    assert model.opset_import[0].version == opset
    images = uint8_images(1, H, W, seed=opset)
    ref, cand = _run_both(r18, result.path, images)
    _assert_agree(ref, cand, 1)


def test_batch2_fixed(exported, r18):
    images = uint8_images(2, H, W, seed=21)
    ref, cand = _run_both(r18, exported(batch=2).path, images)
    _assert_agree(ref, cand, 2)


def test_dynamic_batch_gives_batch1_results(exported, r18):
    result = exported(dynamic=True)
    model = onnx.load(result.path)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    images = uint8_images(4, H, W, seed=31)
    with OrtRunner(result.path, providers=["CPUExecutionProvider"]) as runner:
        assert runner.batch is None
        single = [runner.infer({"images": images[i : i + 1]}) for i in range(4)]
        for b in (2, 4):
            out = runner.infer({"images": images[:b]})
            for i in range(b):
                n = int(single[i]["num_detections"][0])
                assert int(out["num_detections"][i]) == n
                assert torch.equal(out["labels"][i], single[i]["labels"][0])
                torch.testing.assert_close(out["boxes"][i], single[i]["boxes"][0], rtol=0, atol=1e-3)
                torch.testing.assert_close(out["scores"][i], single[i]["scores"][0], rtol=0, atol=1e-4)
                torch.testing.assert_close(out["masks"][i], single[i]["masks"][0], rtol=0, atol=1e-3)
    ref, cand = _run_both(r18, result.path, images[:2])
    _assert_agree(ref, cand, 2)


def test_fp16_graph(exported, r18):
    result = exported(precision="fp16")
    model = onnx.load(result.path)
    conv_weights = [t for t in model.graph.initializer if len(t.dims) == 4]
    assert conv_weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in conv_weights)
    outputs = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
    assert outputs["boxes"] == outputs["scores"] == outputs["masks"] == onnx.TensorProto.FLOAT
    # The sensitive parts stay fp32: every RoiAlign, Exp (box decoding) and NMS input is fp32.
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    for node in model.graph.node:
        if node.op_type in ("RoiAlign", "Exp", "NonMaxSuppression", "Softmax", "Sigmoid"):
            assert types.get(node.input[0], onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT, node.name
    images = uint8_images(1, H, W, seed=41)
    ref, cand = _run_both(r18, result.path, images)
    _assert_agree(ref, cand, 1, precision="fp16")


@pytest.mark.parametrize("name,kwargs", [
    ("maskrcnn_resnet50_fpn", {}),
    ("maskrcnn_resnet50_fpn_v2", {"classifier_scale": 1.0, "background_bias": -4.0}),
])
def test_r50_models(tmp_path, name, kwargs):
    model = small_model(name, min_size=H, max_size=W, **kwargs)
    result = to_onnx(model, tmp_path / "m.onnx", input_size=(H, W))
    images = uint8_images(1, H, W, seed=51)
    ref, cand = _run_both(model, result.path, images)
    _assert_agree(ref, cand, 1)


def test_export_overrides_detection_settings(tmp_path, r18):
    result = to_onnx(r18, tmp_path / "k.onnx", input_size=(H, W), max_detections=7, score_threshold=0.3)
    assert result.metadata["max_detections"] == "7" and result.metadata["score_threshold"] == "0.3"
    assert r18.roi_heads.detections_per_img == 100 and r18.roi_heads.score_thresh == 0.05  # restored
    with OrtRunner(result.path) as runner:
        out = runner.infer({"images": uint8_images(1, H, W)})
    assert out["boxes"].shape == (1, 7, 4)
    n = int(out["num_detections"][0])
    assert n > 0 and float(out["scores"][0, :n].min()) > 0.3


def test_opset_11_is_explained(tmp_path, r18):
    with pytest.raises(MaskrtError, match="RoiAlign.*16"):
        to_onnx(r18, tmp_path / "x.onnx", input_size=(H, W), opset=11)
    assert not os.listdir(tmp_path)


def test_unwritable_output_folder(tmp_path, r18):
    with pytest.raises(MaskrtError, match="does not exist"):
        to_onnx(r18, tmp_path / "missing" / "x.onnx", input_size=(H, W))


def test_no_partial_file_when_writing_fails(tmp_path, r18, monkeypatch):
    import onnx.checker

    def boom(*a, **k):
        raise RuntimeError("checker exploded")

    monkeypatch.setattr(onnx.checker, "check_model", boom)
    with pytest.raises(RuntimeError):
        to_onnx(r18, tmp_path / "x.onnx", input_size=(H, W))
    assert os.listdir(tmp_path) == []


def test_class_names_must_match(tmp_path, r18):
    with pytest.raises(MaskrtError, match="3 class names"):
        to_onnx(r18, tmp_path / "x.onnx", input_size=(H, W), class_names=["a", "b", "c"])
    result = to_onnx(r18, tmp_path / "x.onnx", input_size=(H, W), class_names=["bg", "a", "b", "c", "d"])
    assert json.loads(result.metadata["class_names"]) == ["bg", "a", "b", "c", "d"]
