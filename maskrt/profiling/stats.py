"""Latency statistics, with the definitions stated once.

* ``mean``, ``min``, ``max`` as usual; ``std`` is the population standard deviation (divide by n), as trtexec
  reports it; ``cv`` is ``std / mean``.
* ``median``: the middle element of the sorted times, or the mean of the two middle ones for an even count.
* ``pNN`` (p90, p95, p99): nearest rank, trtexec's definition: the element at index
  ``n - 1 - floor((100 - P) * n / 100)`` of the times sorted ascending (clamped to index 0), computed in exact
  integer arithmetic. This equals numpy's ``percentile(..., method="inverted_cdf")``; it is always one of the
  measured times, never an interpolation.
* ``throughput``: images per second over the measured iterations, ``batch * count / sum(times)``.
* ``fps``: ``1000 / mean`` batches per second; equal to throughput at batch 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Sequence

PERCENTILES = (90, 95, 99)

DEFINITIONS = {
    "std": "population standard deviation (divide by n)",
    "median": "middle of the sorted times; mean of the two middle ones for an even count",
    "percentile": "nearest rank (trtexec): sorted ascending, the element at index n-1-floor((100-P)*n/100)",
    "throughput": "images per second: batch * count / sum of the times",
    "fps": "batches per second: 1000 / mean latency in ms",
}


def percentile(sorted_times: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of times already sorted ascending (see the module docstring)."""
    n = len(sorted_times)
    if n == 0:
        raise ValueError("percentile of no samples")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    exclude = math.floor((100 - Fraction(p)) * n / 100)
    return float(sorted_times[max(n - 1 - exclude, 0)])


@dataclass(frozen=True)
class Stats:
    """Summary of one figure's times in milliseconds."""

    count: int
    mean: float
    std: float
    cv: float
    min: float
    max: float
    median: float
    p90: float
    p95: float
    p99: float
    throughput: float
    fps: float

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(times_ms: Sequence[float], batch: int = 1) -> Stats:
    """Statistics of ``times_ms`` (one entry per measured iteration of ``batch`` images)."""
    times = sorted(float(t) for t in times_ms)
    n = len(times)
    if n == 0:
        raise ValueError("no times to summarize")
    total = math.fsum(times)
    mean = total / n
    std = math.sqrt(math.fsum((t - mean) ** 2 for t in times) / n)
    mid = n // 2
    median = times[mid] if n % 2 else (times[mid - 1] + times[mid]) / 2
    return Stats(
        count=n,
        mean=mean,
        std=std,
        cv=std / mean if mean > 0 else 0.0,
        min=times[0],
        max=times[-1],
        median=median,
        p90=percentile(times, 90),
        p95=percentile(times, 95),
        p99=percentile(times, 99),
        throughput=batch * n * 1000.0 / total if total > 0 else 0.0,
        fps=1000.0 / mean if mean > 0 else 0.0,
    )
