"""``Detections``: what the Predictor returns for one image, with masks kept per box until they are asked for."""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor

from maskrt.model.transform import paste_masks, pasted_crops


class Detections:
    """Detections of one image, in its original pixels.

    Attributes:
        boxes: (N, 4) float32 XYXY; scores: (N,) float32; labels: (N,) int64; names: the labels' class names;
        mask_probs: (N, M, M) float32 per-box mask probabilities (M = 28), as the model outputs them;
        image_size: (H, W) of the original image; source: where the image came from.

    ``masks`` pastes ``mask_probs`` into the image on first access ((N, H, W) float probabilities, exactly as
    torchvision's ``paste_masks_in_image``) and keeps the result; until then a detection costs a few KB instead of
    H x W x 4 bytes. :meth:`iter_binary_masks`, :meth:`binary_masks` and the COCO/drawing helpers paste one box at
    a time without keeping the float masks. Tensors live on the device the runner put them on (CUDA for a runner
    on CUDA) until :meth:`to` / :meth:`cpu` moves them.
    """

    def __init__(self, boxes: Tensor, scores: Tensor, labels: Tensor, names: Sequence[str], mask_probs: Tensor,
                 image_size: tuple[int, int], source: str = "", masks: Optional[Tensor] = None):
        self.boxes = boxes
        self.scores = scores
        self.labels = labels
        self.names = list(names)
        self.mask_probs = mask_probs
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.source = source
        self._masks = masks

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __repr__(self) -> str:
        return (f"Detections({len(self)} of {self.source or 'an image'}, {self.image_size[0]}x{self.image_size[1]}, "
                f"device {self.boxes.device})")

    @property
    def device(self) -> torch.device:
        return self.boxes.device

    @property
    def masks(self) -> Tensor:
        """(N, H, W) float32 mask probabilities in the original image (pasted on first access, then kept)."""
        if self._masks is None:
            self._masks = paste_masks(self.mask_probs[:, None], self.boxes, self.image_size)[:, 0]
        return self._masks

    @property
    def has_full_masks(self) -> bool:
        """True once :attr:`masks` has been pasted (and is held in memory)."""
        return self._masks is not None

    def iter_mask_crops(self) -> Iterator[tuple[Tensor, int, int]]:
        """Each detection's pasted mask cut to its box and the image: ``(crop, top, left)``, crop (h, w) float32
        holding exactly the values of :attr:`masks` there (zero elsewhere). Costs the box's pixels, not the
        image's: COCO RLE and drawing work from these. Once :attr:`masks` is held (pasted, or given), each crop
        is the whole mask."""
        if self._masks is not None:
            for m in self._masks:
                yield m, 0, 0
            return
        yield from pasted_crops(self.mask_probs[:, None], self.boxes, self.image_size)

    def iter_binary_masks(self, threshold: float = 0.5) -> Iterator[Tensor]:
        """Each detection's (H, W) bool mask in turn, pasted one at a time (the float masks are never all held)."""
        if self._masks is not None:
            for m in self._masks:
                yield m > threshold
            return
        h, w = self.image_size
        for crop, top, left in self.iter_mask_crops():
            full = torch.zeros((h, w), dtype=torch.bool, device=self.device)
            full[top : top + crop.shape[0], left : left + crop.shape[1]] = crop > threshold
            yield full

    def binary_masks(self, threshold: float = 0.5) -> Tensor:
        """(N, H, W) bool masks (one byte per pixel, pasted box by box)."""
        h, w = self.image_size
        out = torch.zeros((len(self), h, w), dtype=torch.bool, device=self.device)
        for i, m in enumerate(self.iter_binary_masks(threshold)):
            out[i] = m
        return out

    def select(self, keep: Tensor) -> Detections:
        """The detections at ``keep`` (indices or a bool mask)."""
        idx = torch.where(keep)[0] if keep.dtype == torch.bool else keep
        names = [self.names[i] for i in idx.tolist()]
        masks = self._masks[idx] if self._masks is not None else None
        return Detections(self.boxes[idx], self.scores[idx], self.labels[idx], names, self.mask_probs[idx],
                          self.image_size, self.source, masks)

    def to(self, device) -> Detections:
        masks = self._masks.to(device) if self._masks is not None else None
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device), self.names,
                          self.mask_probs.to(device), self.image_size, self.source, masks)

    def cpu(self) -> Detections:
        return self.to("cpu")

    def nbytes(self) -> int:
        """Bytes the tensors hold now (the pasted masks included once asked for)."""
        tensors = [self.boxes, self.scores, self.labels, self.mask_probs] + ([self._masks] if self._masks is not None else [])
        return sum(t.element_size() * t.nelement() for t in tensors)
