"""Reading images as RGB uint8 tensors, and generated test images."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from maskrt.errors import MaskrtError


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def read_image(path: str | os.PathLike) -> Tensor:
    """Read an image file as a (3, H, W) uint8 RGB tensor.

    Grayscale, RGBA (alpha dropped), palette and 16-bit images are converted to 8-bit RGB.
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MaskrtError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                peak = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
                arr = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
                im = Image.fromarray(arr, mode="L")
            rgb = im.convert("RGB")
            data = np.array(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise MaskrtError(f"cannot read image {path}: {e}") from e
    return torch.from_numpy(data).permute(2, 0, 1).contiguous()


def synthetic_image(height: int = 480, width: int = 640, seed: int = 0) -> Tensor:
    """A deterministic (3, H, W) uint8 RGB test image: a smooth gradient background with filled shapes."""
    if height < 1 or width < 1:
        raise MaskrtError(f"image size must be positive, got {height}x{width}")
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.empty((height, width, 3), dtype=np.float32)
    for c in range(3):
        a, b, d = g.uniform(-1, 1, size=3)
        img[..., c] = 128 + 60 * np.sin(a * xx / width * 6 + b * yy / height * 6 + d * 3)
    for _ in range(int(g.integers(3, 7))):
        cx, cy = g.uniform(0, width), g.uniform(0, height)
        rx, ry = g.uniform(0.05, 0.25) * width, g.uniform(0.05, 0.25) * height
        colour = g.uniform(0, 255, size=3)
        if g.random() < 0.5:
            inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
        else:
            inside = (np.abs(xx - cx) <= rx) & (np.abs(yy - cy) <= ry)
        img[inside] = colour
    img += g.normal(0, 6, size=img.shape).astype(np.float32)
    return torch.from_numpy(np.clip(img, 0, 255).astype(np.uint8)).permute(2, 0, 1).contiguous()
