"""Presets, torchvision's names and sizes, and input validation of the eager forward."""

from __future__ import annotations

import pytest
import torch

from maskrt import MaskrtError
from maskrt.model import build, list_presets
from maskrt.model.backbone import FrozenBatchNorm2d


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# Parameter counts torchvision documents for its models (num_params in the weights' metadata).
@pytest.mark.parametrize("name,count", [("maskrcnn_resnet50_fpn", 44_401_393), ("maskrcnn_resnet50_fpn_v2", 46_359_409)])
def test_parameter_counts_match_torchvision(name, count):
    # v1's count is of the model built for its COCO weights, whose FrozenBatchNorm2d holds buffers only.
    assert _params(build(name)) == count


def test_torchvision_key_names():
    keys = set(build("maskrcnn_resnet50_fpn").state_dict())
    for k in [
        "backbone.body.conv1.weight", "backbone.body.bn1.running_var", "backbone.body.layer1.0.downsample.0.weight",
        "backbone.body.layer4.2.conv3.weight", "backbone.fpn.inner_blocks.0.0.weight", "backbone.fpn.layer_blocks.3.0.bias",
        "rpn.head.conv.0.0.weight", "rpn.head.cls_logits.weight", "rpn.head.bbox_pred.bias",
        "roi_heads.box_head.fc6.weight", "roi_heads.box_head.fc7.bias", "roi_heads.box_predictor.cls_score.weight",
        "roi_heads.box_predictor.bbox_pred.weight", "roi_heads.mask_head.3.0.weight",
        "roi_heads.mask_predictor.conv5_mask.weight", "roi_heads.mask_predictor.mask_fcn_logits.bias",
    ]:
        assert k in keys, k
    assert not any(k.endswith("num_batches_tracked") for k in keys)  # FrozenBatchNorm2d trunk
    v2 = set(build("maskrcnn_resnet50_fpn_v2").state_dict())
    for k in ["backbone.fpn.inner_blocks.0.1.running_mean", "rpn.head.conv.1.0.weight", "roi_heads.box_head.0.1.weight",
              "roi_heads.box_head.5.weight", "roi_heads.mask_head.0.1.num_batches_tracked"]:
        assert k in v2, k


def test_v1_frozen_bn_eps_follows_torchvision_coco_weights():
    m = build("maskrcnn_resnet50_fpn")
    eps = {mod.eps for mod in m.modules() if isinstance(mod, FrozenBatchNorm2d)}
    assert eps == {0.0}
    assert {mod.eps for mod in build("maskrcnn_resnet18_fpn").modules() if isinstance(mod, FrozenBatchNorm2d)} == {1e-5}
    assert {mod.eps for mod in build("maskrcnn_resnet50_fpn", frozen_bn_eps=1e-5).modules()
            if isinstance(mod, FrozenBatchNorm2d)} == {1e-5}


@pytest.mark.parametrize("name", ["maskrcnn_resnet18_fpn", "maskrcnn_resnet34_fpn", "maskrcnn_resnet101_fpn"])
def test_other_trunks_build_and_run(name):
    torch.manual_seed(0)
    m = build(name, num_classes=3, min_size=96, max_size=128).eval()
    assert m.roi_heads.box_predictor.cls_score.out_features == 3
    assert m.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 3
    with torch.inference_mode():
        out = m([torch.rand(3, 90, 120)])
    assert set(out[0]) == {"boxes", "labels", "scores", "masks"}
    assert out[0]["masks"].shape[1:] == (1, 90, 120)


def test_torchvision_kwargs_are_honoured():
    m = build("maskrcnn_resnet18_fpn", min_size=500, max_size=900, rpn_pre_nms_top_n_test=300,
              rpn_post_nms_top_n_test=200, rpn_nms_thresh=0.6, rpn_score_thresh=0.1, box_score_thresh=0.3,
              box_nms_thresh=0.4, box_detections_per_img=17, image_mean=[0.5] * 3, image_std=[0.25] * 3)
    assert m.min_size == (500,) and m.max_size == 900
    assert (m.rpn.pre_nms_top_n_test, m.rpn.post_nms_top_n_test) == (300, 200)
    assert (m.rpn.nms_thresh, m.rpn.score_thresh) == (0.6, 0.1)
    assert (m.roi_heads.score_thresh, m.roi_heads.nms_thresh, m.roi_heads.detections_per_img) == (0.3, 0.4, 17)
    assert m.image_mean == [0.5] * 3 and m.image_std == [0.25] * 3


def test_detections_per_img_sets_output_size():
    from maskrt.model import DeployMaskRCNN
    from tests.model.helpers import small_model, uint8_images

    m = small_model(box_detections_per_img=7, box_score_thresh=0.0, min_size=64, max_size=96)
    with torch.inference_mode():
        num, boxes, *_ = DeployMaskRCNN(m)(uint8_images(1, 64, 96))
    assert boxes.shape == (1, 7, 4) and int(num[0]) == 7


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: build("resnet50"), "unknown model 'resnet50'"),
        (lambda: build("maskrcnn_resnet50_fpn", num_classes=1), "num_classes must be an integer >= 2"),
        (lambda: build("maskrcnn_resnet50_fpn", num_classes=2.5), "num_classes"),
        (lambda: build("maskrcnn_resnet50_fpn", not_an_option=3), "unknown keyword argument"),
    ],
)
def test_build_errors(call, match):
    with pytest.raises(MaskrtError, match=match):
        call()


def test_presets_listed():
    assert {"maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "maskrcnn_resnet18_fpn", "maskrcnn_resnet34_fpn",
            "maskrcnn_resnet101_fpn"} <= set(list_presets())


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build("maskrcnn_resnet18_fpn", num_classes=3, min_size=64, max_size=96).eval()


@pytest.mark.parametrize(
    "images,match",
    [
        ([], "empty list"),
        (torch.rand(3, 32, 32), "single tensor"),
        ([torch.rand(1, 32, 32)], r"shape \(3, H, W\)"),
        ([torch.rand(4, 32, 32)], r"shape \(3, H, W\)"),
        ([torch.rand(32, 32)], r"shape \(3, H, W\)"),
        ([torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8)], "float tensor"),
        ([torch.rand(3, 0, 32)], "empty"),
        (["image.png"], "torch.Tensor"),
        ("image.png", "list"),
    ],
)
def test_bad_images(tiny, images, match):
    with pytest.raises(MaskrtError, match=match):
        tiny(images)


def test_training_mode_is_refused_clearly():
    m = build("maskrcnn_resnet18_fpn", num_classes=3)
    with pytest.raises(MaskrtError, match="eval"):
        m([torch.rand(3, 32, 32)])


def test_eager_batch_equals_single_images():
    from tests.model.helpers import small_model

    m = small_model(min_size=96, max_size=128)
    a, b = torch.rand(3, 90, 120), torch.rand(3, 90, 120)
    with torch.inference_mode():
        both = m([a, b])
        alone = [m([a])[0], m([b])[0]]
    for x, y in zip(both, alone):
        assert x["boxes"].shape[0] > 0
        assert torch.equal(x["labels"], y["labels"])
        torch.testing.assert_close(x["boxes"], y["boxes"], rtol=0, atol=1e-3)
        torch.testing.assert_close(x["masks"], y["masks"], rtol=0, atol=1e-4)


def test_eager_batch_of_different_sizes_stays_per_image():
    """Images of different sizes share one padded batch; boxes and masks still refer to each original image."""
    from tests.model.helpers import small_model

    m = small_model(min_size=96, max_size=128, box_score_thresh=0.0)
    sizes = [(90, 120), (100, 70)]
    with torch.inference_mode():
        out = m([torch.rand(3, h, w) for h, w in sizes])
    for (h, w), r in zip(sizes, out):
        assert r["boxes"].shape[0] > 0
        assert r["masks"].shape[1:] == (1, h, w)
        assert float(r["boxes"][:, 0::2].min()) >= 0 and float(r["boxes"][:, 0::2].max()) <= w + 1e-3
        assert float(r["boxes"][:, 1::2].min()) >= 0 and float(r["boxes"][:, 1::2].max()) <= h + 1e-3
