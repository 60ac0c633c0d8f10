"""Latency statistics against numpy, and the stated percentile definition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from maskrt.profiling.stats import percentile, summarize


def trtexec_index(n: int, p: float) -> int:
    # The definition as written: index n-1-floor((1-P/100)*n), evaluated exactly (P given as an integer here).
    return max(n - 1 - ((100 - p) * n) // 100, 0)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 19, 20, 99, 100, 101, 1000])
@pytest.mark.parametrize("p", [0, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy_inverted_cdf_and_the_trtexec_index(n, p):
    rng = np.random.default_rng(n * 1000 + p)
    times = np.sort(rng.gamma(4.0, 2.0, size=n))
    want = np.percentile(times, p, method="inverted_cdf") if p > 0 else times[0]
    assert percentile(times.tolist(), p) == pytest.approx(float(want), abs=0)
    assert percentile(times.tolist(), p) == times[trtexec_index(n, p)]


def test_percentile_known_samples():
    ten = [float(v) for v in range(1, 11)]
    assert percentile(ten, 90) == 9.0  # floor(0.1 * 10) = 1 excluded from the top
    assert percentile(ten, 99) == 10.0
    assert percentile(ten, 50) == 5.0
    hundred = [float(v) for v in range(1, 101)]
    assert (percentile(hundred, 90), percentile(hundred, 95), percentile(hundred, 99)) == (90.0, 95.0, 99.0)
    assert percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


@pytest.mark.parametrize("batch", [1, 4])
def test_summarize_against_numpy(batch):
    rng = np.random.default_rng(batch)
    times = rng.lognormal(1.0, 0.3, size=257)
    s = summarize(times.tolist(), batch)
    assert s.count == 257
    assert s.mean == pytest.approx(times.mean(), rel=1e-12)
    assert s.std == pytest.approx(times.std(ddof=0), rel=1e-9)
    assert s.cv == pytest.approx(times.std() / times.mean(), rel=1e-9)
    assert (s.min, s.max) == (times.min(), times.max())
    assert s.median == pytest.approx(np.median(times), rel=1e-12)
    for p, got in ((90, s.p90), (95, s.p95), (99, s.p99)):
        assert got == np.percentile(times, p, method="inverted_cdf")
    assert s.throughput == pytest.approx(batch * 257 * 1000.0 / times.sum(), rel=1e-12)
    assert s.fps == pytest.approx(1000.0 / times.mean(), rel=1e-12)


def test_even_count_median_is_the_mean_of_the_middle_two():
    s = summarize([4.0, 1.0, 3.0, 2.0])
    assert s.median == 2.5 and s.min == 1.0 and s.max == 4.0
    assert s.std == pytest.approx(math.sqrt(1.25))


def test_summarize_refuses_no_samples():
    with pytest.raises(ValueError):
        summarize([])
