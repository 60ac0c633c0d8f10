"""Region Proposal Network (inference), as torchvision's ``RegionProposalNetwork`` but with fixed shapes.

Per image: objectness for every anchor; per level the ``pre_nms_top_n`` best anchors; decode their deltas
(weights 1, 1, 1, 1); sigmoid; clip to the image; drop boxes with a side < 1e-3 and scores below
``score_thresh``; NMS (``nms_thresh``) within each level; keep the ``post_nms_top_n`` best. Proposals come
out as a fixed (B, R, 4) tensor plus a validity mask, so the same code serves the eager and deploy forwards.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from maskrt.model.anchors import AnchorGenerator
from maskrt.model.box_coder import BoxCoder
from maskrt.model.heads import RPNHead
from maskrt.ops import library as _library  # noqa: F401  (registers torch.ops.maskrt.*)
from maskrt.ops.select import topk_stable


def clip_to_sizes(boxes: Tensor, sizes: Tensor) -> Tensor:
    """Clip (B, ..., 4) XYXY boxes to per-image ``sizes`` (B, 2) = (height, width); (1, 2) serves every image."""
    sizes = sizes.to(boxes.dtype)
    # (w, h, w, h) per image, broadcast over the middle dimensions: one maximum and one minimum for all coordinates
    # (the same min(max(x, 0), bound) per element as coordinate by coordinate).
    bounds = torch.stack((sizes[:, 1], sizes[:, 0], sizes[:, 1], sizes[:, 0]), dim=-1)
    bounds = bounds.reshape((-1,) + (1,) * (boxes.dim() - 2) + (4,))
    zero = torch.zeros((), dtype=boxes.dtype, device=boxes.device)
    return torch.minimum(torch.maximum(boxes, zero), bounds)


def flatten_level(logits: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
    """One level's (B, A, H, W) objectness and (B, 4A, H, W) deltas -> (B, H*W*A) and (B, H*W*A, 4):
    location-major, anchor-minor, matching the anchor order."""
    batch = logits.shape[0]
    obj = logits.permute(0, 2, 3, 1).reshape(batch, -1)
    dl = deltas.reshape(batch, -1, 4, deltas.shape[-2], deltas.shape[-1]).permute(0, 3, 4, 1, 2).reshape(batch, -1, 4)
    return obj, dl


def side_at_least(boxes: Tensor, min_size: float) -> Tensor:
    """(...) bool: both sides of each XYXY box are at least ``min_size``."""
    ok = (boxes[..., 2:] - boxes[..., :2]) >= min_size
    return ok[..., 0] & ok[..., 1]


class RegionProposalNetwork(nn.Module):
    def __init__(self, anchor_generator: AnchorGenerator, head: RPNHead, *, pre_nms_top_n_test: int = 1000,
                 post_nms_top_n_test: int = 1000, nms_thresh: float = 0.7, score_thresh: float = 0.0,
                 pre_nms_top_n_train: int = 2000, post_nms_top_n_train: int = 2000, fg_iou_thresh: float = 0.7,
                 bg_iou_thresh: float = 0.3, batch_size_per_image: int = 256, positive_fraction: float = 0.5):
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.pre_nms_top_n_test = pre_nms_top_n_test
        self.post_nms_top_n_test = post_nms_top_n_test
        self.pre_nms_top_n_train = pre_nms_top_n_train
        self.post_nms_top_n_train = post_nms_top_n_train
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh
        self.fg_iou_thresh = fg_iou_thresh
        self.bg_iou_thresh = bg_iou_thresh
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.min_size = 1e-3

    def forward(self, features: Sequence[Tensor], padded_size: Sequence[int], image_sizes: Tensor,
                region=None) -> tuple[Tensor, Tensor]:
        """Proposals for a batch.

        Args:
            features: FPN maps, finest first, each (B, C, Hi, Wi).
            padded_size: (H, W) of the padded batch, which sets the anchor strides.
            image_sizes: (B, 2) or (1, 2) int64 (height, width) of each image before padding (one row serves the
                whole batch); proposals are clipped to it.
            region: a :class:`maskrt.model.region.ValidRegion` (deploy): anchors per image as the image alone has
                them, none past its extent.

        Returns:
            proposals (B, R, 4) XYXY sorted by decreasing objectness, and valid (B, R) bool. R is
            ``min(post_nms_top_n, candidates)``; entries past the valid ones are padding.
        """
        logits, deltas = self.head(list(features), region)
        if region is None:
            anchors = self.anchor_generator(padded_size, [f.shape[-2:] for f in features], torch.float32,
                                            features[0].device)
            return self.propose(logits, deltas, anchors, image_sizes)
        bases = [base.to(features[0].device) for base in self.anchor_generator.cell_anchors]
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():  # level by level: follows dynamic map sizes
            grids = [region.anchor_grid(f, base) for f, base in zip(features, bases)]
            anchors, valid = [a for a, _ in grids], [v for _, v in grids]
        else:  # the same anchors from a table kept per map sizes: a dozen operators for all levels
            anchors, valid = region.anchor_grids(features, bases, self.anchor_generator.tables)
        return self.propose(logits, deltas, anchors, image_sizes, anchor_valid=valid, fixed_k=True)

    def propose(self, logits: Sequence[Tensor], deltas: Sequence[Tensor], anchors: Sequence[Tensor], image_sizes: Tensor,
                pre_nms_top_n: Optional[int] = None, post_nms_top_n: Optional[int] = None,
                anchor_valid: Optional[Sequence[Tensor]] = None, fixed_k: bool = False) -> tuple[Tensor, Tensor]:
        """Proposals from the head's per-level outputs and anchors (see :meth:`forward`).

        The top-n counts default to the inference ones; training passes ``pre_nms_top_n_train`` and
        ``post_nms_top_n_train``. ``anchors`` per level are (N, 4) for the whole batch or (B, N, 4) per image;
        ``anchor_valid`` (B, N) marks the anchors that may compete (the others score -inf and stay invalid).
        ``fixed_k``: every level yields exactly ``pre_nms_top_n`` candidates (padded with invalid ones), so the
        top-k sizes do not depend on the image size (graphs with dynamic height and width).
        """
        pre_n = self.pre_nms_top_n_test if pre_nms_top_n is None else pre_nms_top_n
        post_n = self.post_nms_top_n_test if post_nms_top_n is None else post_nms_top_n
        # Selection and box decoding (exp) run in fp32 whatever the network's precision.
        logits = [t.float() for t in logits]
        deltas = [t.float() for t in deltas]
        scores, boxes, levels, usable = [], [], [], []
        for level, (obj, dl, anc) in enumerate(zip(logits, deltas, anchors)):
            obj, dl = flatten_level(obj, dl)
            ok = anchor_valid[level] if anchor_valid is not None else None
            if anc.dim() == 2:
                anc = anc[None].expand(obj.shape[0], -1, -1)
            if ok is not None:
                obj = torch.where(ok, obj, torch.full_like(obj, float("-inf")))
            elif fixed_k:  # every level then has a validity mask, padded or not
                ok = torch.ones_like(obj, dtype=torch.bool)
            # fixed_k: append pre_n never-chosen-first candidates so that top-k of pre_n always exists. Running (not
            # tracing) a level that has pre_n candidates already, the padding could never be chosen before them
            # (the stable top-k prefers lower indices among equal -inf scores) and is skipped: ten operators a level.
            tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
            padded = fixed_k and (tracing or obj.shape[1] < pre_n)
            if padded:
                b = obj.shape[0]
                obj = torch.cat([obj, obj.new_full((b, pre_n), float("-inf"))], dim=1)
                dl = torch.cat([dl, dl.new_zeros((b, pre_n, 4))], dim=1)
                anc = torch.cat([anc, anc.new_zeros((b, pre_n, 4))], dim=1)
                ok = torch.cat([ok,
                                torch.zeros((b, pre_n), dtype=torch.bool, device=obj.device)], dim=1)
            k = pre_n if padded else min(pre_n, obj.shape[1])
            top, idx = topk_stable(obj, k, dim=1)
            sel = torch.gather(dl, 1, idx[..., None].expand(-1, -1, 4))
            ref = torch.gather(anc, 1, idx[..., None].expand(-1, -1, 4))
            boxes.append((sel, ref))
            scores.append(top)
            levels.append(torch.full_like(idx, level))
            if ok is not None:
                usable.append(torch.gather(ok, 1, idx))
        scores = torch.sigmoid(torch.cat(scores, dim=1))
        # Decoded once for all levels (elementwise, so the same values as level by level, in fewer launches).
        sel = torch.cat([d for d, _ in boxes], dim=1)
        ref = torch.cat([a for _, a in boxes], dim=1)
        boxes = clip_to_sizes(self.box_coder.decode(sel, ref)[..., 0, :], image_sizes)
        levels = torch.cat(levels, dim=1)
        valid = side_at_least(boxes, self.min_size) & (scores >= self.score_thresh)
        if usable:
            valid = valid & torch.cat(usable, dim=1)
        # At most post_n boxes per level: no more can be among the post_n best overall (see batched_nms_mask).
        keep = torch.ops.maskrt.batched_nms_mask(boxes, scores, levels, valid, self.nms_thresh, len(logits), post_n)
        ranked = torch.where(keep, scores, torch.full_like(scores, -1.0))
        r = min(post_n, ranked.shape[1])
        top, order = topk_stable(ranked, r, dim=1)
        proposals = torch.gather(boxes, 1, order[..., None].expand(-1, -1, 4))
        return proposals, top >= 0
