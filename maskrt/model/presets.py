"""Model presets: the registry behind :func:`maskrt.model.build`.

Each preset names a trunk and a head style:

* ``maskrcnn_resnet50_fpn`` (v1): ResNet-50 with FrozenBatchNorm2d (eps 0, as torchvision sets for its COCO v1
  weights), FPN without norm, one-conv RPN head, TwoMLPHead, four-conv mask head.
* ``maskrcnn_resnet50_fpn_v2``: ResNet-50, FPN, box and mask heads with BatchNorm2d; two-conv RPN head;
  ConvFC box head (4 conv + 1 FC).
* ``maskrcnn_resnet18_fpn``, ``maskrcnn_resnet34_fpn``, ``maskrcnn_resnet101_fpn``: v1 heads on other trunks, with
  FrozenBatchNorm2d eps 1e-5 (torchvision's ``resnet_fpn_backbone`` default).
* ``shapes``: the small model maskrt trains on its synthetic shapes (:mod:`maskrt.data.shapes`) and ships inside
  the package: a ResNet-18 trunk at 3/8 width (24 stem channels), a 64-channel FPN, anchors 16..256, a 256-wide
  TwoMLPHead and a 64-channel mask head; 4 classes, export size 384x384, short side 320, long side <= 384.
  Without ``--weights`` the commands use its embedded weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from torch import nn

from maskrt.core.errors import MaskrtError
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
    trunk_width: int = 64
    fpn_width: int = 256
    representation: int = 1024
    mask_channels: int = 256
    anchor_sizes: tuple = (32, 64, 128, 256, 512)
    num_classes: int = 91
    class_names: Optional[tuple] = None  # background first; None: COCO's for 91 classes, else class_N
    input_size: tuple = (800, 1344)  # the default export canvas (H, W)
    defaults: dict = field(default_factory=dict)  # overrides of MASKRCNN_DEFAULTS
    weights: Optional[str] = None  # embedded weights, a file in maskrt/model/weights/

    def weights_path(self) -> Optional[str]:
        """The embedded weights' path, or None when the preset ships none (or the file is absent)."""
        if not self.weights:
            return None
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", self.weights)
        return path if os.path.isfile(path) else None


SHAPES_CLASSES = ("__background__", "circle", "rectangle", "triangle", "star")

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("maskrcnn_resnet50_fpn", 50, False, 0.0, "torchvision's Mask R-CNN R50-FPN (v1)"),
        Preset("maskrcnn_resnet50_fpn_v2", 50, True, 1e-5, "torchvision's Mask R-CNN R50-FPN v2 (BN heads)"),
        Preset("maskrcnn_resnet18_fpn", 18, False, 1e-5, "v1 heads on a ResNet-18 trunk"),
        Preset("maskrcnn_resnet34_fpn", 34, False, 1e-5, "v1 heads on a ResNet-34 trunk"),
        Preset("maskrcnn_resnet101_fpn", 101, False, 1e-5, "v1 heads on a ResNet-101 trunk"),
        Preset(
            "shapes", 18, False, 1e-5, "small R18-FPN trained on maskrt's synthetic shapes (embedded weights)",
            trunk_width=24, fpn_width=64, representation=256, mask_channels=64, anchor_sizes=(16, 32, 64, 128, 256),
            num_classes=len(SHAPES_CLASSES), class_names=SHAPES_CLASSES, input_size=(384, 384),
            defaults=dict(min_size=320, max_size=384, rpn_pre_nms_top_n_train=400, rpn_post_nms_top_n_train=200,
                          rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=300, box_batch_size_per_image=128,
                          box_detections_per_img=50),
            weights="shapes.safetensors",
        ),
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


def get_preset(name: str) -> Preset:
    if not isinstance(name, str) or name not in PRESETS:
        raise MaskrtError(f"unknown model {name!r}; choose one of: {', '.join(list_presets())}")
    return PRESETS[name]


#: More classes than this is a typo, not a dataset (LVIS has 1203).
MAX_CLASSES = 100_000


def _check_limits(min_size, max_size) -> None:
    """Refuse resize limits that are not positive integers (0 would be taken as 'default' or crash the resize)."""
    from maskrt.core.parsing import MAX_SIDE

    for option, value in (("--min-size", min_size), ("--max-size", max_size)):
        values = value if isinstance(value, (tuple, list)) else (value,)
        if value is not None and not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
            raise MaskrtError(f"{option} must be a positive number of pixels, got {value!r}")
        if value is not None and max(values) > MAX_SIDE:
            raise MaskrtError(f"{option} {max(values)} is larger than {MAX_SIDE} pixels; give a side in pixels "
                              "(e.g. 800)")


def resolve_sizes(name: Optional[str], input_size=None, min_size: Optional[int] = None,
                  max_size: Optional[int] = None) -> dict:
    """The export canvas and resize limits for a preset: ``{"input_size": (H, W), "min_size", "max_size"}``.

    ``input_size`` defaults to the preset's; the limits default to the preset's own when the canvas is the
    preset's (torchvision's 800/1333 for the COCO presets at 800x1344), otherwise to the canvas's short and long
    sides. Explicit values win.
    """
    _check_limits(min_size, max_size)
    preset = PRESETS.get(name) if name else None
    default_hw = tuple(preset.input_size) if preset else (800, 1344)
    h, w = (int(v) for v in (input_size or default_hw))
    if (h, w) == default_hw:
        cfg = {**MASKRCNN_DEFAULTS, **(preset.defaults if preset else {})}
        base_min, base_max = cfg["min_size"], cfg["max_size"]
    else:
        base_min, base_max = min(h, w), max(h, w)
    return {"input_size": (h, w), "min_size": int(min_size or base_min), "max_size": int(max_size or base_max)}


def build(name: str, *, num_classes: Optional[int] = None, **kwargs: Any) -> MaskRCNN:
    """Build a Mask R-CNN preset with randomly initialised weights.

    Args:
        name: a preset from :func:`list_presets`, e.g. ``"maskrcnn_resnet50_fpn"``.
        num_classes: number of classes including background (>= 2); default: the preset's (91 for COCO).
        **kwargs: torchvision's ``MaskRCNN`` keyword arguments, same meaning and defaults (min_size, max_size,
            image_mean, image_std, rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test, rpn_nms_thresh,
            rpn_score_thresh, box_score_thresh, box_nms_thresh, box_detections_per_img, ...), plus
            ``frozen_bn_eps`` to override the trunk's FrozenBatchNorm2d eps (v1-style presets).

    Returns:
        A :class:`MaskRCNN` in training mode (call ``.eval()`` before inference), as torchvision returns.
    """
    preset = get_preset(name)
    if num_classes is None:
        num_classes = preset.num_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise MaskrtError(f"num_classes must be an integer >= 2 (background plus at least one class), got {num_classes!r}")
    if num_classes > MAX_CLASSES:
        raise MaskrtError(f"num_classes {num_classes} is more than {MAX_CLASSES}; give the number of classes including "
                          "background (91 for COCO)")
    _check_limits(kwargs.get("min_size"), kwargs.get("max_size"))
    unknown = sorted(set(kwargs) - set(MASKRCNN_DEFAULTS) - set(_EXTRA))
    if unknown:
        raise MaskrtError(f"unknown keyword argument(s) for {name}: {', '.join(unknown)}")
    cfg = {**MASKRCNN_DEFAULTS, **_EXTRA, **preset.defaults, **kwargs}
    eps = preset.frozen_bn_eps if cfg["frozen_bn_eps"] is None else float(cfg["frozen_bn_eps"])

    if preset.v2:
        backbone = BackboneWithFPN(preset.depth, nn.BatchNorm2d, nn.BatchNorm2d)
    else:
        backbone = BackboneWithFPN(preset.depth, lambda c: FrozenBatchNorm2d(c, eps=eps), out_channels=preset.fpn_width,
                                   trunk_width=preset.trunk_width)
    width = backbone.out_channels
    anchors = AnchorGenerator(sizes=tuple((s,) for s in preset.anchor_sizes))
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
        box_head = TwoMLPHead(width * 7 * 7, preset.representation)
        mask_head = MaskHead(width, [preset.mask_channels] * 4, 1)
    rep = 1024 if preset.v2 else preset.representation
    mc = 256 if preset.v2 else preset.mask_channels
    roi_heads = RoIHeads(
        box_head, BoxPredictor(rep, num_classes), mask_head, MaskPredictor(mc, mc, num_classes),
        score_thresh=cfg["box_score_thresh"], nms_thresh=cfg["box_nms_thresh"],
        detections_per_img=cfg["box_detections_per_img"], bbox_reg_weights=cfg["bbox_reg_weights"],
        fg_iou_thresh=cfg["box_fg_iou_thresh"], bg_iou_thresh=cfg["box_bg_iou_thresh"],
        batch_size_per_image=cfg["box_batch_size_per_image"], positive_fraction=cfg["box_positive_fraction"],
    )
    model = MaskRCNN(
        backbone, rpn, roi_heads, min_size=cfg["min_size"], max_size=cfg["max_size"], image_mean=cfg["image_mean"],
        image_std=cfg["image_std"], size_divisible=cfg["size_divisible"], fixed_size=cfg["fixed_size"],
        num_classes=num_classes, preset=name,
    )
    if preset.class_names is not None and num_classes == len(preset.class_names):
        model.class_names = list(preset.class_names)
    return model


def load_model(arch: str, weights: Optional[str] = None, random_weights: bool = False,
               num_classes: Optional[int] = None, seed: int = 0, **kwargs: Any) -> MaskRCNN:
    """Build preset ``arch`` in eval mode with ``weights`` (a checkpoint), random weights (seeded), or, when
    neither is given, the preset's embedded weights. ``kwargs`` as for :func:`build`."""
    import torch

    from maskrt.model.checkpoint import load_checkpoint

    preset = get_preset(arch)
    if weights and random_weights:
        raise MaskrtError("pass one of --weights FILE or --random-weights, not both")
    if not weights and not random_weights:
        weights = preset.weights_path()
        if weights is None:
            raise MaskrtError(f"{arch} ships no weights: pass --weights FILE (a checkpoint) or --random-weights")
    torch.manual_seed(seed)
    model = build(arch, num_classes=num_classes, **kwargs)
    if weights:
        load_checkpoint(weights, model)
    return model.eval()
