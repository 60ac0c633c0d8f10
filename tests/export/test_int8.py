"""INT8 by explicit Q/DQ (maskrt.export.int8, maskrt.evaluation.int8, `maskrt export --precision int8`).

Small on purpose: the shapes model at a 160x160 canvas, a handful of generated scenes for calibration and for the
AP gate. The accuracy of the recipes is measured by benchmarks/int8.py, not here.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from maskrt.core.errors import MaskrtError
from tests.cli.test_cli import run

SIZE = (160, 160)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """fp32 proto of the shapes model at 160x160, 4 calibration scenes, a 3-scene COCO set, the int8 proto."""
    import torch

    from maskrt.core.metadata import ModelMeta
    from maskrt.data.shapes import write_coco
    from maskrt.export.int8 import calibration_images, quantize_proto
    from maskrt.export.onnx_export import export_model_proto
    from maskrt.inference.predictor import model_feeds
    from maskrt.model.presets import load_model, resolve_sizes

    root = tmp_path_factory.mktemp("int8")
    write_coco(str(root / "calib"), 4, 7)
    ann = write_coco(str(root / "val"), 3, 1000)
    torch.manual_seed(0)
    sizes = resolve_sizes("shapes", SIZE, None, None)
    sizes.pop("input_size")
    model = load_model("shapes", None, False, None, **sizes)
    fp32 = export_model_proto(model, input_size=SIZE)
    meta = ModelMeta.from_props({p.key: p.value for p in fp32.metadata_props})
    feeds = model_feeds(calibration_images(str(root / "calib"), 4), meta)
    int8 = quantize_proto(fp32, feeds)
    return {"root": root, "fp32": fp32, "int8": int8, "feeds": feeds, "ann": ann, "meta": meta}


def _producers(proto):
    return {o: n for n in proto.graph.node for o in n.output}


def test_convolutions_and_gemms_get_qdq_on_input_and_weights(setup):
    from onnx import numpy_helper

    proto = setup["int8"]
    prod = _producers(proto)
    inits = {t.name: t for t in proto.graph.initializer}
    weighted = [n for n in proto.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm")]
    # the shapes model: 48 Conv, 1 ConvTranspose, 4 Gemm in backbone, FPN, RPN head, box head and mask head
    assert len(weighted) == 53
    for node in weighted:
        act, weight = prod.get(node.input[0]), prod.get(node.input[1])
        assert act is not None and act.op_type == "DequantizeLinear", node.name
        assert prod[act.input[0]].op_type == "QuantizeLinear", node.name
        assert weight is not None and weight.op_type == "DequantizeLinear", node.name
        w = numpy_helper.to_array(inits[weight.input[0]])
        scale = numpy_helper.to_array(inits[weight.input[1]])
        assert w.dtype == np.int8  # stored int8, dequantized for the layer
        out_axis = {"Conv": 0, "ConvTranspose": 1, "Gemm": 0}[node.op_type]  # torch.nn.Linear exports transB=1
        assert scale.shape == (w.shape[out_axis],), node.name  # per output channel
        assert len(node.input) < 3 or prod.get(node.input[2]) is None  # biases stay float
    for node in proto.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zp = numpy_helper.to_array(inits[node.input[2]])
            assert zp.dtype == np.int8 and not zp.any()  # symmetric int8


def test_roi_align_nms_and_box_math_stay_float(setup):
    proto = setup["int8"]
    prod = _producers(proto)
    checked = 0
    for node in proto.graph.node:
        if node.op_type in ("RoiAlign", "NonMaxSuppression", "Exp", "Sigmoid", "Softmax", "TopK"):
            for name in node.input:
                p = prod.get(name)
                assert p is None or p.op_type not in ("DequantizeLinear", "QuantizeLinear"), (node.name, name)
            checked += 1
    assert checked >= 8 + 1 + 1  # 8 RoiAlign (4 box + 4 mask levels), NMS, decoding


def test_counts_metadata_and_check(setup):
    from maskrt.check import check_model
    from maskrt.export.int8 import PARTS, graph_precision, qdq_counts

    proto = setup["int8"]
    counts = qdq_counts(proto)
    assert set(counts) == set(PARTS)
    for part, c in counts.items():
        assert c["quantized_ops"] > 0 and c["float_ops"] == 0 and c["quantize"] > 0, part
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["precision"] == "int8" and '"minmax"' in props["int8_recipe"]
    assert graph_precision(proto) == "int8" and graph_precision(setup["fp32"]) == "fp32"
    report = check_model(proto)
    assert not report.errors, [f.message for f in report.errors]


def test_keep_float_leaves_a_part_unquantized(setup):
    from maskrt.export.int8 import Int8Recipe, parse_parts, qdq_counts, quantize_proto

    assert parse_parts("mask_head, trunk") == ("stem", "layer1", "layer2", "layer3", "layer4", "mask_head")
    assert parse_parts(None) == () and parse_parts("none") == ()
    with pytest.raises(MaskrtError, match="unknown part 'neck'"):
        parse_parts("neck")
    proto = quantize_proto(setup["fp32"], setup["feeds"], Int8Recipe(keep_float=("mask_head", "box_head")))
    counts = qdq_counts(proto)
    assert counts["mask_head"]["quantized_ops"] == 0 and counts["mask_head"]["float_ops"] == 6
    assert counts["box_head"]["quantized_ops"] == 0 and counts["fpn"]["quantized_ops"] == 8


def test_int8_graph_runs_through_the_predictor(setup, tmp_path):
    import onnx

    from maskrt.backends.onnxrt.runner import OrtRunner
    from maskrt.data.shapes import make_scene
    from maskrt.inference import Predictor

    path = tmp_path / "m_int8.onnx"
    onnx.save(setup["int8"], path)
    runner = OrtRunner(path, providers=["CPUExecutionProvider"])
    assert runner.meta.precision == "int8"
    with Predictor(runner) as predictor:
        (det,) = predictor.predict([np.ascontiguousarray(make_scene(1000, 0).image)])
    assert len(det.scores) > 0 and det.image_size == make_scene(1000, 0).image.shape[:2]


def test_bad_calibration_folders(tmp_path):
    from maskrt.export.int8 import CalibrationCountWarning, calibration_images

    with pytest.raises(MaskrtError, match="does not exist"):
        calibration_images(tmp_path / "nope")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(MaskrtError, match="is not a folder"):
        calibration_images(tmp_path / "file.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(MaskrtError, match="holds no images"):
        calibration_images(tmp_path / "empty")
    with pytest.raises(MaskrtError, match="--calibration-count must be a positive integer"):
        calibration_images(tmp_path, 0)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "a.png").write_bytes(b"x")
    os.chmod(locked, 0)
    try:
        if os.access(locked, os.R_OK):  # root reads anything: nothing to refuse
            pytest.skip("running as root")
        with pytest.raises(MaskrtError, match="cannot be read"):
            calibration_images(locked)
    finally:
        os.chmod(locked, 0o755)
    few = tmp_path / "few"
    few.mkdir()
    for i in range(3):
        (few / f"{i}.png").write_bytes(b"x")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = calibration_images(few, 10)
    assert len(found) == 3
    assert [str(w.message) for w in caught if issubclass(w.category, CalibrationCountWarning)] == [
        f"calibration folder {few} holds 3 image(s), fewer than the 10 asked for: calibrating on 3"]


def test_fp16_and_quantized_inputs_are_refused_in_one_line(setup):
    from maskrt.export.fp16 import convert_to_fp16
    from maskrt.export.int8 import quantize_proto

    with pytest.raises(MaskrtError, match="already quantized") as e:
        quantize_proto(setup["int8"], setup["feeds"])
    assert "\n" not in str(e.value)
    fp16 = convert_to_fp16(setup["fp32"])
    with pytest.raises(MaskrtError, match="is an fp16 export") as e:
        quantize_proto(fp16, setup["feeds"])
    assert "\n" not in str(e.value)


def test_ap_gate_refuses_and_writes_nothing(setup, tmp_path):
    from maskrt.evaluation.coco import load_coco
    from maskrt.evaluation.int8 import ApGateFailed, export_int8
    from maskrt.export.int8 import Int8Recipe, calibration_images

    dataset = load_coco(setup["ann"], os.path.join(os.path.dirname(setup["ann"]), "images"))
    images = calibration_images(str(setup["root"] / "calib"), 4)
    out = tmp_path / "bad_int8.onnx"
    lines = []
    # A deliberately bad recipe: ranges at the 50th percentile clip half of every activation away.
    with pytest.raises(ApGateFailed, match="nothing written") as e:
        export_int8(setup["fp32"], str(out), images, Int8Recipe(method="percentile", percentile=50.0),
                    dataset=dataset, max_drop=1.0, echo=lines.append)
    assert not out.exists() and os.listdir(tmp_path) == []
    assert any("FAIL (> 1)" in line for line in lines) and e.value.lines[0].split()[:3] == ["model", "bbox", "AP"]
    # The default recipe passes a generous gate and the file is written.
    good = tmp_path / "ok_int8.onnx"
    result = export_int8(setup["fp32"], str(good), images, dataset=dataset, max_drop=100.0, echo=lines.append)
    assert good.exists() and len(result.gate) == 2 and result.gate[0].name == "fp32"


def test_cli_int8_export_and_bad_input(setup, tmp_path):
    import onnx

    calib = str(setup["root"] / "calib" / "images")
    fp32 = tmp_path / "fp32.onnx"
    onnx.save(setup["fp32"], fp32)
    out = tmp_path / "cli_int8.onnx"
    r = run("export", "--from-onnx", str(fp32), "--precision", "int8", "--calibration", calib,
            "--calibration-count", "6", "--keep-float", "mask_head", "-o", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"note: calibration folder {calib} holds 4 image(s), fewer than the 6 asked for" in r.stderr
    assert out.exists() and "mask_head 0/6" in r.stdout and "fpn 8/8" in r.stdout
    r = run("export", "--from-onnx", str(out), "--precision", "int8", "--calibration", calib, "-o",
            str(tmp_path / "again.onnx"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "already quantized" in r.stderr  # before calibration
    r = run("export", "--arch", "shapes", "--precision", "int8", "--calibration", str(tmp_path / "none"), "-o",
            str(tmp_path / "x.onnx"))
    assert r.returncode == 2 and r.stderr.strip().startswith("error: calibration folder") and "does not exist" in r.stderr
    assert r.stderr.count("\n") == 1 and not (tmp_path / "x.onnx").exists()
    r = run("export", "--arch", "shapes", "--calibration", calib, "-o", str(tmp_path / "y.onnx"))
    assert r.returncode == 2 and "--calibration applies to --precision int8" in r.stderr


def test_int8_verification_compares_confident_detections_only():
    import torch

    from maskrt.evaluation.verify import TOLERANCES, compare_outputs

    def outputs(boxes, scores):
        n = len(scores)
        masks = torch.zeros((1, 3, 28, 28))
        masks[0, :n, 4:20, 4:20] = 0.9
        b = torch.zeros((1, 3, 4))
        b[0, :n] = torch.tensor(boxes, dtype=torch.float32)
        s = torch.zeros((1, 3))
        s[0, :n] = torch.tensor(scores)
        return {"num_detections": torch.tensor([n]), "boxes": b, "scores": s, "labels": torch.ones((1, 3)), "masks": masks}

    ref = outputs([[0, 0, 50, 50], [100, 100, 150, 150], [200, 10, 230, 40]], [0.9, 0.8, 0.1])
    shifted = outputs([[2, 1, 52, 49], [103, 100, 152, 151]], [0.85, 0.82])  # the 0.1 detection dropped out
    check, failures = compare_outputs(ref, shifted, 0, "a", "int8")
    assert failures == [] and check.matched == 2 and check.boxes == 3.0
    assert compare_outputs(ref, shifted, 0, "a", "fp16")[1]  # fp16 holds every detection and 2 px
    lost = outputs([[2, 1, 52, 49]], [0.85])  # a confident detection is gone
    assert any("1 unmatched detections scoring >= 0.5" in f for f in compare_outputs(ref, lost, 0, "a", "int8")[1])
    far = outputs([[30, 1, 80, 49], [103, 100, 152, 151]], [0.85, 0.82])  # IoU below the int8 match bound
    assert compare_outputs(ref, far, 0, "a", "int8")[1]
    assert TOLERANCES["int8"]["boxes"] > TOLERANCES["fp16"]["boxes"]
