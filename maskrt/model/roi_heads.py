"""Box and mask branches (inference) with fixed output shapes.

Box branch: multi-level RoI Align (7x7, sampling 2) of the proposals, box head, class logits and per-class
deltas (weights 10, 10, 5, 5); softmax; per-class boxes clipped to the image; background dropped; candidates
with score > ``score_thresh`` and sides >= 1e-2 go through per-class NMS (``nms_thresh``); the best
``detections_per_img`` are kept. Mask branch: RoI Align (14x14) of the detections, mask head, per-class
28x28 logits, the detected class's channel through a sigmoid.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskrt.model.box_coder import BoxCoder
from maskrt.model.rpn import clip_to_sizes, side_at_least
from maskrt.ops import library as _library  # noqa: F401  (registers torch.ops.maskrt.*)
from maskrt.ops.select import topk_stable


def _rois(boxes: Tensor) -> Tensor:
    """(B, N, 4) -> (B*N, 5) with the batch index in front."""
    b, n = boxes.shape[:2]
    ids = torch.arange(b, dtype=boxes.dtype, device=boxes.device)[:, None, None].expand(b, n, 1)
    return torch.cat([ids, boxes], dim=2).reshape(b * n, 5)


class RoIHeads(nn.Module):
    def __init__(self, box_head: nn.Module, box_predictor: nn.Module, mask_head: nn.Module, mask_predictor: nn.Module,
                 *, score_thresh: float = 0.05, nms_thresh: float = 0.5, detections_per_img: int = 100,
                 bbox_reg_weights: Optional[Sequence[float]] = None, box_output_size: int = 7,
                 mask_output_size: int = 14, sampling_ratio: int = 2, fg_iou_thresh: float = 0.5,
                 bg_iou_thresh: float = 0.5, batch_size_per_image: int = 512, positive_fraction: float = 0.25):
        super().__init__()
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.mask_head = mask_head
        self.mask_predictor = mask_predictor
        self.box_coder = BoxCoder(tuple(bbox_reg_weights) if bbox_reg_weights is not None else (10.0, 10.0, 5.0, 5.0))
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.box_output_size = box_output_size
        self.mask_output_size = mask_output_size
        self.sampling_ratio = sampling_ratio
        self.fg_iou_thresh = fg_iou_thresh
        self.bg_iou_thresh = bg_iou_thresh
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def pool(self, features: Sequence[Tensor], scales: Sequence[float], boxes: Tensor, size: int) -> Tensor:
        """Multi-level RoI Align of (B, N, 4) boxes -> (B*N, C, size, size), in the features' dtype.

        Pooling itself runs in fp32: box coordinates need more precision than fp16 has at image scale. The
        features come with each image's edge replicated once when a valid region is known (see :meth:`forward`).
        """
        maps = list(features)
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            maps = [f.float() for f in maps]  # the exported RoiAlign runs in fp32 (strongly typed engines)
        # Otherwise the op reads fp16 maps itself and samples in fp32 (no fp32 copy of the pyramid per call).
        pooled = torch.ops.maskrt.multilevel_roi_align(
            maps, _rois(boxes.float()), list(scales), size, size, self.sampling_ratio, False, "avg", 224, 4,
        )
        return pooled.to(features[0].dtype)

    def forward(self, features: Sequence[Tensor], scales: Sequence[float], proposals: Tensor, proposal_valid: Tensor,
                image_sizes: Tensor, region=None) -> dict[str, Tensor]:
        """Detections for a batch.

        Args:
            features: the FPN maps used for pooling (P2..P5), finest first, (B, C, Hi, Wi).
            scales: their feature-pixels-per-image-pixel, e.g. [1/4, 1/8, 1/16, 1/32].
            proposals: (B, R, 4) XYXY; proposal_valid: (B, R) bool.
            image_sizes: (B, 2) int64 (height, width) that boxes are clipped to.
            region: a :class:`maskrt.model.region.ValidRegion` (deploy): RoI Align's taps at an image's edge read
                its last row and column, as they would on the image alone.

        Returns:
            ``boxes`` (B, K, 4), ``scores`` (B, K), ``labels`` (B, K) int64, ``masks`` (B, K, M, M) probabilities,
            ``num_detections`` (B,) int64, with K = detections_per_img; entries past num_detections are zeros.
        """
        b, r = proposals.shape[:2]
        if region is not None:
            features = [region.replicate_edge(f) for f in features]
        x = self.box_head(self.pool(features, scales, proposals, self.box_output_size))
        class_logits, box_regression = (t.float() for t in self.box_predictor(x))
        num_classes = class_logits.shape[-1]
        boxes = self.box_coder.decode(box_regression, proposals.reshape(b * r, 4)).reshape(b, r, num_classes, 4)
        boxes = clip_to_sizes(boxes, image_sizes)
        scores = F.softmax(class_logits, -1).reshape(b, r, num_classes)
        labels = torch.arange(num_classes, device=scores.device).view(1, 1, -1).expand(b, r, num_classes)
        # Drop the background class, then flatten proposal-major as the reference does.
        boxes = boxes[:, :, 1:].reshape(b, -1, 4)
        scores = scores[:, :, 1:].reshape(b, -1)
        labels = labels[:, :, 1:].reshape(b, -1)
        valid = proposal_valid[:, :, None].expand(b, r, num_classes - 1).reshape(b, -1)
        valid = valid & (scores > self.score_thresh) & side_at_least(boxes, 1e-2)
        keep = torch.ops.maskrt.batched_nms_mask(boxes, scores, labels, valid, self.nms_thresh, num_classes,
                                                 self.detections_per_img)
        ranked = torch.where(keep, scores, torch.full_like(scores, -1.0))
        k = min(self.detections_per_img, ranked.shape[1])
        top, order = topk_stable(ranked, k, dim=1)
        det_valid = top >= 0
        det_boxes = torch.gather(boxes, 1, order[..., None].expand(-1, -1, 4))
        det_labels = torch.gather(labels, 1, order)
        det_boxes = torch.where(det_valid[..., None], det_boxes, torch.zeros_like(det_boxes))
        det_scores = torch.where(det_valid, top, torch.zeros_like(top))
        det_labels = torch.where(det_valid, det_labels, torch.zeros_like(det_labels))

        m = self.mask_predictor(self.mask_head(self.pool(features, scales, det_boxes, self.mask_output_size))).float()
        index = det_labels.reshape(-1)[:, None, None, None].expand(-1, 1, m.shape[-2], m.shape[-1])
        masks = torch.gather(m, 1, index).sigmoid().reshape(b, k, m.shape[-2], m.shape[-1])
        masks = torch.where(det_valid[..., None, None], masks, torch.zeros_like(masks))
        if k < self.detections_per_img:
            pad = self.detections_per_img - k
            det_boxes = F.pad(det_boxes, (0, 0, 0, pad))
            det_scores = F.pad(det_scores, (0, pad))
            det_labels = F.pad(det_labels, (0, pad))
            masks = F.pad(masks, (0, 0, 0, 0, 0, pad))
        return {
            "boxes": det_boxes,
            "scores": det_scores,
            "labels": det_labels,
            "masks": masks,
            "num_detections": det_valid.sum(dim=1),
        }
