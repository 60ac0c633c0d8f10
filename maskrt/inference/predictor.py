"""Predictor: images in, detections in original-image pixels out, through any runner.

Pre-processing reproduces the model's own transform on uint8 data: the image is resized by
``scale = min(min_size / short_side, max_size / long_side)`` (bilinear, ``align_corners=False``, output size
``floor(side * scale)``), rounded to uint8 and placed at the top left of its canvas: the export size, or for a
dynamic-size model its own size padded to ``size_divisible``. Models that take ``image_sizes`` get each image's
size beside it and compute every image as if it were alone (:class:`maskrt.model.region.ValidRegion`), so an
image that fits gives the eager model's detections whatever its canvas and batch mates; an image larger than the
largest canvas is shrunk to fit, with a one-line notice.

Post-processing (on the runner's device) clips boxes to the image, scales them back to the original image and
keeps the 28x28 mask probabilities per box: :class:`~maskrt.inference.detections.Detections` pastes them into the
image (exactly as torchvision's ``paste_masks_in_image``) only when asked.

:class:`Predictor` reads and prepares the next images on a background thread while the runner works (a bounded
queue; order kept; an unreadable image fails alone), and for a dynamic-size model groups images of similar size
into a batch.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from maskrt.core.errors import MaskrtError, MaskrtWarning
from maskrt.core.metadata import ModelMeta
from maskrt.data.images import DEFAULT_MAX_PIXELS, read_image
from maskrt.inference.detections import Detections
from maskrt.model.transform import resize_boxes
from maskrt.ops.boxes import clip_boxes_to_image

ImageLike = Union[str, os.PathLike, np.ndarray, Tensor]


@dataclass
class Prepared:
    """One image on its canvas: ``canvas`` uint8 (3, H, W) with the resized image at the top left, ``resized``
    (its height and width there), ``original`` (the image's own size), ``shrunk`` (it was made smaller than the
    model's rule to fit the largest canvas)."""

    canvas: Tensor
    resized: tuple[int, int]
    original: tuple[int, int]
    source: str
    shrunk: bool = False
    image: Optional[Tensor] = None  # the image as read, when the caller asked to keep it


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


class ShrunkImageWarning(MaskrtWarning):
    """An image was larger than the model's largest canvas and was shrunk to fit."""


def resize_scale(height: int, width: int, min_size: int, max_size: int, canvas: Sequence[int]) -> tuple[float, bool]:
    """The model's resize factor for an image, and whether it had to be lowered to fit ``canvas`` (H, W)."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    if math.floor(height * scale) > canvas[0] or math.floor(width * scale) > canvas[1]:
        return min(canvas[0] / height, canvas[1] / width), True
    return scale, False


def _padded(side: int, divisor: int) -> int:
    return -(-int(side) // divisor) * divisor


def prepare(image: Tensor, meta: ModelMeta, source: str = "") -> Prepared:
    """Resize a (3, h, w) uint8 image as the model's transform does and place it on its canvas (the export size;
    for a dynamic-size model its own size padded to ``size_divisible``)."""
    h, w = int(image.shape[1]), int(image.shape[2])
    largest = meta.largest_input
    scale, shrunk = resize_scale(h, w, meta.min_size, meta.max_size, largest)
    if scale == 1.0:
        resized = image
    else:
        # the size interpolate's scale_factor with recompute_scale_factor gives, but never 0 (a 1x3000 sliver)
        size = (max(1, math.floor(h * scale)), max(1, math.floor(w * scale)))
        x = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)[0]
        resized = x.round_().clamp_(0, 255).to(torch.uint8)
    rh, rw = min(int(resized.shape[1]), largest[0]), min(int(resized.shape[2]), largest[1])
    if meta.dynamic_size:
        d = meta.size_divisible
        low = meta.min_input_size or (d, d)
        canvas_h, canvas_w = max(_padded(rh, d), low[0]), max(_padded(rw, d), low[1])
    else:
        canvas_h, canvas_w = meta.input_size
    canvas = torch.zeros((3, canvas_h, canvas_w), dtype=torch.uint8)
    canvas[:, :rh, :rw] = resized[:, :rh, :rw]
    return Prepared(canvas, (rh, rw), (h, w), source, shrunk)


def postprocess(outputs: dict, index: int, prep: Prepared, class_names: Sequence[str],
                score_threshold: float = 0.0) -> Detections:
    """Row ``index`` of a runner's outputs as :class:`Detections` of the original image, on the outputs' device:
    boxes clipped to the image and scaled back to its pixels, masks kept per box."""
    n = int(outputs["num_detections"][index])
    scores = outputs["scores"][index, :n].float()
    boxes = outputs["boxes"][index, :n].float()
    labels = outputs["labels"][index, :n].long()
    masks = outputs["masks"][index, :n].float()
    if score_threshold > 0:
        keep = torch.where(scores >= score_threshold)[0]
        scores, boxes, labels, masks = scores[keep], boxes[keep], labels[keep], masks[keep]
    # Graphs without each image's size clip to the whole canvas: clip to the image, as the eager model does, and
    # drop what that leaves degenerate (boxes that lay in the padding of a thin or tiny image), as its
    # remove_small_boxes(1e-2) after the clip does.
    boxes = clip_boxes_to_image(boxes, prep.resized)
    keep = torch.where((boxes[:, 2] - boxes[:, 0] >= 1e-2) & (boxes[:, 3] - boxes[:, 1] >= 1e-2))[0]
    if len(keep) < len(boxes):
        scores, boxes, labels, masks = scores[keep], boxes[keep], labels[keep], masks[keep]
    boxes = resize_boxes(boxes, prep.resized, prep.original)
    names = [class_names[i] if 0 <= i < len(class_names) else str(i) for i in labels.tolist()]
    return Detections(boxes, scores, labels, names, masks, prep.original, prep.source)


@dataclass
class Batch:
    """Prepared images and the runner feeds they make (the last batch of a fixed-batch runner is padded)."""

    prepared: list[Prepared]
    feeds: dict


def make_batch(prepared: Sequence[Prepared], fixed_batch: Optional[int] = None, image_sizes: bool = False) -> Batch:
    """Stack prepared canvases into ``{"images": (B, 3, H, W)}`` (canvases of different sizes padded to the
    largest), with ``"image_sizes"`` (B, 2) int32 when the model takes it; pad with blank canvases up to
    ``fixed_batch``."""
    height = max(int(p.canvas.shape[1]) for p in prepared)
    width = max(int(p.canvas.shape[2]) for p in prepared)
    canvases, sizes = [], []
    for p in prepared:
        c = p.canvas
        if c.shape[1] != height or c.shape[2] != width:
            c = F.pad(c, (0, width - int(c.shape[2]), 0, height - int(c.shape[1])))
        canvases.append(c)
        sizes.append(p.resized)
    if fixed_batch is not None:
        if len(canvases) > fixed_batch:
            raise MaskrtError(f"{len(canvases)} images for a model that takes batch {fixed_batch}")
        blank = fixed_batch - len(canvases)
        canvases += [torch.zeros_like(canvases[0])] * blank
        sizes += [(height, width)] * blank
    feeds = {"images": torch.stack(canvases)}
    if image_sizes:
        feeds["image_sizes"] = torch.tensor(sizes, dtype=torch.int32)
    return Batch(list(prepared), feeds)


def model_feeds(images: Iterable[ImageLike], meta: ModelMeta) -> list[dict]:
    """The graph inputs for ``images`` (paths, arrays or tensors) as numpy arrays, prepared exactly as the
    Predictor prepares them, one feed per model call (``meta.batch`` images; the last batch padded). For
    calibration: the tensors a model computes on these feeds are the ones inference produces."""
    prepared = []
    for image in images:
        tensor, source = to_uint8_chw(image)
        prepared.append(prepare(tensor, meta, source))
    per_call = meta.batch or 1
    feeds = []
    for start in range(0, len(prepared), per_call):
        batch = make_batch(prepared[start:start + per_call], meta.batch, meta.takes_image_sizes)
        feeds.append({k: v.numpy() for k, v in batch.feeds.items()})
    return feeds


def postprocess_batch(outputs: dict, batch: Batch, class_names: Sequence[str],
                      score_threshold: float = 0.0) -> list[Detections]:
    """:func:`postprocess` for every real image of ``batch`` (padding rows are dropped)."""
    return [postprocess(outputs, i, prep, class_names, score_threshold) for i, prep in enumerate(batch.prepared)]


class ImageError:
    """An image that could not be read or prepared, in its place among :meth:`Predictor.predict_iter`'s results
    (``errors="yield"``)."""

    def __init__(self, source: str, error: MaskrtError):
        self.source = source
        self.error = error

    def __repr__(self) -> str:
        return f"ImageError({self.source!r}: {self.error})"


_DONE = object()


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
        prefetch: batches read and prepared ahead on a background thread (0: all in the caller's thread).
        notify: called with a one-line notice the first time an image must be shrunk to fit the largest canvas
            (default: ``warnings.warn`` with :class:`ShrunkImageWarning`).
    """

    def __init__(self, runner, score_threshold: float = 0.0, batch: Optional[int] = None,
                 max_pixels: Optional[int] = None, prefetch: int = 2,
                 notify: Optional[Callable[[str], None]] = None):
        if runner.meta is None:
            raise MaskrtError("the runner's model has no maskrt metadata; the Predictor needs it (see `maskrt export`)")
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise MaskrtError(f"batch must be a positive integer, got {batch!r}")
        self.runner = runner
        self.meta: ModelMeta = runner.meta
        self.score_threshold = float(score_threshold)
        self.max_pixels = max_pixels or DEFAULT_MAX_PIXELS
        self.prefetch = max(0, int(prefetch))
        self._batch = batch
        self._notify = notify or (lambda message: warnings.warn(message, ShrunkImageWarning, stacklevel=3))
        self._notified = False
        self.image_sizes = "image_sizes" in runner.input_specs()

    @property
    def batch(self) -> int:
        """Images per runner call."""
        return self.runner.batch or self._batch or 1

    def __enter__(self):
        self.runner.activate()
        return self

    def __exit__(self, *exc):
        self.runner.deactivate()

    # -- steps -------------------------------------------------------------------------------------------------------
    def load(self, image: ImageLike) -> tuple[Tensor, str]:
        """An image (path, array or tensor) as ((3, H, W) uint8, source), read as the Predictor reads it."""
        return to_uint8_chw(image, self.max_pixels)

    def prepare(self, image: ImageLike, keep: bool = False) -> Prepared:
        """Read (when a path) and prepare one image for this model (``keep``: hold the image as read in
        ``Prepared.image``)."""
        tensor, source = self.load(image)
        prep = prepare(tensor, self.meta, source)
        if keep:
            prep.image = tensor
        if prep.shrunk and not self._notified:
            self._notified = True
            largest = "x".join(map(str, self.meta.largest_input))
            self._notify(f"{source} ({prep.original[0]}x{prep.original[1]}) does not fit the model's largest canvas "
                         f"{largest} at its resize rule: shrunk to {prep.resized[0]}x{prep.resized[1]}, so its "
                         "detections differ from PyTorch's on the full-size image (export with --dynamic-size, or a "
                         "larger --input-size)")
        return prep

    def run(self, prepared: Sequence[Prepared]) -> list[Detections]:
        """One runner call on images already prepared (at most ``batch`` of them); Detections on the runner's
        device."""
        batch = make_batch(prepared, self.runner.batch, self.image_sizes)
        outputs = self.runner.device_outputs(self.runner.execute(self.runner.upload(batch.feeds)))
        return postprocess_batch(outputs, batch, self.meta.class_names, self.score_threshold)

    # -- loops -------------------------------------------------------------------------------------------------------
    def predict(self, images: Iterable[ImageLike]) -> list[Detections]:
        """Detections for every image, in order (an unreadable image raises its MaskrtError)."""
        return list(self.predict_iter(images))

    def predict_iter(self, images: Iterable[ImageLike], errors: str = "raise", with_images: bool = False) -> Iterator:
        """Detections image by image, in order, ``batch`` images per runner call.

        ``errors="raise"``: an image that cannot be read raises its MaskrtError when its turn comes (the images
        before it are yielded first); ``"yield"``: an :class:`ImageError` takes its place and the others go on.
        ``with_images``: yield ``(detections, image)`` pairs, the image as read ((3, H, W) uint8), for drawing.
        """
        if errors not in ("raise", "yield"):
            raise MaskrtError(f"errors must be 'raise' or 'yield', got {errors!r}")
        self.runner.activate()
        window = self.batch * (4 if self.meta.dynamic_size else 1)
        pending: list = []  # (position, Prepared | ImageError)
        for item in self._prepared(images, with_images):
            pending.append(item)
            if len(pending) >= window:
                yield from self._flush(pending, errors, with_images)
                pending = []
        if pending:
            yield from self._flush(pending, errors, with_images)

    def _flush(self, items: list, errors: str, with_images: bool = False) -> Iterator:
        """Run the prepared images of ``items`` (grouped by canvas size for a dynamic-size model) and yield every
        item's result in order."""
        ready = [(i, p) for i, p in items if isinstance(p, Prepared)]
        if self.meta.dynamic_size:  # similar sizes together: less padding in each batch
            ready.sort(key=lambda item: (int(item[1].canvas.shape[1]), int(item[1].canvas.shape[2]), item[0]))
        results: dict = {}
        for start in range(0, len(ready), self.batch):
            chunk = ready[start:start + self.batch]
            for (i, _), det in zip(chunk, self.run([p for _, p in chunk])):
                results[i] = det
        for i, p in items:
            if isinstance(p, ImageError):
                if errors == "raise":
                    raise p.error
                yield p
            else:
                yield (results.pop(i), p.image) if with_images else results.pop(i)

    def _prepared(self, images: Iterable[ImageLike], keep: bool = False) -> Iterator:
        """(position, Prepared or ImageError) for each image, read and prepared ahead on a thread."""
        def work(image):
            try:
                return self.prepare(image, keep)
            except MaskrtError as e:
                source = os.fspath(image) if isinstance(image, (str, os.PathLike)) else type(image).__name__
                return ImageError(source, e)

        if self.prefetch == 0:
            for i, image in enumerate(images):
                yield i, work(image)
            return
        q: queue.Queue = queue.Queue(maxsize=self.prefetch * self.batch)
        stop = threading.Event()

        def producer():
            try:
                for i, image in enumerate(images):
                    if stop.is_set():
                        return
                    q.put((i, work(image)))
            except BaseException as e:  # surfaced in the caller's thread
                q.put((None, e))
            finally:
                q.put((None, _DONE))

        thread = threading.Thread(target=producer, name="maskrt-prepare", daemon=True)
        thread.start()
        try:
            while True:
                i, item = q.get()
                if item is _DONE:
                    return
                if i is None:
                    raise item
                yield i, item
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue, then let it end
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.05)
