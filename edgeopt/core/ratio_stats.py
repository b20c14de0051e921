"""Ratios of latency statistics with bootstrap intervals, thresholds, and the verdict rule.

The change is ``candidate / baseline``.  Latency statistics (``p50``, ``p90``, ``p95``, ``p99``:
nearest-rank percentiles; ``mean``) get a percentile-bootstrap confidence interval over the raw
samples (seeded, vectorised) and a bootstrap p-value for "ratio = 1"; with cluster ids shared by the
two sides (``edgeopt ab``: its segments) whole clusters are resampled together.  Thresholds are
``STATISTIC:PERCENT%``.  The verdict rule (documented in docs/regressions.md), with ``[lo, hi]`` the
ratio's interval and ``t`` the threshold: **unchanged** when ``1/(1+t) <= lo`` and ``hi <= 1+t``;
**regressed** when ``lo > 1`` and ``hi > 1+t``; **improved** when ``hi < 1`` and ``lo < 1/(1+t)``; else
**inconclusive**.  Memory and size: regressed above ``1+t``, improved below ``1/(1+t)``.

Numpy only: the A/B worker imports this module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgeopt.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIDENCE", "DEFAULT_RESAMPLES", "DEFAULT_THRESHOLDS", "LATENCY_STATISTICS", "SCALAR_STATISTICS",
    "RatioEstimate", "Threshold", "Verdict", "bootstrap_ratio", "latency_verdict", "parse_threshold",
    "parse_thresholds", "scalar_verdict",
]

Verdict = Literal["regressed", "improved", "unchanged", "inconclusive"]
LATENCY_STATISTICS: dict[str, float | None] = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "mean": None}
SCALAR_STATISTICS: tuple[str, ...] = ("peak_rss_mb", "model_size_mb")
DEFAULT_THRESHOLDS: tuple[str, ...] = ("p50:5%", "p95:5%", "peak_rss_mb:10%", "model_size_mb:1%")
DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
_CHUNK_ELEMENTS = 2_000_000  # bound on the bootstrap's temporary arrays (elements per chunk)


# ------------------------------------------------------------------------------------------ thresholds

@dataclass(frozen=True)
class Threshold:
    """A relative tolerance on one statistic: ``p95:5%`` is ``Threshold("p95", 0.05)``."""

    statistic: str
    rel: float

    @property
    def is_latency(self) -> bool:
        return self.statistic in LATENCY_STATISTICS

    def __str__(self) -> str:
        return f"{self.statistic}:{self.rel * 100:g}%"


_THRESHOLD_RE = re.compile(r"^\s*([A-Za-z0-9_]+)\s*:\s*([0-9]*\.?[0-9]+)\s*%\s*$")


def parse_threshold(text: str | Threshold) -> Threshold:
    """Parse ``NAME:NUMBER%`` (``p95:5%``, ``peak_rss_mb:10%``); ConfigError on anything else."""
    if isinstance(text, Threshold):
        return text
    match = _THRESHOLD_RE.match(str(text))
    known = ", ".join([*LATENCY_STATISTICS, *SCALAR_STATISTICS])
    if match is None:
        raise ConfigError(f"threshold {text!r}: expected STATISTIC:PERCENT%, e.g. p95:5% (statistics: {known})")
    name, value = match.group(1), float(match.group(2))
    name = name.removesuffix("_ms") if name.removesuffix("_ms") in LATENCY_STATISTICS else name
    if name not in LATENCY_STATISTICS and name not in SCALAR_STATISTICS:
        raise ConfigError(f"threshold {text!r}: unknown statistic {name!r}; known: {known}")
    if not 0.0 < value < 100.0:
        raise ConfigError(f"threshold {text!r}: the percentage must be > 0 and < 100, got {value:g}")
    return Threshold(name, value / 100.0)


def parse_thresholds(items: Iterable[str | Threshold] | None) -> tuple[Threshold, ...]:
    """Parse several thresholds (default :data:`DEFAULT_THRESHOLDS`); one per statistic."""
    parsed = tuple(parse_threshold(t) for t in (DEFAULT_THRESHOLDS if items is None else items))
    if not parsed:
        raise ConfigError("no thresholds given: pass at least one, e.g. p95:5%")
    names = [t.statistic for t in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"threshold for {', '.join(duplicates)} given more than once")
    return parsed


# ------------------------------------------------------------------------------------------ bootstrap

@dataclass(frozen=True)
class RatioEstimate:
    """``candidate / baseline`` of one statistic, with its bootstrap interval and p-value."""

    statistic: str
    baseline: float
    candidate: float
    ratio: float
    lower: float
    upper: float
    p_value: float
    confidence: float
    n_baseline: int
    n_candidate: int
    blocks: int | None
    method: str

    @property
    def rel_halfwidth(self) -> float:
        """Largest distance from the ratio to an interval end, relative to the ratio."""
        return max(self.ratio - self.lower, self.upper - self.ratio) / self.ratio if self.ratio > 0 else math.inf


def _nearest_rank_index(n: np.ndarray | int, q: float) -> Any:
    """0-based nearest-rank index ``ceil(q*n) - 1`` clamped to [0, n-1] (vectorised over n)."""
    k = np.ceil(np.round(q * np.asarray(n, dtype=np.float64), 9)).astype(np.int64)
    return np.clip(k, 1, np.maximum(np.asarray(n), 1)) - 1


def _statistic(x: np.ndarray, q: float | None) -> float:
    if q is None:
        return float(x.mean())
    xs = np.sort(x)
    return float(xs[int(_nearest_rank_index(len(xs), q))])


def _iid_draws(x: np.ndarray, q: float | None, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap distribution of the statistic, samples resampled independently.

    For a nearest-rank percentile this is exact and O(resamples): a resample is ``xs[ceil(n*U_i)-1]``
    for uniform U_i, a monotone map, so its k-th order statistic is ``xs[ceil(n*U_(k))-1]`` with
    ``U_(k) ~ Beta(k, n+1-k)``.  The mean is resampled directly, in bounded chunks.
    """
    n = len(x)
    if q is not None:
        xs = np.sort(x)
        k = int(_nearest_rank_index(n, q)) + 1
        u = rng.beta(k, n + 1 - k, size=resamples)
        return xs[np.clip(np.ceil(n * u).astype(np.int64) - 1, 0, n - 1)]
    out = np.empty(resamples)
    rows = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        out[start:stop] = x[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return out


def _block_draws(arms: Sequence[tuple[np.ndarray, np.ndarray]], q: float | None, resamples: int,
                 rng: np.random.Generator) -> list[np.ndarray]:
    """Paired block bootstrap: resample block ids (shared by the arms) with replacement.

    ``arms`` holds ``(samples, block_index)`` per arm, block indices into one shared id table.  A
    replicate draws every block id with multinomial counts ``w``; each arm's statistic is computed on
    its samples weighted by their block's count (a weighted nearest-rank percentile via a cumulative
    sum over the sorted samples, or a weighted mean), without materialising the resamples.
    """
    n_blocks = 1 + max(int(b.max()) for _, b in arms)
    prepared = []
    for x, b in arms:
        order = np.argsort(x, kind="stable")
        prepared.append((x[order], b[order], np.bincount(b, weights=x, minlength=n_blocks),
                         np.bincount(b, minlength=n_blocks).astype(np.float64)))
    n_max = max(len(x) for x, _ in arms)
    rows = max(1, _CHUNK_ELEMENTS // max(n_max, n_blocks))
    outs = [np.empty(resamples) for _ in arms]
    probabilities = np.full(n_blocks, 1.0 / n_blocks)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        weights = rng.multinomial(n_blocks, probabilities, size=stop - start)
        for out, (xs, bs, sums, counts) in zip(outs, prepared, strict=True):
            totals = weights @ counts
            with np.errstate(invalid="ignore", divide="ignore"):
                if q is None:
                    out[start:stop] = (weights @ sums) / totals
                    continue
                cum = np.cumsum(weights[:, bs], axis=1)
                index = (cum < (_nearest_rank_index(totals, q) + 1)[:, None]).sum(axis=1)
                values = xs[np.minimum(index, len(xs) - 1)]
                out[start:stop] = np.where(totals > 0, values, np.nan)
    return outs


def bootstrap_ratio(
    baseline: Sequence[float] | np.ndarray,
    candidate: Sequence[float] | np.ndarray,
    statistic: str,
    *,
    baseline_blocks: Sequence[int] | np.ndarray | None = None,
    candidate_blocks: Sequence[int] | np.ndarray | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> RatioEstimate:
    """``statistic(candidate) / statistic(baseline)`` with a percentile-bootstrap interval and p-value.

    Without block ids the two sides are resampled independently.  With block ids (both or neither),
    blocks with the same id in both arms are resampled together (paired block bootstrap), so a drift
    shared by adjacent A and B blocks cancels and correlation within a block is kept.  The p-value is
    the two-sided bootstrap test of ratio = 1 obtained by inverting the percentile interval:
    ``min(1, 2*min(#(r* <= 1) + 1, #(r* >= 1) + 1) / (resamples + 1))``.
    """
    if statistic not in LATENCY_STATISTICS:
        known = ", ".join(LATENCY_STATISTICS)
        raise ConfigError(f"statistic {statistic!r} has no bootstrap; latency statistics: {known}")
    if not 0.5 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0.5, 1), got {confidence}")
    q = LATENCY_STATISTICS[statistic]
    a = np.asarray(baseline, dtype=np.float64).ravel()
    b = np.asarray(candidate, dtype=np.float64).ravel()
    for name, x in (("baseline", a), ("candidate", b)):
        if x.size < 2:
            raise ValueError(f"{name}: need at least 2 samples, got {x.size}")
        if not bool(np.isfinite(x).all()) or bool((x <= 0).any()):
            raise ValueError(f"{name}: samples must be finite and positive")
    rng = np.random.default_rng(seed)
    if (baseline_blocks is None) != (candidate_blocks is None):
        raise ValueError("give block ids for both sides or for neither")
    blocks: int | None = None
    if baseline_blocks is None or candidate_blocks is None:
        draws_a, draws_b = _iid_draws(a, q, resamples, rng), _iid_draws(b, q, resamples, rng)
        method = "percentile bootstrap, independent resampling" + (" (exact Beta order statistic)" if q else "")
    else:
        ids_a, ids_b = np.asarray(baseline_blocks).ravel(), np.asarray(candidate_blocks).ravel()
        if ids_a.shape != a.shape or ids_b.shape != b.shape:
            raise ValueError("block ids must have one entry per sample")
        table, index = np.unique(np.concatenate([ids_a, ids_b]), return_inverse=True)
        blocks = int(table.size)
        draws_a, draws_b = _block_draws([(a, index[: a.size]), (b, index[a.size:])], q, resamples, rng)
        method = "percentile bootstrap, paired block resampling"
    ratios = draws_b / draws_a
    ratios = ratios[np.isfinite(ratios)]
    alpha = 1.0 - confidence
    lower, upper = (float(v) for v in np.quantile(ratios, [alpha / 2, 1 - alpha / 2]))
    m = ratios.size
    p = min(1.0, 2.0 * min(int((ratios <= 1).sum()) + 1, int((ratios >= 1).sum()) + 1) / (m + 1))
    base_value, cand_value = _statistic(a, q), _statistic(b, q)
    return RatioEstimate(statistic, base_value, cand_value, cand_value / base_value, lower, upper, p, confidence,
                         int(a.size), int(b.size), blocks, method)


def latency_verdict(lower: float, upper: float, rel: float) -> Verdict:
    """The interval rule: unchanged inside the band, regressed/improved when significant and not inside it."""
    high, low = 1.0 + rel, 1.0 / (1.0 + rel)
    if lower >= low and upper <= high:
        return "unchanged"
    if lower > 1.0 and upper > high:
        return "regressed"
    if upper < 1.0 and lower < low:
        return "improved"
    return "inconclusive"


def scalar_verdict(ratio: float, rel: float) -> Verdict:
    """Memory and size: regressed above ``1+t``, improved below ``1/(1+t)``, else unchanged."""
    if ratio > 1.0 + rel:
        return "regressed"
    if ratio < 1.0 / (1.0 + rel):
        return "improved"
    return "unchanged"
