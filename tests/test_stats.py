"""Tests for edgeopt.core.stats against hand-computed values, scipy and simulation."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from scipy import stats as sps

from edgeopt.core.stats import (
    CI_METHOD,
    ESTIMATOR,
    PERCENTILES,
    PercentileEstimate,
    SampleSummary,
    ci_half_width_rel,
    min_samples_for_ci,
    nearest_rank,
    percentile,
    percentile_ci_ranks,
    ratio_interval,
    samples_needed,
    summarize,
    wilson_interval,
)


def test_nearest_rank_hand_values() -> None:
    x = list(range(1, 11))
    # ceil(0.5*10)=5, ceil(0.9*10)=9, ceil(0.95*10)=10, ceil(0.99*10)=10
    assert percentile(x, 0.5) == 5
    assert percentile(x, 0.9) == 9
    assert percentile(x, 0.95) == 10
    assert percentile(x, 0.99) == 10
    assert percentile(x, 1.0) == 10
    assert percentile(x, 0.01) == 1


def test_nearest_rank_single_sample_and_unsorted() -> None:
    for q in (0.01, 0.5, 0.99, 1.0):
        assert percentile([3.5], q) == 3.5
    assert percentile([9, 1, 5, 3, 7], 0.5) == 5  # ceil(2.5)=3 -> third smallest
    assert percentile(np.array([4.0, 2.0, 8.0, 6.0]), 0.75) == 6.0  # ceil(3)=3


def test_nearest_rank_float_noise_and_bounds() -> None:
    assert nearest_rank(100, 0.07) == 7  # 0.07*100 = 7.000000000000001 in floating point
    assert nearest_rank(100, 0.95) == 95
    with pytest.raises(ValueError):
        nearest_rank(0, 0.5)
    with pytest.raises(ValueError):
        nearest_rank(10, 0.0)


def test_ci_ranks_n10_median_by_hand() -> None:
    # X ~ Bin(10, 0.5): CDF(0)=1/1024=0.00098, CDF(1)=11/1024=0.0107, CDF(2)=56/1024=0.0547
    # -> largest l with CDF(l-1) <= 0.025 is l=2.
    # CDF(7)=968/1024=0.9453, CDF(8)=1013/1024=0.98926 -> smallest u with CDF(u-1) >= 0.975 is u=9.
    # Coverage = CDF(8) - CDF(1) = 1002/1024 = 0.9785.
    assert percentile_ci_ranks(10, 0.5, 0.95) == (2, 9)


def test_ci_ranks_small_n_p95_none() -> None:
    # 0.95**71 = 0.0262 > 0.025: the largest order statistic is not an upper bound at 95 %.
    assert percentile_ci_ranks(71, 0.95, 0.95) is None
    # 0.95**72 = 0.0249 <= 0.025: u = 72 (the maximum).
    ranks = percentile_ci_ranks(72, 0.95, 0.95)
    assert ranks is not None and ranks[1] == 72
    assert percentile_ci_ranks(1, 0.5, 0.95) is None
    assert percentile_ci_ranks(0, 0.5, 0.95) is None


def _scipy_ranks(n: int, q: float, confidence: float) -> tuple[int, int] | None:
    half = (1 - confidence) / 2
    cdf = sps.binom.cdf(np.arange(n), n, q)  # cdf[r-1] = CDF(r-1) for rank r in 1..n
    lows = np.nonzero(cdf <= half)[0]
    highs = np.nonzero(cdf >= 1 - half)[0]
    if lows.size == 0 or highs.size == 0:
        return None
    return int(lows[-1]) + 1, int(highs[0]) + 1


@pytest.mark.parametrize(
    "n,q,confidence",
    [
        (n, q, c)
        for n in (5, 6, 20, 72, 100, 368, 500, 1000, 12345, 100_000)
        for q in (0.1, 0.5, 0.9, 0.95, 0.99)
        for c in (0.9, 0.95, 0.99)
    ],
)
def test_ci_ranks_match_scipy(n: int, q: float, confidence: float) -> None:
    assert percentile_ci_ranks(n, q, confidence) == _scipy_ranks(n, q, confidence)


def test_ci_ranks_coverage_guarantee_exact() -> None:
    for n, q in [(50, 0.5), (200, 0.95), (1000, 0.99)]:
        ranks = percentile_ci_ranks(n, q, 0.95)
        assert ranks is not None
        lo, hi = ranks
        coverage = sps.binom.cdf(hi - 1, n, q) - sps.binom.cdf(lo - 1, n, q)
        assert coverage >= 0.95


def test_ci_ranks_large_n_fast() -> None:
    percentile_ci_ranks.cache_clear()
    start = time.perf_counter()
    ranks = percentile_ci_ranks(1_000_000, 0.95, 0.95)
    assert time.perf_counter() - start < 0.5
    assert ranks == _scipy_ranks(1_000_000, 0.95, 0.95)


def test_coverage_by_simulation() -> None:
    rng = np.random.default_rng(12345)
    mu, sigma, n, trials = 1.0, 0.5, 200, 2000
    true_p95 = math.exp(mu + sigma * 1.6448536269514722)
    data = np.sort(rng.lognormal(mu, sigma, size=(trials, n)), axis=1)
    ranks = percentile_ci_ranks(n, 0.95, 0.95)
    assert ranks is not None
    lo, hi = ranks
    covered = (data[:, lo - 1] <= true_p95) & (true_p95 <= data[:, hi - 1])
    assert covered.mean() >= 0.93


def test_min_samples_for_ci() -> None:
    # Need 0.95**n <= 0.025 -> n >= log(0.025)/log(0.95) = 71.9 -> 72; likewise p99: 367.04 -> 368.
    assert min_samples_for_ci(0.95, 0.95) == 72
    assert min_samples_for_ci(0.99, 0.95) == 368
    assert min_samples_for_ci(0.9, 0.95) == 36
    assert min_samples_for_ci(0.5, 0.95) == 6  # 0.5**6 = 0.0156 <= 0.025 < 0.5**5
    assert min_samples_for_ci(0.95, 0.99) == 104
    for q in PERCENTILES.values():
        n = min_samples_for_ci(q, 0.95)
        assert percentile_ci_ranks(n, q, 0.95) is not None
        assert percentile_ci_ranks(n - 1, q, 0.95) is None


def test_summarize_moments_and_percentiles() -> None:
    s = summarize([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert s.n == 8
    assert s.mean == pytest.approx(5.0)
    assert s.std == pytest.approx(math.sqrt(32 / 7))  # sum of squared deviations = 32
    assert s.cv == pytest.approx(math.sqrt(32 / 7) / 5.0)
    assert (s.min, s.max) == (2.0, 9.0)
    assert s.percentiles["p50"].value == 4.0  # rank ceil(4) = 4
    assert s.percentiles["p95"].value == 9.0
    assert s.percentiles["p95"].lower is None  # 8 samples: no p95 CI
    assert s.percentiles["p95"].rel_halfwidth == math.inf
    assert s.percentiles["p50"].lower_rank == 1  # Bin(8,.5): CDF(0)=1/256 <= .025 < CDF(1)=9/256
    assert s.estimator == ESTIMATOR and s.ci_method == CI_METHOD
    assert set(s.percentiles) == {"p50", "p90", "p95", "p99"}


def test_summarize_single_sample() -> None:
    s = summarize([3.0])
    assert (s.n, s.mean, s.std, s.cv) == (1, 3.0, 0.0, 0.0)
    assert all(p.value == 3.0 and p.lower is None for p in s.percentiles.values())


def test_summarize_percentile_ci_values() -> None:
    x = np.arange(1.0, 1001.0)  # value at rank r is r
    s = summarize(x[::-1])  # unsorted input
    p95 = s.percentiles["p95"]
    ranks = percentile_ci_ranks(1000, 0.95, 0.95)
    assert ranks is not None
    assert p95.value == 950.0
    assert (p95.lower, p95.upper) == (float(ranks[0]), float(ranks[1]))
    assert (p95.lower_rank, p95.upper_rank) == ranks
    assert p95.rel_halfwidth == pytest.approx(max(950 - ranks[0], ranks[1] - 950) / 950)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")], np.array([])])
def test_summarize_rejects(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        summarize(bad)


def test_summary_round_trip_and_scaling() -> None:
    rng = np.random.default_rng(0)
    s = summarize(rng.lognormal(15, 0.2, size=500))
    again = SampleSummary.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s
    ms = s.scaled(1e-6)
    assert ms.mean == pytest.approx(s.mean * 1e-6)
    assert ms.percentiles["p95"].upper == pytest.approx(s.percentiles["p95"].upper * 1e-6)  # type: ignore[operator]
    assert ms.percentiles["p95"].upper_rank == s.percentiles["p95"].upper_rank
    assert ms.cv == s.cv


def test_ci_half_width_rel() -> None:
    x = np.sort(np.random.default_rng(1).normal(10.0, 0.1, size=2000))
    rel = ci_half_width_rel(x, 0.95, 0.95)
    assert rel is not None and 1e-6 < rel < 0.05
    assert ci_half_width_rel(x[::-1].copy(), 0.95, 0.95) == rel  # unsorted input is sorted in a copy
    assert ci_half_width_rel(x[:50], 0.95, 0.95) is None  # too few for a CI
    assert ci_half_width_rel(np.array([]), 0.95, 0.95) is None


def _estimate(value: float, lower: float | None, upper: float | None) -> PercentileEstimate:
    ranks = (None, None) if lower is None else (10, 20)
    return PercentileEstimate("p95", 0.95, value, lower, upper, ranks[0], ranks[1], 0.95)


def test_samples_needed() -> None:
    est = _estimate(7.95, 7.80, 8.10)
    # limit above: upper side, half-width 0.15 vs distance 0.05 -> 100 * 9 = 900
    assert samples_needed(100, est, 8.0) == 900
    # limit below: lower side, half-width 0.15 vs distance 0.10 -> 100 * 2.25 = 225
    assert samples_needed(100, est, 7.85) == 225
    assert samples_needed(100, est, 7.95) is None
    assert samples_needed(100, _estimate(7.95, None, None), 8.0) is None


def test_ratio_interval() -> None:
    fp32 = _estimate(10.0, 9.0, 11.0)
    int8 = _estimate(4.0, 3.5, 5.0)
    result = ratio_interval(fp32, int8)
    assert result is not None
    value, lo, hi = result
    assert value == pytest.approx(2.5)
    assert lo == pytest.approx(9.0 / 5.0)
    assert hi == pytest.approx(11.0 / 3.5)
    assert ratio_interval(fp32, _estimate(4.0, None, None)) is None
    assert ratio_interval(fp32, _estimate(1.0, 0.0, 2.0)) is None


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=5e-4)
    assert hi == pytest.approx(0.9433, abs=5e-4)
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=5e-4)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.7225, abs=5e-4)
    with pytest.raises(ValueError):
        wilson_interval(1, 0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
