"""The deploy forward (static shapes, uint8 in) against the eager forward on the same padded input."""

from __future__ import annotations

import pytest
import torch

from maskrt.model import DeployMaskRCNN
from maskrt.model.transform import paste_masks
from tests.model.helpers import small_model, uint8_images

H, W = 192, 256  # multiples of 32: the eager transform then neither resizes nor pads


@pytest.fixture(scope="module")
def model():
    return small_model(min_size=H, max_size=W)


def _eager(model, images_uint8):
    with torch.inference_mode():
        return model([img.float() / 255.0 for img in images_uint8])


def _deploy(model, images_uint8):
    with torch.inference_mode():
        return DeployMaskRCNN(model)(images_uint8)


# Convolutions may round differently for different batch sizes, so comparisons across batch sizes use the
# parity tolerances (boxes 1e-3 px, scores 1e-5, mask probabilities 1e-4); same-batch comparisons agree far
# more closely in practice.
def _assert_same(eager: dict, deploy: tuple, i: int, height: int, width: int):
    num, boxes, scores, labels, masks = deploy
    n = int(num[i])
    assert n == eager["boxes"].shape[0]
    assert n > 0, "the test model must produce detections for this comparison to mean anything"
    torch.testing.assert_close(boxes[i, :n], eager["boxes"], rtol=0, atol=1e-3)
    torch.testing.assert_close(scores[i, :n], eager["scores"], rtol=0, atol=1e-5)
    assert torch.equal(labels[i, :n].long(), eager["labels"])
    pasted = paste_masks(masks[i, :n, None], boxes[i, :n], (height, width))
    torch.testing.assert_close(pasted, eager["masks"], rtol=0, atol=1e-4)
    # Padding entries carry zeros.
    assert torch.all(scores[i, n:] == 0) and torch.all(boxes[i, n:] == 0) and torch.all(masks[i, n:] == 0)


def test_deploy_contract_shapes_and_dtypes(model):
    images = uint8_images(2, H, W)
    num, boxes, scores, labels, masks = _deploy(model, images)
    k = model.roi_heads.detections_per_img
    assert num.shape == (2,) and num.dtype == torch.int32
    assert boxes.shape == (2, k, 4) and boxes.dtype == torch.float32
    assert scores.shape == (2, k) and scores.dtype == torch.float32
    assert labels.shape == (2, k) and labels.dtype == torch.int32
    assert masks.shape == (2, k, 28, 28) and masks.dtype == torch.float32
    assert float(masks.min()) >= 0.0 and float(masks.max()) <= 1.0


def test_deploy_equals_eager_batch1(model):
    images = uint8_images(1, H, W, seed=3)
    _assert_same(_eager(model, images)[0], _deploy(model, images), 0, H, W)


def test_deploy_equals_eager_batch2_each_image(model):
    images = uint8_images(2, H, W, seed=7)
    deploy = _deploy(model, images)
    eager = _eager(model, images)
    for i in range(2):
        _assert_same(eager[i], deploy, i, H, W)
        # and each image alone gives the same as in the batch
        _assert_same(_eager(model, images[i : i + 1])[0], deploy, i, H, W)


def test_deploy_pads_sizes_that_are_not_multiples_of_32():
    h, w = 170, 230
    model = small_model(min_size=h, max_size=w)
    images = uint8_images(1, h, w, seed=11)
    _assert_same(_eager(model, images)[0], _deploy(model, images), 0, h, w)


def test_v2_deploy_equals_eager():
    model = small_model("maskrcnn_resnet50_fpn_v2", classifier_scale=1.0, background_bias=-4.0, min_size=128, max_size=160)
    images = uint8_images(1, 128, 160, seed=5)
    _assert_same(_eager(model, images)[0], _deploy(model, images), 0, 128, 160)


def test_deploy_rejects_bad_input(model):
    from maskrt import MaskrtError

    deploy = DeployMaskRCNN(model)
    with pytest.raises(MaskrtError, match="uint8"):
        deploy(torch.zeros(1, 3, 64, 64))
    with pytest.raises(MaskrtError, match="B, 3, H, W"):
        deploy(torch.zeros(3, 64, 64, dtype=torch.uint8))
