"""Latency statistics: nearest-rank percentiles with distribution-free confidence intervals.

Pure Python, numpy and ``math`` only: this module is imported inside the timing worker, so it must
stay light (no scipy, no pydantic).

* Percentiles use the nearest-rank estimator: for sorted ``x`` of length ``n`` the q-quantile is
  ``x[ceil(q*n) - 1]``.
* Their confidence intervals come from order statistics: the number of samples below the true
  quantile is Binomial(n, q), so a pair of ranks (l, u) covers it with probability
  ``BinomCDF(u-1) - BinomCDF(l-1)``.  The binomial CDF is computed exactly (log-space pmf anchored at
  the mode with ``math.lgamma``, neighbours by the pmf ratio, summed with numpy) over a window of
  about 12 standard deviations around the mode, which holds all but < 1e-9 of the mass; no normal
  approximation is used, and n up to 1e6 costs milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

ESTIMATOR = "nearest-rank"
CI_METHOD = "order-statistic (binomial), distribution-free"
PERCENTILES: dict[str, float] = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}

_TOL = 1e-12  # slack when comparing binomial probabilities with alpha/2


def nearest_rank(n: int, q: float) -> int:
    """1-based nearest rank of the q-quantile among n sorted values: ``ceil(q*n)`` clamped to [1, n]."""
    if n < 1:
        raise ValueError(f"need at least one sample, got n={n}")
    if not 0.0 < q <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {q}")
    # round() guards against float noise such as 0.07 * 100 = 7.000000000000001.
    return min(max(math.ceil(round(q * n, 9)), 1), n)


def percentile(samples: Sequence[float] | np.ndarray, q: float) -> float:
    """Nearest-rank q-quantile of ``samples`` (need not be sorted)."""
    x = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    return float(x[nearest_rank(len(x), q) - 1])


def _binomial_cdf_sf(n: int, q: float, full: bool = False) -> tuple[int, np.ndarray, np.ndarray]:
    """Return ``(k0, cdf, sf)`` with ``cdf[i] = P(X <= k0+i)`` and ``sf[i] = P(X > k0+i)``, X ~ Bin(n, q).

    Only a window around the mode is computed unless ``full``; the window holds all but 1e-9 of the
    mass (checked; the full range is used otherwise).
    """
    mode = min(max(math.floor((n + 1) * q), 0), n)
    sd = math.sqrt(n * q * (1.0 - q))
    width = n if full else math.ceil(12.0 * sd) + 30
    k0, k1 = max(0, mode - width), min(n, mode + width)
    log_mode = (
        math.lgamma(n + 1) - math.lgamma(mode + 1) - math.lgamma(n - mode + 1)
        + mode * math.log(q) + (n - mode) * math.log1p(-q)
    )
    log_ratio = math.log(q) - math.log1p(-q)
    # log pmf(k+1) - log pmf(k) = log(n-k) - log(k+1) + log(q/(1-q))
    up = np.arange(mode, k1, dtype=np.float64)
    forward = log_mode + np.cumsum(np.log(n - up) - np.log(up + 1.0) + log_ratio)
    down = np.arange(mode - 1, k0 - 1, -1, dtype=np.float64)
    backward = log_mode - np.cumsum(np.log(n - down) - np.log(down + 1.0) + log_ratio)
    logpmf = np.concatenate([backward[::-1], [log_mode], forward])
    pmf = np.exp(logpmf)
    total = float(pmf.sum())
    if not full and (k0 > 0 or k1 < n) and total < 1.0 - 1e-9:
        return _binomial_cdf_sf(n, q, full=True)
    pmf /= total
    cdf = np.cumsum(pmf)
    at_least = np.cumsum(pmf[::-1])[::-1]  # P(X >= k0+i)
    sf = np.append(at_least[1:], 0.0)
    return k0, cdf, sf


@lru_cache(maxsize=512)
def percentile_ci_ranks(n: int, q: float, confidence: float) -> tuple[int, int] | None:
    """1-based ranks (l, u) with ``P(X_(l) <= xi_q <= X_(u)) >= confidence``, or None if n is too small.

    l is the largest rank with ``BinomCDF(l-1; n, q) <= alpha/2`` and u the smallest rank with
    ``BinomCDF(u-1; n, q) >= 1 - alpha/2`` (alpha = 1 - confidence), so each tail misses with
    probability at most alpha/2.  Valid for any continuous distribution.
    """
    if n < 1:
        return None
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1) for a confidence interval, got {q}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    half_alpha = (1.0 - confidence) / 2.0 + _TOL
    k0, cdf, sf = _binomial_cdf_sf(n, q)
    # Largest k in [0, n-1] with CDF(k) <= alpha/2 (k0 - 1 when even CDF(k0) is above it).
    lower_k = k0 + int(np.searchsorted(cdf, half_alpha, side="right")) - 1
    # Smallest k in [0, n-1] with P(X > k) <= alpha/2, i.e. CDF(k) >= 1 - alpha/2.
    below = sf <= half_alpha
    upper_k = k0 + int(np.argmax(below)) if bool(below.any()) else n
    if lower_k < 0 or upper_k > n - 1:
        return None
    return min(lower_k, n - 1) + 1, upper_k + 1


@lru_cache(maxsize=64)
def min_samples_for_ci(q: float, confidence: float) -> int:
    """Smallest n for which :func:`percentile_ci_ranks` returns ranks.

    Needs ``(1-q)^n <= alpha/2`` and ``q^n <= alpha/2``; at 95 % that is 6 for p50, 36 for p90,
    72 for p95 and 368 for p99 (104 and 528 for p95/p99 at 99 %; see tests).
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {q}")
    half_alpha = (1.0 - confidence) / 2.0
    guess = math.ceil(max(math.log(half_alpha) / math.log1p(-q), math.log(half_alpha) / math.log(q)))
    n = max(guess, 1)
    while n > 1 and percentile_ci_ranks(n - 1, q, confidence) is not None:
        n -= 1
    while percentile_ci_ranks(n, q, confidence) is None:
        n += 1
    return n


@dataclass(frozen=True)
class PercentileEstimate:
    """One percentile with its order-statistic confidence interval (None when n is too small)."""

    name: str
    q: float
    value: float
    lower: float | None
    upper: float | None
    lower_rank: int | None
    upper_rank: int | None
    confidence: float

    @property
    def has_ci(self) -> bool:
        return self.lower is not None and self.upper is not None

    @property
    def rel_halfwidth(self) -> float:
        """Largest distance from the estimate to a CI end, relative to the estimate (inf without CI)."""
        if self.lower is None or self.upper is None or self.value == 0:
            return math.inf
        return max(self.value - self.lower, self.upper - self.value) / abs(self.value)

    def scaled(self, factor: float) -> PercentileEstimate:
        """The same estimate in other units (``factor`` > 0, e.g. 1e-6 for ns -> ms)."""
        if not factor > 0:
            raise ValueError(f"scale factor must be positive, got {factor}")
        return PercentileEstimate(
            self.name, self.q, self.value * factor,
            None if self.lower is None else self.lower * factor,
            None if self.upper is None else self.upper * factor,
            self.lower_rank, self.upper_rank, self.confidence,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "q": self.q, "value": self.value, "lower": self.lower,
            "upper": self.upper, "lower_rank": self.lower_rank, "upper_rank": self.upper_rank,
            "confidence": self.confidence,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PercentileEstimate:
        def opt_float(v: Any) -> float | None:
            return None if v is None else float(v)

        def opt_int(v: Any) -> int | None:
            return None if v is None else int(v)

        return cls(
            name=str(data["name"]), q=float(data["q"]), value=float(data["value"]),
            lower=opt_float(data.get("lower")), upper=opt_float(data.get("upper")),
            lower_rank=opt_int(data.get("lower_rank")), upper_rank=opt_int(data.get("upper_rank")),
            confidence=float(data["confidence"]),
        )


def estimate_percentile(
    sorted_samples: np.ndarray, name: str, q: float, confidence: float = 0.95
) -> PercentileEstimate:
    """Nearest-rank estimate and CI of the q-quantile from an already sorted 1-D array."""
    n = len(sorted_samples)
    value = float(sorted_samples[nearest_rank(n, q) - 1])
    ranks = percentile_ci_ranks(n, q, confidence) if q < 1.0 else None
    if ranks is None:
        return PercentileEstimate(name, q, value, None, None, None, None, confidence)
    lo, hi = ranks
    return PercentileEstimate(
        name, q, value, float(sorted_samples[lo - 1]), float(sorted_samples[hi - 1]), lo, hi, confidence
    )


@dataclass(frozen=True)
class SampleSummary:
    """Descriptive statistics of one sample set (units are the samples' units)."""

    n: int
    mean: float
    std: float
    cv: float
    min: float
    max: float
    percentiles: dict[str, PercentileEstimate] = field(default_factory=dict)
    confidence: float = 0.95
    estimator: str = ESTIMATOR
    ci_method: str = CI_METHOD

    def scaled(self, factor: float) -> SampleSummary:
        """The same summary in other units (``factor`` > 0, e.g. 1e-6 for ns -> ms)."""
        if not factor > 0:
            raise ValueError(f"scale factor must be positive, got {factor}")
        return SampleSummary(
            n=self.n, mean=self.mean * factor, std=self.std * factor, cv=self.cv,
            min=self.min * factor, max=self.max * factor,
            percentiles={k: p.scaled(factor) for k, p in self.percentiles.items()},
            confidence=self.confidence, estimator=self.estimator, ci_method=self.ci_method,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n, "mean": self.mean, "std": self.std, "cv": self.cv, "min": self.min,
            "max": self.max, "percentiles": {k: p.to_dict() for k, p in self.percentiles.items()},
            "confidence": self.confidence, "estimator": self.estimator, "ci_method": self.ci_method,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SampleSummary:
        return cls(
            n=int(data["n"]), mean=float(data["mean"]), std=float(data["std"]), cv=float(data["cv"]),
            min=float(data["min"]), max=float(data["max"]),
            percentiles={
                str(k): PercentileEstimate.from_dict(v) for k, v in dict(data["percentiles"]).items()
            },
            confidence=float(data["confidence"]), estimator=str(data.get("estimator", ESTIMATOR)),
            ci_method=str(data.get("ci_method", CI_METHOD)),
        )


def summarize(samples: Sequence[float] | np.ndarray, confidence: float = 0.95) -> SampleSummary:
    """Summarise samples: mean, sample std (ddof=1), cv, extremes and p50/p90/p95/p99 with CIs.

    Raises ValueError on an empty sample set or on NaN/inf values.  ``cv`` is std/|mean|
    (0 when every sample is 0).
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("cannot summarise an empty sample set")
    if not bool(np.isfinite(x).all()):
        raise ValueError(f"samples contain {int((~np.isfinite(x)).sum())} non-finite value(s)")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = np.sort(x)
    n = int(x.size)
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n >= 2 else 0.0
    if mean != 0:
        cv = std / abs(mean)
    else:
        cv = 0.0 if std == 0 else math.inf
    return SampleSummary(
        n=n, mean=mean, std=std, cv=cv, min=float(x[0]), max=float(x[-1]),
        percentiles={name: estimate_percentile(x, name, q, confidence) for name, q in PERCENTILES.items()},
        confidence=confidence,
    )


def ci_half_width_rel(sorted_samples: Sequence[float] | np.ndarray, q: float, confidence: float) -> float | None:
    """The q-quantile's CI half-width relative to the estimate (the larger side), or None while n is too small
    for a CI (or the estimate is 0).

    Cheap enough for a timing loop: O(n) for the sortedness check (a copy is sorted only if needed)
    plus O(sqrt(n)) for the ranks (cached per n)."""
    x = np.asarray(sorted_samples, dtype=np.float64).ravel()
    n = int(x.size)
    if n == 0:
        return None
    if n > 1 and bool((x[1:] < x[:-1]).any()):
        x = np.sort(x)
    ranks = percentile_ci_ranks(n, q, confidence)
    if ranks is None:
        return None
    value = float(x[nearest_rank(n, q) - 1])
    if value == 0:
        return None
    return max(value - float(x[ranks[0] - 1]), float(x[ranks[1] - 1]) - value) / abs(value)


def samples_needed(n: int, estimate: PercentileEstimate, limit: float) -> int | None:
    """Rough total sample count for the CI of ``estimate`` to exclude ``limit``.

    Assumes the half-width on the side facing the limit shrinks like 1/sqrt(n):
    ``ceil(n * (halfwidth / |value - limit|)^2)``.  None when value == limit or there is no CI.
    """
    if estimate.value == limit or estimate.lower is None or estimate.upper is None:
        return None
    half = estimate.upper - estimate.value if limit > estimate.value else estimate.value - estimate.lower
    return math.ceil(round(n * (half / abs(estimate.value - limit)) ** 2, 9))


def ratio_interval(
    num: PercentileEstimate, den: PercentileEstimate
) -> tuple[float, float, float] | None:
    """``(num/den, low, high)`` with the conservative interval ``[num.lower/den.upper, num.upper/den.lower]``.

    Each percentile CI has its own confidence 1 - alpha; by Bonferroni the ratio interval covers the
    true ratio with probability at least 1 - 2*alpha (e.g. 90 % from two 95 % intervals).  None when
    either CI is missing or the denominator's interval reaches zero.  The report uses it for
    "speed-up vs fp32" as ``ratio_interval(fp32_p50, variant_p50)``.
    """
    if num.lower is None or num.upper is None or den.lower is None or den.upper is None:
        return None
    if den.lower <= 0 or den.value <= 0:
        return None
    return num.value / den.value, num.lower / den.upper, num.upper / den.lower


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion (e.g. top-1 accuracy), clamped to [0, 1]."""
    if n <= 0:
        raise ValueError(f"need at least one trial, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    from statistics import NormalDist  # here: statistics pulls in decimal and fractions, which the worker never needs

    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)
