"""Model presets: the registry behind :func:`maskrt.model.build`.

Each preset names a trunk and a head style:

* ``maskrcnn_resnet50_fpn`` (v1): ResNet-50 with FrozenBatchNorm2d (eps 0, as torchvision sets for its COCO v1
  weights), FPN without norm, one-conv RPN head, TwoMLPHead, four-conv mask head.
* ``maskrcnn_resnet50_fpn_v2``: ResNet-50, FPN, box and mask heads with BatchNorm2d; two-conv RPN head;
  ConvFC box head (4 conv + 1 FC).
* ``maskrcnn_resnet18_fpn``, ``maskrcnn_resnet34_fpn``, ``maskrcnn_resnet101_fpn``: v1 heads on other trunks, with
  FrozenBatchNorm2d eps 1e-5 (torchvision's ``resnet_fpn_backbone`` default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from maskrt.errors import MaskrtError
from maskrt.model.anchors import AnchorGenerator
from maskrt.model.backbone import BackboneWithFPN, FrozenBatchNorm2d
from maskrt.model.heads import BoxPredictor, ConvFCHead, MaskHead, MaskPredictor, RPNHead, TwoMLPHead
from maskrt.model.mask_rcnn import MaskRCNN
from maskrt.model.roi_heads import RoIHeads
from maskrt.model.rpn import RegionProposalNetwork


@dataclass(frozen=True)
class Preset:
    name: str
    depth: int
    v2: bool
    frozen_bn_eps: float
    description: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("maskrcnn_resnet50_fpn", 50, False, 0.0, "torchvision's Mask R-CNN R50-FPN (v1)"),
        Preset("maskrcnn_resnet50_fpn_v2", 50, True, 1e-5, "torchvision's Mask R-CNN R50-FPN v2 (BN heads)"),
        Preset("maskrcnn_resnet18_fpn", 18, False, 1e-5, "v1 heads on a ResNet-18 trunk"),
        Preset("maskrcnn_resnet34_fpn", 34, False, 1e-5, "v1 heads on a ResNet-34 trunk"),
        Preset("maskrcnn_resnet101_fpn", 101, False, 1e-5, "v1 heads on a ResNet-101 trunk"),
    ]
}

# torchvision's MaskRCNN keyword arguments and defaults (rpn_anchor_generator/heads are built by the preset).
MASKRCNN_DEFAULTS: dict[str, Any] = dict(
    min_size=800, max_size=1333, image_mean=None, image_std=None, size_divisible=32, fixed_size=None,
    rpn_pre_nms_top_n_train=2000, rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_train=2000,
    rpn_post_nms_top_n_test=1000, rpn_nms_thresh=0.7, rpn_fg_iou_thresh=0.7, rpn_bg_iou_thresh=0.3,
    rpn_batch_size_per_image=256, rpn_positive_fraction=0.5, rpn_score_thresh=0.0, box_score_thresh=0.05,
    box_nms_thresh=0.5, box_detections_per_img=100, box_fg_iou_thresh=0.5, box_bg_iou_thresh=0.5,
    box_batch_size_per_image=512, box_positive_fraction=0.25, bbox_reg_weights=None,
)
_EXTRA = dict(frozen_bn_eps=None)


def list_presets() -> list[str]:
    return sorted(PRESETS)


def build(name: str, *, num_classes: int = 91, **kwargs: Any) -> MaskRCNN:
    """Build a Mask R-CNN preset with randomly initialised weights.

    Args:
        name: a preset from :func:`list_presets`, e.g. ``"maskrcnn_resnet50_fpn"``.
        num_classes: number of classes including background (>= 2).
        **kwargs: torchvision's ``MaskRCNN`` keyword arguments, same meaning and defaults (min_size, max_size,
            image_mean, image_std, rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test, rpn_nms_thresh,
            rpn_score_thresh, box_score_thresh, box_nms_thresh, box_detections_per_img, ...), plus
            ``frozen_bn_eps`` to override the trunk's FrozenBatchNorm2d eps (v1-style presets).

    Returns:
        A :class:`MaskRCNN` in training mode (call ``.eval()`` before inference), as torchvision returns.
    """
    if not isinstance(name, str) or name not in PRESETS:
        raise MaskrtError(f"unknown model {name!r}; choose one of: {', '.join(list_presets())}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise MaskrtError(f"num_classes must be an integer >= 2 (background plus at least one class), got {num_classes!r}")
    unknown = sorted(set(kwargs) - set(MASKRCNN_DEFAULTS) - set(_EXTRA))
    if unknown:
        raise MaskrtError(f"unknown keyword argument(s) for {name}: {', '.join(unknown)}")
    cfg = {**MASKRCNN_DEFAULTS, **_EXTRA, **kwargs}
    preset = PRESETS[name]
    eps = preset.frozen_bn_eps if cfg["frozen_bn_eps"] is None else float(cfg["frozen_bn_eps"])

    if preset.v2:
        backbone = BackboneWithFPN(preset.depth, nn.BatchNorm2d, nn.BatchNorm2d)
    else:
        backbone = BackboneWithFPN(preset.depth, lambda c: FrozenBatchNorm2d(c, eps=eps))
    width = backbone.out_channels
    anchors = AnchorGenerator()
    rpn = RegionProposalNetwork(
        anchors,
        RPNHead(width, anchors.num_anchors_per_location()[0], conv_depth=2 if preset.v2 else 1),
        pre_nms_top_n_test=cfg["rpn_pre_nms_top_n_test"], post_nms_top_n_test=cfg["rpn_post_nms_top_n_test"],
        pre_nms_top_n_train=cfg["rpn_pre_nms_top_n_train"], post_nms_top_n_train=cfg["rpn_post_nms_top_n_train"],
        nms_thresh=cfg["rpn_nms_thresh"], score_thresh=cfg["rpn_score_thresh"],
        fg_iou_thresh=cfg["rpn_fg_iou_thresh"], bg_iou_thresh=cfg["rpn_bg_iou_thresh"],
        batch_size_per_image=cfg["rpn_batch_size_per_image"], positive_fraction=cfg["rpn_positive_fraction"],
    )
    if preset.v2:
        box_head: nn.Module = ConvFCHead((width, 7, 7), [256, 256, 256, 256], [1024], norm_layer=nn.BatchNorm2d)
        mask_head = MaskHead(width, [256, 256, 256, 256], 1, norm_layer=nn.BatchNorm2d)
    else:
        box_head = TwoMLPHead(width * 7 * 7, 1024)
        mask_head = MaskHead(width, [256, 256, 256, 256], 1)
    roi_heads = RoIHeads(
        box_head, BoxPredictor(1024, num_classes), mask_head, MaskPredictor(256, 256, num_classes),
        score_thresh=cfg["box_score_thresh"], nms_thresh=cfg["box_nms_thresh"],
        detections_per_img=cfg["box_detections_per_img"], bbox_reg_weights=cfg["bbox_reg_weights"],
        fg_iou_thresh=cfg["box_fg_iou_thresh"], bg_iou_thresh=cfg["box_bg_iou_thresh"],
        batch_size_per_image=cfg["box_batch_size_per_image"], positive_fraction=cfg["box_positive_fraction"],
    )
    return MaskRCNN(
        backbone, rpn, roi_heads, min_size=cfg["min_size"], max_size=cfg["max_size"], image_mean=cfg["image_mean"],
        image_std=cfg["image_std"], size_divisible=cfg["size_divisible"], fixed_size=cfg["fixed_size"],
        num_classes=num_classes, preset=name,
    )
