"""Numbers as people read them: byte counts, milliseconds, percentages."""

from __future__ import annotations

import math
from typing import Optional


def human_bytes(n: Optional[float]) -> str:
    """1536 -> "1.5 KiB"; powers of 1024; "-" for None."""
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def milliseconds(v: Optional[float]) -> str:
    """Latency in ms with precision that suits its size; "—" for None or NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def number(v: Optional[float], digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def percent(fraction: Optional[float], digits: int = 1) -> str:
    """A fraction in [0, 1] as percent points ("—" for None)."""
    return "—" if fraction is None else f"{100.0 * fraction:.{digits}f}"
