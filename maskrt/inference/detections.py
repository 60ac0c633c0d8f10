"""``Detections``: what the Predictor returns for one image."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Detections:
    """Detections of one image, in its original pixels.

    boxes: (N, 4) float32 XYXY; scores: (N,) float32; labels: (N,) int64; names: the labels' class names;
    masks: (N, H, W) float32 probabilities (threshold at 0.5 for binary masks); image_size: (H, W).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    names: list[str]
    masks: Tensor
    image_size: tuple[int, int]
    source: str = ""

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def binary_masks(self, threshold: float = 0.5) -> Tensor:
        return self.masks > threshold
