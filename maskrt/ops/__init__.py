"""Detection ops in vectorised PyTorch with torchvision's call conventions.

RoIs are (K, 5) ``[batch_index, x1, y1, x2, y2]`` tensors or lists of per-image (Ki, 4) XYXY boxes; boxes are
in image pixels and ``spatial_scale`` maps them onto the feature map.
"""

from maskrt.ops.boxes import box_area, box_iou, clip_boxes_to_image, remove_small_boxes
from maskrt.ops.nms import batched_nms, nms
from maskrt.ops.poolers import MultiLevelRoIAlign, infer_scale, level_of_box, multilevel_roi_align
from maskrt.ops.roi_align import RoIAlign, convert_boxes_to_rois, roi_align
from maskrt.ops.roi_pool import RoIPool, roi_pool

__all__ = [
    "MultiLevelRoIAlign", "RoIAlign", "RoIPool", "batched_nms", "box_area", "box_iou", "clip_boxes_to_image",
    "convert_boxes_to_rois", "infer_scale", "level_of_box", "multilevel_roi_align", "nms", "remove_small_boxes",
    "roi_align", "roi_pool",
]
