"""Pre- and post-processing of the eager model, as torchvision's ``GeneralizedRCNNTransform``.

Pre: normalise with mean/std, resize so the short side is ``min_size`` unless that makes the long side exceed
``max_size`` (bilinear, ``align_corners=False``, output size ``floor(side * scale)``), pad the batch with zeros
at the bottom and right to a multiple of ``size_divisible``.
Post: scale boxes back to the original image, paste masks into it.
"""

from __future__ import annotations

import math
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from maskrt.core.errors import MaskrtError


def resize_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """The factor the eager transform resizes an image of (height, width) by."""
    return min(float(min_size) / min(height, width), float(max_size) / max(height, width))


def normalize(image: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(C, H, W) or (B, C, H, W) float image in [0, 1] -> (image - mean) / std per channel."""
    m = torch.as_tensor(mean, dtype=image.dtype, device=image.device)[:, None, None]
    s = torch.as_tensor(std, dtype=image.dtype, device=image.device)[:, None, None]
    return (image - m) / s


def resize_image(image: Tensor, min_size: int, max_size: int, fixed_size: Optional[tuple[int, int]] = None) -> Tensor:
    """Resize a (C, H, W) image as the eager transform does. ``fixed_size`` is (width, height)."""
    if fixed_size is not None:
        return F.interpolate(image[None], size=[fixed_size[1], fixed_size[0]], mode="bilinear", align_corners=False)[0]
    h, w = image.shape[-2:]
    scale = resize_scale(int(h), int(w), min_size, max_size)
    if math.floor(int(h) * scale) < 1 or math.floor(int(w) * scale) < 1:  # a sliver (1x3000): keep one pixel
        size = [max(1, math.floor(int(h) * scale)), max(1, math.floor(int(w) * scale))]
        return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    return F.interpolate(
        image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
    )[0]


def batch_images(images: Sequence[Tensor], size_divisible: int = 32) -> Tensor:
    """Stack (C, Hi, Wi) images into (B, C, H, W), zero-padded bottom/right to a multiple of ``size_divisible``."""
    c = max(int(img.shape[0]) for img in images)
    h = max(int(img.shape[1]) for img in images)
    w = max(int(img.shape[2]) for img in images)
    h = int(math.ceil(h / size_divisible) * size_divisible)
    w = int(math.ceil(w / size_divisible) * size_divisible)
    batched = images[0].new_zeros((len(images), c, h, w))
    for i, img in enumerate(images):
        batched[i, : img.shape[0], : img.shape[1], : img.shape[2]].copy_(img)
    return batched


def resize_boxes(boxes: Tensor, original_size: Sequence[int], new_size: Sequence[int]) -> Tensor:
    """Scale (N, 4) XYXY boxes from an image of ``original_size`` (H, W) to one of ``new_size``."""
    ratio_h = torch.tensor(new_size[0], dtype=torch.float32, device=boxes.device) / torch.tensor(
        original_size[0], dtype=torch.float32, device=boxes.device
    )
    ratio_w = torch.tensor(new_size[1], dtype=torch.float32, device=boxes.device) / torch.tensor(
        original_size[1], dtype=torch.float32, device=boxes.device
    )
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack((x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h), dim=-1)


def _expand_boxes(boxes: Tensor, scale: float) -> Tensor:
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    w_half = w_half * scale
    h_half = h_half * scale
    return torch.stack((x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half), dim=1)


def pasted_crops(masks: Tensor, boxes: Tensor, image_size: Sequence[int], padding: int = 1) -> Iterator[tuple]:
    """Each mask resized into its box as :func:`paste_masks` pastes it, cut to the image: ``(crop, top, left)``
    with ``crop`` (h, w) float (h or w 0 when the box lies outside the image). The crops hold exactly the values
    :func:`paste_masks` writes; everything else in the image is 0."""
    im_h, im_w = int(image_size[0]), int(image_size[1])
    if masks.shape[0] == 0:
        return
    m = masks.shape[-1]
    scale = float(m + 2 * padding) / m
    padded = F.pad(masks, (padding,) * 4)
    int_boxes = _expand_boxes(boxes, scale).to(torch.int64).tolist()
    for i, (x1, y1, x2, y2) in enumerate(int_boxes):
        w = max(int(x2 - x1 + 1), 1)
        h = max(int(y2 - y1 + 1), 1)
        xa, xb = max(x1, 0), min(x2 + 1, im_w)
        ya, yb = max(y1, 0), min(y2 + 1, im_h)
        if xb > xa and yb > ya:
            resized = F.interpolate(padded[i : i + 1], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
            yield resized[ya - y1 : yb - y1, xa - x1 : xb - x1], ya, xa
        else:
            yield masks.new_zeros((0, 0)), 0, 0


def paste_masks(masks: Tensor, boxes: Tensor, image_size: Sequence[int], padding: int = 1) -> Tensor:
    """Paste per-box mask probabilities into full images, exactly as torchvision's ``paste_masks_in_image``.

    Each (M, M) mask is padded by ``padding`` zeros, its box is grown by ``(M + 2 * padding) / M`` about its
    centre and truncated to whole pixels, the mask is resized bilinearly to that box (at least 1x1) and the
    part inside the image is written (:func:`pasted_crops`).

    Args:
        masks: (N, 1, M, M) float.
        boxes: (N, 4) XYXY in the pixels of the target image.
        image_size: (H, W) of the target image.

    Returns:
        (N, 1, H, W) float.
    """
    im_h, im_w = int(image_size[0]), int(image_size[1])
    out = masks.new_zeros((masks.shape[0], 1, im_h, im_w))
    for i, (crop, top, left) in enumerate(pasted_crops(masks, boxes, image_size, padding)):
        out[i, 0, top : top + crop.shape[0], left : left + crop.shape[1]] = crop
    return out


def check_images(images) -> None:
    """Raise MaskrtError unless ``images`` is a non-empty list of 3-channel (3, H, W) float tensors."""
    if isinstance(images, Tensor):
        raise MaskrtError(
            "images must be a list of (3, H, W) float tensors, got a single tensor; wrap it in a list "
            "(for a batch, list(batch))"
        )
    if not isinstance(images, (list, tuple)):
        raise MaskrtError(f"images must be a list of (3, H, W) float tensors, got {type(images).__name__}")
    if len(images) == 0:
        raise MaskrtError("images is an empty list; pass at least one (3, H, W) float tensor")
    for i, img in enumerate(images):
        if not isinstance(img, Tensor):
            raise MaskrtError(f"images[{i}] must be a torch.Tensor, got {type(img).__name__}")
        if img.dim() != 3 or img.shape[0] != 3:
            raise MaskrtError(f"images[{i}] must have shape (3, H, W) (RGB, channels first), got {tuple(img.shape)}")
        if not img.is_floating_point():
            raise MaskrtError(
                f"images[{i}] must be a float tensor with values in [0, 1], got {img.dtype}; "
                "for uint8 images use img.float() / 255"
            )
        if img.shape[1] == 0 or img.shape[2] == 0:
            raise MaskrtError(f"images[{i}] is empty: shape {tuple(img.shape)}")
