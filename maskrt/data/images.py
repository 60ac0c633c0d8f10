"""Reading images as RGB uint8 tensors, and generated test images."""

from __future__ import annotations

import io
import os
import threading
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from maskrt.core.errors import MaskrtError, one_line

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")

#: Images with more pixels than this are refused unless the caller raises the limit (``--max-pixels``): an image
#: that large is more often a decompression bomb than a photo (Pillow's own default limit, about 9459 x 9459).
DEFAULT_MAX_PIXELS = 89_478_485

_PIL_LOCK = threading.Lock()


def read_image(path: str | os.PathLike, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> Tensor:
    """Read an image file as a (3, H, W) uint8 RGB tensor, upright.

    The EXIF orientation is applied (phone photos are stored sideways with a tag saying so). Grayscale, RGBA and
    LA (alpha dropped), palette, CMYK, 16-bit and float images are converted to 8-bit RGB; of a multi-frame file
    the first frame is read. Images with more than ``max_pixels`` pixels are refused (None: no limit).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise MaskrtError(f"{path} is a folder, not an image")
    if not os.path.isfile(path):
        raise MaskrtError(f"image not found: {path}")
    return _decode(path, path, max_pixels)


def decode_image(data: bytes, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS, source: str = "") -> Tensor:
    """An encoded image file held in memory (PNG, JPEG, ... bytes) as a (3, H, W) uint8 RGB tensor, read exactly
    as :func:`read_image` reads the same file; ``source`` names it in errors."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MaskrtError(f"an encoded image must be bytes, got {type(data).__name__}")
    name = source or f"of {len(data)} bytes"
    if len(data) == 0:
        raise MaskrtError(f"cannot read image {name}: it is empty (0 bytes)")
    return _decode(io.BytesIO(bytes(data)), name, max_pixels)


def _open_unlimited(file):
    """``Image.open`` without Pillow's own decompression-bomb limit (maskrt applies ``max_pixels`` itself, with a
    message that names the fix). The limit is global state: it is lifted only while opening, under a lock."""
    from PIL import Image

    with _PIL_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(file)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _decode(file, name: str, max_pixels: Optional[int]) -> Tensor:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with _open_unlimited(file) as im:
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise MaskrtError(f"image {name} is {w}x{h} ({w * h / 1e6:.0f} M pixels), more than the "
                                  f"{max_pixels / 1e6:.0f} M pixels maskrt reads by default (a decompression bomb?); "
                                  f"if it is a real image, downscale it (maskrt predict reads it with --max-pixels {w * h})")
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
                arr = np.asarray(im, dtype=np.float64)
                peak = 65535.0 if im.mode.startswith("I;16") or np.nanmax(arr, initial=0) > 255 else 255.0
                arr = np.clip(np.round(np.nan_to_num(arr) / peak * 255.0), 0, 255).astype(np.uint8)
                im = Image.fromarray(arr, mode="L")
            data = np.array(im.convert("RGB"), dtype=np.uint8)
    except MaskrtError:
        raise
    except UnidentifiedImageError:
        raise MaskrtError(f"cannot read image {name}: not an image format Pillow knows (PNG, JPEG, BMP, TIFF, WebP, "
                          "GIF, PPM)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise MaskrtError(f"cannot read image {name}: {one_line(e)}") from None
    if data.shape[0] < 1 or data.shape[1] < 1:
        raise MaskrtError(f"image {name} is empty ({data.shape[1]}x{data.shape[0]})")
    return torch.from_numpy(data).permute(2, 0, 1).contiguous()


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image file as :func:`read_image` returns it (EXIF orientation applied), from its
    header only (no pixels are decoded). MaskrtError for a missing or unreadable file."""
    from PIL import UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MaskrtError(f"image not found: {path}")
    try:
        with _open_unlimited(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise MaskrtError(f"cannot read image {path}: {one_line(e)}") from None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


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


#: Sizes of the generated images that measurements rotate through (several aspect ratios).
SAMPLE_SIZES = ((480, 640), (640, 480), (600, 800), (427, 640), (512, 512), (375, 500), (720, 1280), (640, 427))


def sample_images(images_dir: Optional[str] = None, count: int = 8, seed: int = 0) -> list[Tensor]:
    """uint8 (3, H, W) images to measure with: the readable images of ``images_dir``, or ``count`` generated ones
    of several sizes and aspect ratios."""
    if images_dir is None:
        return [synthetic_image(*SAMPLE_SIZES[i % len(SAMPLE_SIZES)], seed + i) for i in range(count)]
    if not os.path.isdir(images_dir):
        raise MaskrtError(f"--images {images_dir} is not a folder")
    names = sorted(n for n in os.listdir(images_dir) if n.lower().endswith(IMAGE_EXTENSIONS))
    images, first = [], None
    for n in names:
        try:
            images.append(read_image(os.path.join(images_dir, n)))
        except MaskrtError as e:
            first = first or e
            continue
    if not images:
        why = f" (first: {first})" if first else f" ({', '.join(IMAGE_EXTENSIONS)})"
        raise MaskrtError(f"--images {images_dir} has no readable images{why}")
    return images
