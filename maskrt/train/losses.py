"""Training-mode losses of Mask R-CNN, as torchvision defines them.

* RPN: anchors are matched to ground-truth boxes by IoU (>= ``fg_iou_thresh`` positive, < ``bg_iou_thresh``
  negative, in between ignored; every ground-truth box also claims the anchors that overlap it best, even below
  the threshold). ``batch_size_per_image`` anchors per image are sampled with at most ``positive_fraction``
  positives. Objectness: binary cross-entropy over the sampled anchors. Boxes: smooth L1 (beta 1/9, summed)
  of the positives' deltas (weights 1, 1, 1, 1), divided by the number of sampled anchors in the batch.
* Box head: the RPN's proposals (detached) plus the ground-truth boxes are matched at IoU 0.5; a proposal
  takes its box's class or background; ``batch_size_per_image`` per image are sampled with at most
  ``positive_fraction`` foreground. Classification: cross-entropy. Boxes: smooth L1 (beta 1/9, summed) of the
  foreground proposals' deltas for their own class (weights 10, 10, 5, 5), divided by the number of sampled
  proposals.
* Mask head: on the foreground proposals only; the target is the matched instance's mask RoI-Aligned onto the
  proposal (M x M, adaptive sampling, ``aligned=False``); binary cross-entropy on the logits of the proposal's
  class.

Ground truth, per image, in the pixels of the network input (after resizing): ``boxes`` (G, 4) float XYXY,
``labels`` (G,) int64 in [1, num_classes), ``masks`` (G, H, W) float in [0, 1].
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from maskrt.model.mask_rcnn import POOLED_LEVELS, MaskRCNN
from maskrt.model.rpn import flatten_level
from maskrt.ops.boxes import box_iou
from maskrt.ops.poolers import infer_scale, multilevel_roi_align
from maskrt.ops.roi_align import roi_align

BELOW_LOW = -1
BETWEEN = -2


def match(iou: Tensor, high: float, low: float, allow_low_quality: bool) -> Tensor:
    """For each of the N candidates in ``iou`` (G, N), the index of its best ground truth, or -1 (best IoU below
    ``low``), or -2 (between ``low`` and ``high``).

    With ``allow_low_quality`` every candidate whose IoU with some ground truth equals that ground truth's best
    IoU keeps its own best match, whatever the thresholds say.
    """
    if iou.shape[0] == 0:
        return torch.full((iou.shape[1],), BELOW_LOW, dtype=torch.int64, device=iou.device)
    best, matches = iou.max(dim=0)
    original = matches.clone()
    matches[best < low] = BELOW_LOW
    matches[(best >= low) & (best < high)] = BETWEEN
    if allow_low_quality:
        best_per_gt = iou.max(dim=1).values
        candidates = torch.where(iou == best_per_gt[:, None])[1]
        matches[candidates] = original[candidates]
    return matches


def sample(labels: Tensor, batch_size: int, positive_fraction: float, generator: Optional[torch.Generator] = None
           ) -> tuple[Tensor, Tensor]:
    """Random positives (labels >= 1) and negatives (labels == 0) for one image: index tensors.

    At most ``batch_size * positive_fraction`` positives; negatives fill the rest of ``batch_size``.
    """
    positive = torch.where(labels >= 1)[0]
    negative = torch.where(labels == 0)[0]
    num_pos = min(int(batch_size * positive_fraction), positive.numel())
    num_neg = min(batch_size - num_pos, negative.numel())
    pos = positive[torch.randperm(positive.numel(), generator=generator)[:num_pos].to(positive.device)]
    neg = negative[torch.randperm(negative.numel(), generator=generator)[:num_neg].to(negative.device)]
    return pos, neg


def rpn_losses(model: MaskRCNN, logits: Sequence[Tensor], deltas: Sequence[Tensor], anchors: Sequence[Tensor],
               targets: Sequence[dict], generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
    """``loss_objectness`` and ``loss_rpn_box_reg`` from the RPN head's per-level outputs."""
    rpn = model.rpn
    flat = [flatten_level(o, d) for o, d in zip(logits, deltas)]
    obj = torch.cat([f[0] for f in flat], dim=1)
    reg = torch.cat([f[1] for f in flat], dim=1)
    all_anchors = torch.cat(list(anchors), dim=0)
    sampled_obj, sampled_labels, pos_reg, pos_targets = [], [], [], []
    for b, target in enumerate(targets):
        gt = target["boxes"]
        matches = match(box_iou(gt, all_anchors), rpn.fg_iou_thresh, rpn.bg_iou_thresh, allow_low_quality=True)
        labels = (matches >= 0).to(torch.float32)
        labels[matches == BETWEEN] = -1.0
        pos, neg = sample(labels, rpn.batch_size_per_image, rpn.positive_fraction, generator)
        idx = torch.cat([pos, neg])
        sampled_obj.append(obj[b, idx])
        sampled_labels.append(labels[idx])
        if pos.numel():
            pos_reg.append(reg[b, pos])
            pos_targets.append(rpn.box_coder.encode(gt[matches[pos]], all_anchors[pos]))
    sampled_obj = torch.cat(sampled_obj)
    count = max(sampled_obj.numel(), 1)
    loss_obj = F.binary_cross_entropy_with_logits(sampled_obj, torch.cat(sampled_labels))
    if pos_reg:
        loss_box = F.smooth_l1_loss(torch.cat(pos_reg), torch.cat(pos_targets), beta=1 / 9, reduction="sum") / count
    else:
        loss_box = reg.sum() * 0.0
    return {"loss_objectness": loss_obj, "loss_rpn_box_reg": loss_box}


def roi_losses(model: MaskRCNN, features: Sequence[Tensor], scales: Sequence[float], proposals: Tensor,
               valid: Tensor, targets: Sequence[dict], generator: Optional[torch.Generator] = None
               ) -> dict[str, Tensor]:
    """``loss_classifier``, ``loss_box_reg`` and ``loss_mask`` on sampled proposals."""
    heads = model.roi_heads
    rois, labels, reg_targets, pos_rois, pos_masks = [], [], [], [], []
    for b, target in enumerate(targets):
        gt_boxes, gt_labels = target["boxes"], target["labels"]
        props = torch.cat([proposals[b][valid[b]], gt_boxes])
        matches = match(box_iou(gt_boxes, props), heads.fg_iou_thresh, heads.bg_iou_thresh, allow_low_quality=False)
        img_labels = gt_labels[matches.clamp(min=0)] if gt_boxes.numel() else torch.zeros_like(matches)
        img_labels = torch.where(matches == BELOW_LOW, torch.zeros_like(img_labels), img_labels)
        img_labels = torch.where(matches == BETWEEN, torch.full_like(img_labels, -1), img_labels)
        pos, neg = sample(img_labels, heads.batch_size_per_image, heads.positive_fraction, generator)
        idx = torch.cat([pos, neg])
        chosen = props[idx]
        rois.append(torch.cat([torch.full_like(chosen[:, :1], b), chosen], dim=1))
        labels.append(img_labels[idx])
        if pos.numel():
            matched = matches[pos]
            reg_targets.append(heads.box_coder.encode(gt_boxes[matched], props[pos]))
            pos_rois.append(torch.cat([torch.full_like(props[pos][:, :1], b), props[pos]], dim=1))
            # Project the matched instances' masks onto the proposals: RoI Align with the instance as batch index.
            mask_rois = torch.cat([matched[:, None].to(props.dtype), props[pos]], dim=1)
            size = 2 * heads.mask_output_size
            pos_masks.append(roi_align(target["masks"][:, None].to(props.dtype), mask_rois, (size, size), 1.0, 0,
                                       False)[:, 0])
        else:
            reg_targets.append(proposals.new_zeros((0, 4)))
    rois = torch.cat(rois)
    labels = torch.cat(labels)
    pooled = multilevel_roi_align(features, rois, heads.box_output_size, heads.sampling_ratio, scales=scales)
    class_logits, box_regression = heads.box_predictor(heads.box_head(pooled))
    loss_cls = F.cross_entropy(class_logits, labels)
    fg = torch.where(labels > 0)[0]
    box_regression = box_regression.reshape(box_regression.shape[0], -1, 4)
    if fg.numel():
        loss_box = F.smooth_l1_loss(box_regression[fg, labels[fg]], torch.cat(reg_targets), beta=1 / 9,
                                    reduction="sum") / labels.numel()
    else:
        loss_box = box_regression.sum() * 0.0
    if pos_rois:
        pos_rois = torch.cat(pos_rois)
        pos_labels = labels[fg]  # positives come first in each image's sample, in the same order as pos_rois
        pooled_masks = multilevel_roi_align(features, pos_rois, heads.mask_output_size, heads.sampling_ratio,
                                            scales=scales)
        mask_logits = heads.mask_predictor(heads.mask_head(pooled_masks))
        picked = mask_logits[torch.arange(pos_labels.numel(), device=mask_logits.device), pos_labels]
        loss_mask = F.binary_cross_entropy_with_logits(picked, torch.cat(pos_masks))
    else:
        loss_mask = sum(p.sum() for p in heads.mask_predictor.parameters()) * 0.0
    return {"loss_classifier": loss_cls, "loss_box_reg": loss_box, "loss_mask": loss_mask}


def training_losses(model: MaskRCNN, batch: Tensor, image_sizes: Sequence[Sequence[int]], targets: Sequence[dict],
                    generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
    """All five Mask R-CNN losses for a normalised, padded batch.

    Args:
        model: a :class:`MaskRCNN` (its trunk may use trainable BatchNorm2d, see :func:`maskrt.train.trainable`).
        batch: (B, 3, H, W) normalised float, H and W multiples of ``size_divisible``.
        image_sizes: B pairs (height, width) of each image's valid region.
        targets: B dicts of ``boxes``, ``labels``, ``masks`` in the batch's pixels (see the module doc).
    """
    features = list(model.backbone(batch).values())
    logits, deltas = model.rpn.head(features)
    anchors = model.rpn.anchor_generator(batch.shape[-2:], [f.shape[-2:] for f in features], torch.float32,
                                         batch.device)
    losses = rpn_losses(model, logits, deltas, anchors, targets, generator)
    sizes = torch.tensor([[int(h), int(w)] for h, w in image_sizes], dtype=torch.int64, device=batch.device)
    with torch.no_grad():
        proposals, valid = model.rpn.propose(
            [t.detach() for t in logits], [t.detach() for t in deltas], anchors, sizes,
            model.rpn.pre_nms_top_n_train, model.rpn.post_nms_top_n_train,
        )
    largest = (max(int(s[0]) for s in image_sizes), max(int(s[1]) for s in image_sizes))
    pooled = features[:POOLED_LEVELS]
    scales = [infer_scale(f.shape[-2:], largest) for f in pooled]
    losses.update(roi_losses(model, pooled, scales, proposals, valid, targets, generator))
    return losses
