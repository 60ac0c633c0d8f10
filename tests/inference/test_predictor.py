"""Runners and the Predictor: contract, pre/post-processing, batching, bad input."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from maskrt import MaskrtError
from maskrt.backends import OrtRunner, TorchRunner
from maskrt.data.images import synthetic_image
from maskrt.export import to_onnx
from maskrt.inference import Predictor
from maskrt.inference.predictor import prepare, resize_scale
from maskrt.model.transform import paste_masks
from tests.model.helpers import small_model

H, W = 128, 160


@pytest.fixture(scope="module")
def model():
    return small_model(min_size=H, max_size=W)


@pytest.fixture(scope="module")
def onnx_b2(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("pred") / "b2.onnx"
    to_onnx(model, path, input_size=(H, W), batch=2)
    return str(path)


def test_runner_contract(onnx_b2, model):
    for runner in (OrtRunner(onnx_b2), TorchRunner(model, (H, W), 2)):
        assert runner.input_specs()["images"].shape == (2, 3, H, W)
        assert runner.output_specs()["masks"].shape == (2, 100, 28, 28)
        with pytest.raises(MaskrtError, match="not active"):
            runner.infer({"images": torch.zeros(2, 3, H, W, dtype=torch.uint8)})
        with runner:
            with pytest.raises(MaskrtError, match="must be uint8"):
                runner.infer({"images": torch.zeros(2, 3, H, W)})
            with pytest.raises(MaskrtError, match="shape"):
                runner.infer({"images": torch.zeros(1, 3, H, W, dtype=torch.uint8)})
            with pytest.raises(MaskrtError, match="missing input"):
                runner.infer({})
            out = runner.infer({"images": torch.zeros(2, 3, H, W, dtype=torch.uint8)})
            assert set(out) == {"num_detections", "boxes", "scores", "labels", "masks"}
        assert not runner.is_active


def test_resize_rule_matches_the_model_transform():
    # landscape within the canvas: torchvision's rule exactly
    assert resize_scale(400, 500, 800, 1333, (800, 1344)) == (2.0, False)
    # portrait would not fit the landscape canvas: shrink to fit
    assert resize_scale(1000, 500, 800, 1333, (800, 1344)) == (0.8, True)


def test_predictor_equals_eager_model(model):
    """For an image the transform resizes, the Predictor gives the eager model's detections (uint8 rounding
    of the resized image aside, which is why the image is given at the export size here)."""
    image = synthetic_image(H, W, 3)
    with torch.inference_mode():
        eager = model([image.float() / 255.0])[0]
    with Predictor(TorchRunner(model, (H, W), 1)) as p:
        det = p.predict([image])[0]
    assert len(det) == eager["boxes"].shape[0] > 0
    torch.testing.assert_close(det.boxes, eager["boxes"], rtol=0, atol=1e-3)
    torch.testing.assert_close(det.masks, eager["masks"][:, 0], rtol=0, atol=1e-4)
    assert det.names[0] == f"class_{int(det.labels[0])}"


def test_predictor_rescales_to_original_images(onnx_b2):
    images = [synthetic_image(64, 80, 1), synthetic_image(300, 200, 2), synthetic_image(128, 160, 3)]
    with Predictor(OrtRunner(onnx_b2)) as p:
        dets = p.predict(images)  # three images through a batch-2 model: the last batch is padded
    assert len(dets) == 3
    for image, det in zip(images, dets):
        h, w = image.shape[1:]
        assert det.image_size == (h, w) and det.masks.shape[1:] == (h, w)
        assert float(det.boxes[:, 2].max()) <= w + 1e-3 and float(det.boxes[:, 3].max()) <= h + 1e-3
    # the same image alone gives the same detections
    with Predictor(OrtRunner(onnx_b2)) as p:
        alone = p.predict([images[1]])[0]
    torch.testing.assert_close(alone.boxes, dets[1].boxes, rtol=0, atol=1e-3)


def test_prepare_uses_model_resize_and_pads(model):
    from maskrt.model.meta import model_meta

    meta = model_meta(model, (H, W))
    p = prepare(synthetic_image(64, 80, 0), meta)
    assert p.canvas.shape == (3, H, W) and p.resized == (128, 160)
    p = prepare(synthetic_image(100, 50, 0), meta)
    assert p.resized == (128, 64) and int(p.canvas[:, :, 64:].abs().sum()) == 0


def test_image_inputs(onnx_b2, tmp_path):
    from PIL import Image

    arr = synthetic_image(60, 70, 4).permute(1, 2, 0).numpy()
    Image.fromarray(arr).convert("RGBA").save(tmp_path / "rgba.png")
    with Predictor(OrtRunner(onnx_b2)) as p:
        a, b, c = p.predict([arr, str(tmp_path / "rgba.png"), arr[..., 0]])
    torch.testing.assert_close(a.boxes, b.boxes)
    assert c.image_size == (60, 70)
    with pytest.raises(MaskrtError, match="uint8"):
        Predictor(OrtRunner(onnx_b2)).predict([arr.astype(np.float32)])


def test_score_threshold_filters(onnx_b2):
    image = synthetic_image(H, W, 5)
    with Predictor(OrtRunner(onnx_b2)) as p:
        everything = p.predict([image])[0]
    cut = float(everything.scores.median())
    with Predictor(OrtRunner(onnx_b2), score_threshold=cut) as p:
        some = p.predict([image])[0]
    assert 0 < len(some) < len(everything) and float(some.scores.min()) >= cut


def test_corrupt_truncated_and_foreign_onnx(tmp_path, onnx_b2):
    (tmp_path / "junk.onnx").write_bytes(b"definitely not protobuf \x00\xff" * 10)
    with pytest.raises(MaskrtError, match="not a readable ONNX"):
        OrtRunner(tmp_path / "junk.onnx")
    data = open(onnx_b2, "rb").read()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 3])
    with pytest.raises(MaskrtError, match="not a readable ONNX"):
        OrtRunner(tmp_path / "cut.onnx")
    with pytest.raises(MaskrtError, match="not found"):
        OrtRunner(tmp_path / "none.onnx")
    # a valid ONNX file without maskrt metadata: say what is missing and how to run it anyway
    m = onnx.load(onnx_b2)
    del m.metadata_props[:]
    onnx.save(m, tmp_path / "foreign.onnx")
    with pytest.raises(MaskrtError, match="not a maskrt export.*input_size.*OrtRunner"):
        OrtRunner(tmp_path / "foreign.onnx")
    with OrtRunner(tmp_path / "foreign.onnx", require_metadata=False) as r:
        assert r.infer({"images": torch.zeros(2, 3, H, W, dtype=torch.uint8)})["boxes"].shape == (2, 100, 4)


def test_unknown_provider(onnx_b2):
    with pytest.raises(MaskrtError, match="not in this onnxruntime"):
        OrtRunner(onnx_b2, providers=["NoSuchExecutionProvider"]).activate()


def test_paste_masks_stays_inside_the_grown_box():
    """A mask pasted for a box inside the image is zero outside the box grown by one mask cell and non-zero
    inside it (exact equality with torchvision's paste is covered by the torchvision parity check)."""
    mask = torch.rand(1, 1, 28, 28)
    box = torch.tensor([[10.0, 20.0, 40.0, 50.0]])
    out = paste_masks(mask, box, (80, 90))
    assert out.shape == (1, 1, 80, 90)
    assert float(out[0, 0, :15].abs().sum()) == 0 and float(out[0, 0, :, :5].abs().sum()) == 0
    assert float(out[0, 0, 25:45, 15:35].min()) >= 0 and float(out[0, 0, 30:40, 20:30].sum()) > 0
