"""Mask R-CNN in plain PyTorch, equal to torchvision's, with a static-shape deploy forward.

>>> from maskrt.model import build, load_checkpoint
>>> model = build("maskrcnn_resnet50_fpn", num_classes=91).eval()
>>> load_checkpoint("maskrcnn_resnet50_fpn_coco.pth", model)  # doctest: +SKIP
>>> detections = model([image_chw_float_0to1])  # doctest: +SKIP
"""

from maskrt.model.checkpoint import load_checkpoint, read_state_dict, upgrade_state_dict
from maskrt.model.mask_rcnn import DeployMaskRCNN, MaskRCNN
from maskrt.model.presets import PRESETS, build, list_presets

__all__ = [
    "DeployMaskRCNN", "MaskRCNN", "PRESETS", "build", "list_presets", "load_checkpoint", "read_state_dict",
    "upgrade_state_dict",
]
