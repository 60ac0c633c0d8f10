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
from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from maskrt.core.errors import MaskrtError
from maskrt.core.metadata import ModelMeta
from maskrt.data.images import DEFAULT_MAX_PIXELS, read_image
from maskrt.inference.detections import Detections
from maskrt.model.transform import paste_masks, resize_boxes
from maskrt.ops.boxes import clip_boxes_to_image

ImageLike = Union[str, os.PathLike, np.ndarray, Tensor]


@dataclass
class Prepared:
    """One image on the export canvas: ``canvas`` uint8 (3, H, W), its resized size and original size."""

    canvas: Tensor
    resized: tuple[int, int]
    original: tuple[int, int]
    source: str


def to_uint8_chw(image: ImageLike, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> tuple[Tensor, str]:
    """Accept a path, an HWC/HW uint8 numpy array (RGB) or a CHW uint8 tensor; return ((3, H, W) uint8, source).

    Files are read upright (EXIF orientation applied) and refused above ``max_pixels`` pixels (None: no limit).
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, max_pixels), os.fspath(image)
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


@dataclass
class Batch:
    """Prepared images and the runner feeds they make (the last batch of a fixed-batch runner is padded)."""

    prepared: list[Prepared]
    feeds: dict


def make_batch(prepared: Sequence[Prepared], fixed_batch: Optional[int] = None) -> Batch:
    """Stack prepared canvases into ``{"images": (B, 3, H, W)}``; pad with blank canvases up to ``fixed_batch``."""
    canvases = [p.canvas for p in prepared]
    if fixed_batch is not None:
        if len(canvases) > fixed_batch:
            raise MaskrtError(f"{len(canvases)} images for a model that takes batch {fixed_batch}")
        canvases += [torch.zeros_like(canvases[0])] * (fixed_batch - len(canvases))
    return Batch(list(prepared), {"images": torch.stack(canvases)})


def postprocess_batch(outputs: dict, batch: Batch, class_names: Sequence[str],
                      score_threshold: float = 0.0) -> list[Detections]:
    """:func:`postprocess` for every real image of ``batch`` (padding rows are dropped)."""
    return [postprocess(outputs, i, prep, class_names, score_threshold) for i, prep in enumerate(batch.prepared)]


class Predictor:
    """Images -> :class:`Detections` through a runner.

    Args:
        runner: a :class:`maskrt.backends.base.Runner` (activated by the Predictor when used as a context
            manager or on first call).
        score_threshold: drop detections below this score (on top of the model's own threshold).
        batch: images per runner call for a dynamic-batch runner (default 1); a fixed-batch runner always gets
            its own batch size (the last batch padded).
        max_pixels: image files with more pixels are refused (a guard against decompression bombs); None: the
            default limit (:data:`maskrt.data.images.DEFAULT_MAX_PIXELS`).
    """

    def __init__(self, runner, score_threshold: float = 0.0, batch: Optional[int] = None,
                 max_pixels: Optional[int] = None):
        if runner.meta is None:
            raise MaskrtError("the runner's model has no maskrt metadata; the Predictor needs it (see `maskrt export`)")
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise MaskrtError(f"batch must be a positive integer, got {batch!r}")
        self.runner = runner
        self.meta: ModelMeta = runner.meta
        self.score_threshold = float(score_threshold)
        self.max_pixels = max_pixels or DEFAULT_MAX_PIXELS
        self._batch = batch

    @property
    def batch(self) -> int:
        """Images per runner call."""
        return self.runner.batch or self._batch or 1

    def __enter__(self):
        self.runner.activate()
        return self

    def __exit__(self, *exc):
        self.runner.deactivate()

    def predict(self, images: Iterable[ImageLike]) -> list[Detections]:
        """Detections for every image, in order."""
        return list(self.predict_iter(images))

    def predict_iter(self, images: Iterable[ImageLike]) -> Iterator[Detections]:
        """Detections image by image, in order, ``batch`` images per runner call."""
        self.runner.activate()
        pending: list[Prepared] = []
        for image in images:
            tensor, source = self.load(image)
            pending.append(prepare(tensor, self.meta, source))
            if len(pending) == self.batch:
                yield from self.run(pending)
                pending = []
        if pending:
            yield from self.run(pending)

    def load(self, image: ImageLike) -> tuple[Tensor, str]:
        """An image (path, array or tensor) as ((3, H, W) uint8, source), read as the Predictor reads it."""
        return to_uint8_chw(image, self.max_pixels)

    def run(self, prepared: Sequence[Prepared]) -> list[Detections]:
        """One runner call on images already prepared (at most ``batch`` of them)."""
        batch = make_batch(prepared, self.runner.batch)
        outputs = self.runner.infer(batch.feeds)
        return postprocess_batch(outputs, batch, self.meta.class_names, self.score_threshold)
