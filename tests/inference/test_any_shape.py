"""Any image that fits gives the eager model's detections, on any canvas, in any batch; compact masks; the
pipelined Predictor keeps order and fails one image at a time."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from maskrt import MaskrtError
from maskrt.backends import OrtRunner, TorchRunner
from maskrt.data.shapes import make_scene
from maskrt.export import to_onnx
from maskrt.inference import Detections, Predictor
from maskrt.inference.predictor import ImageError, ShrunkImageWarning
from maskrt.model import build, load_checkpoint
from maskrt.model.presets import get_preset
from maskrt.model.transform import paste_masks
from maskrt.ops.boxes import box_iou

CANVAS = (384, 384)
# The shapes preset resizes to a short side of 320 (long side <= 384): these need no resize, so the deployed
# model must give exactly the eager model's detections: landscape, portrait, square and odd sizes.
SIZES = [(320, 384), (384, 320), (320, 320), (320, 341), (347, 320), (320, 352)]


def _scene(index: int, size) -> torch.Tensor:
    image = torch.from_numpy(np.ascontiguousarray(make_scene(11, index).image)).permute(2, 0, 1)
    return torch.nn.functional.interpolate(image[None].float(), size=size, mode="bilinear")[0].round().clamp(
        0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def model():
    m = build("shapes").eval()
    load_checkpoint(get_preset("shapes").weights_path(), m)
    return m


@pytest.fixture(scope="module")
def images():
    return [_scene(i, size) for i, size in enumerate(SIZES)]


@pytest.fixture(scope="module")
def eager(model, images):
    with torch.inference_mode():
        return [model([img.float() / 255.0])[0] for img in images]


@pytest.fixture(scope="module")
def exports(tmp_path_factory, model):
    folder = tmp_path_factory.mktemp("anyshape")
    return {
        "fixed batch 2": to_onnx(model, folder / "b2.onnx", input_size=CANVAS, batch=2).path,
        "dynamic batch": to_onnx(model, folder / "dyn.onnx", input_size=CANVAS, dynamic_batch=True).path,
        "dynamic size": to_onnx(model, folder / "size.onnx", input_size=CANVAS, dynamic_batch=True,
                                dynamic_size=True).path,
        # the TensorRT-target graph (plugin nodes; in ONNX Runtime through the plugin's host twin)
        "tensorrt-target dynamic size": to_onnx(model, folder / "trt_size.onnx", input_size=CANVAS,
                                                dynamic_batch=True, dynamic_size=True, target="tensorrt").path,
    }


def _matched(det: Detections, ref: dict) -> tuple[int, float]:
    """Detections of ``det`` matching ``ref`` (same label, IoU > 0.99), and the largest score difference."""
    if len(det) == 0 or len(ref["boxes"]) == 0:
        return 0, 0.0
    iou = box_iou(ref["boxes"], det.boxes.cpu())
    iou[ref["labels"][:, None] != det.labels.cpu()[None, :]] = -1
    used, worst = set(), 0.0
    for r in range(iou.shape[0]):
        row = iou[r].clone()
        row[list(used)] = -1
        c = int(row.argmax())
        if float(row[c]) > 0.99:
            used.add(c)
            worst = max(worst, abs(float(ref["scores"][r]) - float(det.scores[c])))
    return len(used), worst


def _same(a: Detections, b: Detections) -> bool:
    return (len(a) == len(b) and torch.equal(a.labels, b.labels)
            and torch.allclose(a.boxes, b.boxes, atol=1e-3) and torch.allclose(a.scores, b.scores, atol=1e-5))


@pytest.mark.parametrize("name", ["fixed batch 2", "dynamic batch", "dynamic size", "tensorrt-target dynamic size"])
def test_every_image_that_fits_gives_the_eager_detections(exports, images, eager, name):
    with Predictor(OrtRunner(exports[name]), batch=3) as predictor:
        results = predictor.predict(images)
    total = sum(len(e["boxes"]) for e in eager)
    assert total > 20  # the scenes are busy enough for the check to mean something
    for det, ref, size in zip(results, eager, SIZES):
        matched, worst = _matched(det, ref)
        assert matched == len(ref["boxes"]) == len(det), (size, matched, len(ref["boxes"]), len(det))
        assert worst < 1e-4, (size, worst)


def test_torch_runner_fixed_canvas_and_dynamic_size(model, images, eager):
    for runner in (TorchRunner(model, CANVAS, None), TorchRunner(model, CANVAS, None, dynamic_size=True)):
        with Predictor(runner, batch=4) as predictor:
            for det, ref in zip(predictor.predict(images), eager):
                assert _matched(det, ref)[0] == len(ref["boxes"]) == len(det)


@pytest.mark.parametrize("name", ["fixed batch 2", "dynamic batch", "dynamic size"])
def test_batch_invariance(exports, images, name):
    """Image i gives the same detections alone, at any position, with any batch mates and sizes."""
    runner = OrtRunner(exports[name])
    with Predictor(runner, batch=1, prefetch=0) as alone:
        single = [alone.predict([img])[0] for img in images]
    orders = [list(range(len(images))), list(reversed(range(len(images)))), [2, 0, 5, 1, 4, 3]]
    for order in orders:
        with Predictor(runner, batch=runner.batch or 3) as predictor:
            results = predictor.predict([images[i] for i in order])
        for position, i in enumerate(order):
            assert _same(results[position], single[i]), (name, order, i)


def test_masks_are_compact_until_asked(exports, images):
    with Predictor(OrtRunner(exports["dynamic batch"])) as predictor:
        det = predictor.predict([images[0]])[0]
    assert det.mask_probs.shape == (len(det), 28, 28) and not det.has_full_masks
    compact = det.nbytes()
    assert compact < 100_000
    full = det.masks  # pasted on first access, exactly as paste_masks
    assert torch.equal(full, paste_masks(det.mask_probs[:, None], det.boxes, det.image_size)[:, 0])
    assert det.has_full_masks and det.nbytes() > compact
    binary = torch.stack(list(det.iter_binary_masks()))
    assert torch.equal(binary, full > 0.5) and torch.equal(det.binary_masks(), full > 0.5)


def test_an_image_larger_than_the_canvas_is_shrunk_with_one_notice(model):
    portrait = torch.zeros(3, 384, 320, dtype=torch.uint8)  # the rule keeps 384x320: too tall for a 320x384 canvas
    notices = []
    with Predictor(TorchRunner(model, (320, 384)), notify=notices.append) as predictor:
        predictor.predict([portrait, portrait])
    assert len(notices) == 1 and "shrunk to 320x266" in notices[0] and "\n" not in notices[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Predictor(TorchRunner(model, (320, 384))) as predictor:
            predictor.predict([portrait])
    assert any(issubclass(w.category, ShrunkImageWarning) for w in caught)
    with Predictor(TorchRunner(model, (320, 384), dynamic_size=True), notify=notices.append) as predictor:
        predictor.predict([portrait])  # a dynamic-size model takes it as it is
    assert len(notices) == 1


def test_dynamic_size_bounds_are_checked(exports):
    with OrtRunner(exports["dynamic size"]) as runner:
        with pytest.raises(MaskrtError, match="takes heights 32..384"):
            runner.infer({"images": torch.zeros(1, 3, 416, 320, dtype=torch.uint8)})
        with pytest.raises(MaskrtError, match="multiples of 32"):
            runner.infer({"images": torch.zeros(1, 3, 320, 300, dtype=torch.uint8)})
        out = runner.infer({"images": torch.zeros(2, 3, 256, 320, dtype=torch.uint8)})  # image_sizes filled in
        assert out["boxes"].shape == (2, 50, 4)


def test_pipelined_predictor_keeps_order_and_fails_one_image(exports, images, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    items = [images[0], str(bad), images[1], str(tmp_path / "missing.png"), images[2]]
    with Predictor(OrtRunner(exports["dynamic batch"]), batch=2) as predictor:
        results = list(predictor.predict_iter(items, errors="yield"))
        reference = predictor.predict([images[0], images[1], images[2]])
        assert [type(r).__name__ for r in results] == ["Detections", "ImageError", "Detections", "ImageError",
                                                       "Detections"]
        assert isinstance(results[1], ImageError) and "cannot read image" in str(results[1].error)
        for got, want in zip([results[0], results[2], results[4]], reference):
            assert _same(got, want)
        with pytest.raises(MaskrtError, match="cannot read image"):
            predictor.predict(items)
