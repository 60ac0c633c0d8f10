"""Predictor: images in, detections in original-image pixels out, through any runner.

Pre-processing reproduces the model's own transform on uint8 data: the image is resized by
``scale = min(min_size / short_side, max_size / long_side)`` (bilinear, ``align_corners=False``, output size
``floor(side * scale)``), shrunk further if needed to fit the export canvas, rounded to uint8 and placed at the
top-left of a zero canvas of the export size. Post-processing clips boxes to the image's region of the canvas,
scales them back to the original image and pastes the 28x28 mask probabilities into it exactly as
torchvision's ``paste_masks_in_image`` does.

The graph itself sees only the canvas, so where an image fills part of it, proposals and NMS see boxes that
may reach into the zero padding before the final clip; an image that fills the canvas gives exactly the eager
model's detections.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from maskrt.errors import MaskrtError
from maskrt.model.transform import paste_masks, resize_boxes
from maskrt.ops.boxes import clip_boxes_to_image

ImageLike = Union[str, os.PathLike, np.ndarray, Tensor]


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


@dataclass
class Prepared:
    """One image on the export canvas: ``canvas`` uint8 (3, H, W), its resized size and original size."""

    canvas: Tensor
    resized: tuple[int, int]
    original: tuple[int, int]
    source: str


def to_uint8_chw(image: ImageLike) -> tuple[Tensor, str]:
    """Accept a path, an HWC/HW uint8 numpy array (RGB) or a CHW uint8 tensor; return (3, H, W) uint8."""
    from maskrt.data.images import read_image

    if isinstance(image, (str, os.PathLike)):
        return read_image(image), os.fspath(image)
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise MaskrtError(f"a numpy image must be HxW or HxWx3 RGB, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            raise MaskrtError(f"a numpy image must be uint8, got {arr.dtype}")
        return torch.from_numpy(np.ascontiguousarray(arr[..., :3])).permute(2, 0, 1).contiguous(), "array"
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
            raise MaskrtError(f"a tensor image must be (3, H, W) uint8, got {tuple(image.shape)} {image.dtype}")
        return image, "tensor"
    raise MaskrtError(f"cannot use {type(image).__name__} as an image; pass a path, a numpy array or a tensor")


def resize_scale(height: int, width: int, min_size: int, max_size: int, canvas: Sequence[int]) -> float:
    scale = min(min_size / min(height, width), max_size / max(height, width))
    if math.floor(height * scale) > canvas[0] or math.floor(width * scale) > canvas[1]:
        scale = min(canvas[0] / height, canvas[1] / width)
    return scale


def prepare(image: Tensor, meta, source: str = "") -> Prepared:
    """Resize a (3, h, w) uint8 image as the model's transform does and place it on the export canvas."""
    h, w = int(image.shape[1]), int(image.shape[2])
    canvas_h, canvas_w = meta.input_size
    scale = resize_scale(h, w, meta.min_size, meta.max_size, (canvas_h, canvas_w))
    if scale == 1.0:
        resized = image
    else:
        x = F.interpolate(image[None].float(), scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
                          align_corners=False)[0]
        resized = x.round_().clamp_(0, 255).to(torch.uint8)
    rh, rw = int(resized.shape[1]), int(resized.shape[2])
    canvas = torch.zeros((3, canvas_h, canvas_w), dtype=torch.uint8)
    canvas[:, :rh, :rw] = resized[:, : min(rh, canvas_h), : min(rw, canvas_w)]
    return Prepared(canvas, (min(rh, canvas_h), min(rw, canvas_w)), (h, w), source)


def postprocess(outputs: dict, index: int, prep: Prepared, class_names: Sequence[str],
                score_threshold: float = 0.0) -> Detections:
    """Turn row ``index`` of a runner's outputs into :class:`Detections` for the original image."""
    n = int(outputs["num_detections"][index])
    scores = outputs["scores"][index, :n].float().cpu()
    keep = torch.where(scores >= score_threshold)[0] if score_threshold > 0 else torch.arange(n)
    boxes = outputs["boxes"][index, :n].float().cpu()[keep]
    labels = outputs["labels"][index, :n].long().cpu()[keep]
    masks = outputs["masks"][index, :n].float().cpu()[keep]
    # The graph clips boxes to the whole canvas; the image may fill only part of it (the rest is padding),
    # so clip to the image's own region as the eager model does before scaling back.
    boxes = clip_boxes_to_image(boxes, prep.resized)
    boxes = resize_boxes(boxes, prep.resized, prep.original)
    full = paste_masks(masks[:, None], boxes, prep.original)[:, 0]
    names = [class_names[i] if 0 <= i < len(class_names) else str(i) for i in labels.tolist()]
    return Detections(boxes, scores[keep], labels, names, full, prep.original, prep.source)


class Predictor:
    """Images -> :class:`Detections` through a runner.

    Args:
        runner: a :class:`maskrt.runtime.runners.Runner` (activated by the Predictor when used as a context
            manager or on first call).
        score_threshold: drop detections below this score (on top of the model's own threshold).
    """

    def __init__(self, runner, score_threshold: float = 0.0):
        if runner.meta is None:
            raise MaskrtError("the runner's model has no maskrt metadata; the Predictor needs it (see `maskrt export`)")
        self.runner = runner
        self.meta = runner.meta
        self.score_threshold = float(score_threshold)

    def __enter__(self):
        self.runner.activate()
        return self

    def __exit__(self, *exc):
        self.runner.deactivate()

    def predict(self, images: Iterable[ImageLike]) -> list[Detections]:
        """Detections for every image, in order. Batches to the runner's batch size, padding the last batch."""
        return [d for d in self.predict_iter(images)]

    def predict_iter(self, images: Iterable[ImageLike]):
        self.runner.activate()
        batch = self.runner.batch or 1
        pending: list[Prepared] = []
        for image in images:
            tensor, source = to_uint8_chw(image)
            pending.append(prepare(tensor, self.meta, source))
            if len(pending) == batch:
                yield from self._run(pending, batch)
                pending = []
        if pending:
            yield from self._run(pending, batch)

    def _run(self, prepared: list[Prepared], batch: int):
        canvases = [p.canvas for p in prepared]
        fixed = self.runner.batch
        if fixed is not None:
            canvases += [torch.zeros_like(canvases[0])] * (fixed - len(canvases))
        outputs = self.runner.infer({"images": torch.stack(canvases)})
        for i, prep in enumerate(prepared):
            yield postprocess(outputs, i, prep, self.meta.class_names, self.score_threshold)
