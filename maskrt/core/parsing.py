"""Parsing of the values users type: image sizes, batch lists, memory sizes. Each refuses bad text with one line."""

from __future__ import annotations

import re
from typing import Sequence, Union

from maskrt.core.errors import MaskrtError

#: Largest side maskrt accepts for an image size or export canvas: larger is a typo, not a model.
MAX_SIDE = 16384


def parse_size(text: Union[str, Sequence[int]], what: str = "--input-size", minimum: int = 32) -> tuple[int, int]:
    """'800x1344' or (800, 1344) -> (800, 1344); MaskrtError for anything else or a side outside
    [minimum, MAX_SIDE]."""
    try:
        if isinstance(text, str):
            h, w = (int(v) for v in text.lower().replace(",", "x").split("x"))
        else:
            h, w = (int(v) for v in text)
    except (ValueError, TypeError):
        raise MaskrtError(f"{what} must look like HxW (e.g. 800x1344), got {text!r}") from None
    if h < minimum or w < minimum:
        raise MaskrtError(f"{what} must be at least {minimum}x{minimum}, got {h}x{w}")
    if h > MAX_SIDE or w > MAX_SIDE:
        raise MaskrtError(f"{what} {h}x{w} is larger than {MAX_SIDE} pixels on a side; give the size in pixels "
                          "(e.g. 800x1344)")
    return h, w


def parse_batches(text: Union[str, Sequence[int]], what: str = "--batch") -> list[int]:
    """"1,2,4,8" -> [1, 2, 4, 8]; each must be a positive integer (duplicates dropped, order kept)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        try:
            b = int(str(item).strip())
        except ValueError:
            raise MaskrtError(f"{what} must be positive integers separated by commas (e.g. 1,2,4), got {text!r}") from None
        if b < 1:
            raise MaskrtError(f"{what}: batch sizes must be >= 1, got {b}")
        if b not in out:
            out.append(b)
    if not out:
        raise MaskrtError(f"{what} needs at least one batch size")
    return out


_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
          "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}
MEMORY_FORMS = "bytes (1073741824) or a number with K, M, G, T (or KiB/MiB/GiB/TiB, KB/MB/GB/TB: all powers of 1024)"


def parse_memory(text, what: str = "--workspace") -> int:
    """'4G', '512M', '1GiB', '1.5G' or a byte count -> bytes. Every unit is a power of 1024."""
    if isinstance(text, bool):
        raise MaskrtError(f"{what} must be {MEMORY_FORMS}, got {text!r}")
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _UNITS:
            raise MaskrtError(f"{what} must be {MEMORY_FORMS}, got {text!r}")
        value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise MaskrtError(f"{what} must be more than 0 bytes, got {text!r}")
    return value
