"""Two-sample comparison of stored measurements: change ratios with bootstrap intervals, and verdicts.

For each (variant, profile) present in both a baseline and a candidate, and each statistic with a
threshold (``p95:5%``, ``peak_rss_mb:10%``), the change is ``candidate / baseline``:

* latency statistics (``p50``, ``p90``, ``p95``, ``p99``: nearest-rank percentiles; ``mean``) get a
  percentile-bootstrap confidence interval over the raw samples (seeded, vectorised) and a bootstrap
  p-value for "ratio = 1"; with block ids (``edgeopt ab``) the bootstrap resamples whole block pairs;
* memory and size (``peak_rss_mb``, ``model_size_mb``) are single numbers: a direct ratio.

The verdict rule (documented in docs/regressions.md), with ``[lo, hi]`` the ratio's interval and
``t`` the threshold: **unchanged** when ``1/(1+t) <= lo`` and ``hi <= 1+t``; **regressed** when
``lo > 1`` and ``hi > 1+t``; **improved** when ``hi < 1`` and ``lo < 1/(1+t)``; else
**inconclusive**.  Memory and size: regressed above ``1+t``, improved below ``1/(1+t)``.

Numpy only at import (the A/B worker imports this module); files are read by :func:`compare_paths`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edgeopt.errors import (
    EXIT_BACKEND_FAILURE,
    EXIT_BUDGET_FAILED,
    EXIT_INCONCLUSIVE,
    EXIT_OK,
    ConfigError,
    InputRejectedError,
)

if TYPE_CHECKING:
    from edgeopt.results import Measurement

__all__ = [
    "Comparison", "MeasuredSet", "RatioEstimate", "StatComparison", "Threshold", "Verdict", "bootstrap_ratio",
    "compare_measurements", "compare_paths", "compare_sets", "latency_verdict", "load_sets", "parse_threshold",
    "parse_thresholds", "scalar_verdict",
]

Verdict = Literal["regressed", "improved", "unchanged", "inconclusive"]
LATENCY_STATISTICS: dict[str, float | None] = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "mean": None}
SCALAR_STATISTICS: tuple[str, ...] = ("peak_rss_mb", "model_size_mb")
DEFAULT_THRESHOLDS: tuple[str, ...] = ("p50:5%", "p95:5%", "peak_rss_mb:10%", "model_size_mb:1%")
CROSS_HOST_MIN_REL = 0.10  # latency thresholds tighter than this are refused across hosts unless forced
DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
_CHUNK_ELEMENTS = 2_000_000  # bound on the bootstrap's temporary arrays (elements per chunk)
_HOST_KEYS = ("arch", "cpu_model", "cpu_flags", "logical_cores", "memory_total_gb")
_VERSION_KEYS = ("edgeopt", "onnxruntime", "numpy", "python")


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


# ------------------------------------------------------------------------------------------ inputs

@dataclass(frozen=True)
class MeasuredSet:
    """What a comparison needs of one measurement: raw latency samples (ms), memory, size, provenance."""

    variant: str
    profile: str
    source: str
    samples_ms: np.ndarray | None
    blocks: np.ndarray | None = None
    peak_rss_mb: float | None = None
    model_size_mb: float | None = None
    host: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, Any] = field(default_factory=dict)
    runtime: Mapping[str, Any] | None = None
    failure: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.variant, self.profile

    @classmethod
    def from_measurement(cls, measurement: Measurement, source: str = "") -> MeasuredSet:
        samples = None
        if measurement.latency is not None and measurement.latency.samples_ns:
            samples = np.asarray(measurement.latency.samples_ns, dtype=np.float64) / 1e6
        failure = None
        if not measurement.ok:
            failure = measurement.failure.message if measurement.failure else "measurement failed"
        settings = measurement.profile.get("settings") or {}
        return cls(
            variant=measurement.variant_name, profile=measurement.profile_name, source=source, samples_ms=samples,
            peak_rss_mb=(measurement.memory or {}).get("peak_rss_mb"),
            model_size_mb=measurement.variant.get("size_bytes", 0) / 2**20 if "size_bytes" in measurement.variant
            else None,
            host=measurement.host, versions=measurement.versions, runtime=settings.get("runtime"), failure=failure,
        )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _from_pytest_benchmark(document: Mapping[str, Any], path: Path) -> list[MeasuredSet]:
    """pytest-benchmark saved JSON: one set per ``benchmarks[]`` entry, named by its ``fullname``.

    ``stats.data`` holds one time per round (seconds; the mean of ``iterations`` calls), present only
    when saved with ``--benchmark-save-data``.  The profile is ``pytest-benchmark``; the host comes from
    ``machine_info`` (CPU brand, flags, count, machine), versions from Python and pytest-benchmark.
    """
    info = document.get("machine_info") or {}
    cpu = info.get("cpu") or {}
    host = {"arch": info.get("machine"), "cpu_model": cpu.get("brand_raw"), "cpu_flags": cpu.get("flags"),
            "logical_cores": cpu.get("count")}
    versions = {"python": info.get("python_version"), "pytest-benchmark": document.get("version")}
    sets: list[MeasuredSet] = []
    for entry in document.get("benchmarks") or []:
        name = str(entry.get("fullname") or entry.get("name"))
        data = (entry.get("stats") or {}).get("data")
        if not data:
            raise InputRejectedError(f"{path}: pytest-benchmark entry {name!r} has no raw data (stats.data); "
                                     "save the run with --benchmark-save-data to compare it")
        samples = np.asarray(data, dtype=np.float64) * 1e3
        sets.append(MeasuredSet(name, "pytest-benchmark", str(path), samples, host={k: v for k, v in host.items()
                                                                                    if v is not None},
                                versions={k: v for k, v in versions.items() if v is not None}))
    if not sets:
        raise InputRejectedError(f"{path}: pytest-benchmark file holds no benchmarks")
    return sets


def _load_file(path: Path) -> list[MeasuredSet]:
    import json

    from pydantic import ValidationError

    from edgeopt.results import SCHEMA_VERSION, Measurement

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputRejectedError(f"{path}: cannot read: {_first_line(error)}") from error
    try:
        document = json.loads(text)
    except ValueError as error:
        raise InputRejectedError(f"{path}: not valid JSON (truncated or corrupt?): {_first_line(error)}") from error
    if not isinstance(document, dict):
        raise InputRejectedError(f"{path}: not an edgeopt measurement or pytest-benchmark file (top level is not "
                                 "an object)")
    if "benchmarks" in document and "machine_info" in document:
        return _from_pytest_benchmark(document, path)
    if document.get("kind") != "measurement":
        raise InputRejectedError(f"{path}: not an edgeopt measurement (kind {document.get('kind')!r}) nor a "
                                 "pytest-benchmark file")
    if document.get("schema_version") != SCHEMA_VERSION:
        raise InputRejectedError(f"{path}: measurement schema_version {document.get('schema_version')!r} is not "
                                 f"supported (this edgeopt reads {SCHEMA_VERSION}); measure it again")
    try:
        measurement = Measurement.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise InputRejectedError(f"{path}: invalid measurement: {where}: {first['msg']}") from error
    return [MeasuredSet.from_measurement(measurement, str(path))]


def load_sets(path: Path | str) -> list[MeasuredSet]:
    """Every measurement in ``path``: a measurement JSON, a pytest-benchmark JSON, a run folder (its
    ``measurements/``) or a folder of such JSON files.  Anything unreadable is an error naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputRejectedError(f"{path}: no such file or folder")
    if path.is_dir():
        folder = path / "measurements" if (path / "measurements").is_dir() else path
        files = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
        if not files:
            raise InputRejectedError(f"{folder}: no measurement JSON files in this folder")
    else:
        files = [path]
    sets: list[MeasuredSet] = []
    seen: dict[tuple[str, str], str] = {}
    for file in files:
        for item in _load_file(file):
            if item.key in seen:
                raise InputRejectedError(f"{path}: {item.variant} on {item.profile} appears twice ({seen[item.key]} "
                                         f"and {file}); compare one file each")
            seen[item.key] = str(file)
            sets.append(item)
    return sets


# ------------------------------------------------------------------------------------------ comparison

def _fmt(value: float) -> str:
    return f"{value:.4g}"


@dataclass(frozen=True)
class StatComparison:
    """The verdict on one statistic of one (variant, profile)."""

    variant: str
    profile: str
    statistic: str
    threshold: float
    verdict: Verdict
    baseline: float | None
    candidate: float | None
    ratio: float | None
    lower: float | None
    upper: float | None
    p_value: float | None
    n_baseline: int | None
    n_candidate: int | None
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _latency_row(base: MeasuredSet, cand: MeasuredSet, threshold: Threshold, confidence: float,
                 resamples: int) -> StatComparison:
    label = f"{threshold.statistic} of {base.variant} on {base.profile}"
    if base.samples_ms is None or cand.samples_ms is None:
        return StatComparison(base.variant, base.profile, threshold.statistic, threshold.rel, "inconclusive",
                              None, None, None, None, None, None, None, None, f"{label}: no latency samples")
    est = bootstrap_ratio(base.samples_ms, cand.samples_ms, threshold.statistic, baseline_blocks=base.blocks,
                          candidate_blocks=cand.blocks, confidence=confidence, resamples=resamples)
    verdict = latency_verdict(est.lower, est.upper, threshold.rel)
    sentence = (f"{label}: {est.ratio:.3f}x [{est.lower:.3f}, {est.upper:.3f}] (p={est.p_value:.3g}; "
                f"{_fmt(est.baseline)} -> {_fmt(est.candidate)} ms, n={est.n_baseline}/{est.n_candidate}) vs "
                f"threshold {threshold.rel * 100:g}%: {verdict}")
    return StatComparison(base.variant, base.profile, threshold.statistic, threshold.rel, verdict, est.baseline,
                          est.candidate, est.ratio, est.lower, est.upper, est.p_value, est.n_baseline,
                          est.n_candidate, sentence)


def _scalar_row(base: MeasuredSet, cand: MeasuredSet, threshold: Threshold) -> StatComparison:
    label = f"{threshold.statistic} of {base.variant} on {base.profile}"
    a, b = getattr(base, threshold.statistic), getattr(cand, threshold.statistic)
    if a is None or b is None or a <= 0:
        return StatComparison(base.variant, base.profile, threshold.statistic, threshold.rel, "inconclusive", a, b,
                              None, None, None, None, None, None, f"{label}: value missing on one side")
    ratio = b / a
    verdict = scalar_verdict(ratio, threshold.rel)
    sentence = f"{label}: {ratio:.3f}x ({_fmt(a)} -> {_fmt(b)} MB) vs threshold {threshold.rel * 100:g}%: {verdict}"
    return StatComparison(base.variant, base.profile, threshold.statistic, threshold.rel, verdict, a, b, ratio,
                          None, None, None, None, None, sentence)


def _host_differences(base: Mapping[str, Any], cand: Mapping[str, Any]) -> list[str]:
    diffs = []
    for key in _HOST_KEYS:
        a, b = base.get(key), cand.get(key)
        if a is None or b is None:
            continue
        if key == "cpu_flags":
            missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
            if missing or extra:
                diffs.append(f"cpu_flags differ (baseline only: {' '.join(missing[:8]) or '-'}; candidate only: "
                             f"{' '.join(extra[:8]) or '-'})")
        elif key == "memory_total_gb":
            if abs(float(a) - float(b)) > max(0.5, 0.02 * max(float(a), float(b))):
                diffs.append(f"memory {float(a):g} GiB vs {float(b):g} GiB")
        elif a != b:
            diffs.append(f"{key} {a!r} vs {b!r}")
    return diffs


def _version_differences(base: Mapping[str, Any], cand: Mapping[str, Any]) -> list[str]:
    keys = sorted((set(base) & set(cand)) | (set(_VERSION_KEYS) & (set(base) | set(cand))))
    return [f"{k} {base.get(k)} vs {cand.get(k)}" for k in keys if base.get(k) != cand.get(k)]


@dataclass(frozen=True)
class Comparison:
    """Every statistic compared, the warnings (other host, other versions, unpaired) and failures."""

    rows: tuple[StatComparison, ...]
    warnings: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()
    cross_host: bool = False

    @property
    def exit_code(self) -> int:
        """1 if any regressed, else 4 if a measurement failed, else 5 if any inconclusive, else 0."""
        verdicts = {row.verdict for row in self.rows}
        if "regressed" in verdicts:
            return EXIT_BUDGET_FAILED
        if self.failures:
            return EXIT_BACKEND_FAILURE
        if "inconclusive" in verdicts:
            return EXIT_INCONCLUSIVE
        return EXIT_OK

    @property
    def verdict(self) -> str:
        counts = {v: sum(r.verdict == v for r in self.rows) for v in ("regressed", "improved", "unchanged",
                                                                     "inconclusive")}
        parts = [f"{n} {v}" for v, n in counts.items() if n]
        if self.failures:
            parts.append(f"{len(self.failures)} failed measurement(s)")
        word = {1: "REGRESSED", 4: "ERROR", 5: "INCONCLUSIVE", 0: "OK"}[self.exit_code]
        return f"compare: {word} (exit {self.exit_code}): {', '.join(parts) or 'nothing compared'}"

    def render(self) -> str:
        lines = [f"WARNING: {w}" for w in self.warnings]
        lines += [f"FAILED: {f}" for f in self.failures]
        lines += [row.sentence for row in self.rows]
        lines.append(self.verdict)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "comparison", "rows": [r.to_dict() for r in self.rows], "warnings": list(self.warnings),
                "failures": list(self.failures), "cross_host": self.cross_host, "exit_code": self.exit_code,
                "verdict": self.verdict}


def compare_sets(
    baseline: Sequence[MeasuredSet],
    candidate: Sequence[MeasuredSet],
    thresholds: Iterable[str | Threshold] | None = None,
    *,
    allow_cross_host: bool = False,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
) -> Comparison:
    """Pair sets by (variant, profile) and judge every threshold; see the module docstring for the rule.

    Raises ConfigError when nothing pairs, or when the two sides were measured on different hosts and a
    latency threshold is tighter than 10 % (unless ``allow_cross_host``).
    """
    parsed = parse_thresholds(thresholds)
    base_by_key = {s.key: s for s in baseline}
    cand_by_key = {s.key: s for s in candidate}
    paired = [k for k in base_by_key if k in cand_by_key]
    if not paired:
        raise ConfigError(f"nothing to compare: no (variant, profile) in both; baseline has "
                          f"{sorted(base_by_key) or 'none'}, candidate has {sorted(cand_by_key) or 'none'}")
    warnings: list[str] = []
    for key in sorted(set(base_by_key) ^ set(cand_by_key)):
        side = "baseline" if key in base_by_key else "candidate"
        warnings.append(f"{key[0]} on {key[1]} is only in the {side}: not compared")
    host_diffs: dict[str, list[str]] = {}
    failures: list[str] = []
    rows: list[StatComparison] = []
    for key in paired:
        base, cand = base_by_key[key], cand_by_key[key]
        diffs = _host_differences(base.host, cand.host)
        if diffs:
            host_diffs[f"{key[0]} on {key[1]}"] = diffs
        versions = _version_differences(base.versions, cand.versions)
        if versions:
            warnings.append(f"{key[0]} on {key[1]}: library versions differ: {'; '.join(versions)}")
        if base.runtime is not None and cand.runtime is not None and base.runtime != cand.runtime:
            warnings.append(f"{key[0]} on {key[1]}: the profile's runtime settings differ between the two")
        failed = [f"{side} {s.source}: {s.failure}" for side, s in (("baseline", base), ("candidate", cand))
                  if s.failure]
        if failed:
            failures.extend(failed)
            continue
        for threshold in parsed:
            if threshold.is_latency:
                rows.append(_latency_row(base, cand, threshold, confidence, resamples))
            else:
                rows.append(_scalar_row(base, cand, threshold))
    cross_host = bool(host_diffs)
    if cross_host:
        first = next(iter(host_diffs.items()))
        warnings.insert(0, f"MEASURED ON DIFFERENT HOSTS ({len(host_diffs)} pair(s); e.g. {first[0]}: "
                           f"{'; '.join(first[1])}): differences may be the machine, not the model; "
                           "use `edgeopt ab` on one host to gate regressions")
        tight = [str(t) for t in parsed if t.is_latency and t.rel < CROSS_HOST_MIN_REL]
        if tight and not allow_cross_host:
            raise ConfigError(f"baseline and candidate were measured on different hosts ({'; '.join(first[1])}); "
                              f"latency threshold(s) {', '.join(tight)} are tighter than "
                              f"{CROSS_HOST_MIN_REL * 100:g}% across hosts: loosen them or pass --allow-cross-host")
    return Comparison(tuple(rows), tuple(warnings), tuple(failures), cross_host)


def compare_measurements(
    baseline: Measurement,
    candidate: Measurement,
    thresholds: Iterable[str | Threshold] | None = None,
    *,
    allow_cross_host: bool = False,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
) -> Comparison:
    """Compare two measurements of the same (variant, profile); see :func:`compare_sets`."""
    return compare_sets([MeasuredSet.from_measurement(baseline, "baseline")],
                        [MeasuredSet.from_measurement(candidate, "candidate")], thresholds,
                        allow_cross_host=allow_cross_host, confidence=confidence, resamples=resamples)


def compare_paths(
    baseline_path: Path | str,
    candidate_path: Path | str,
    thresholds: Iterable[str | Threshold] | None = None,
    *,
    allow_cross_host: bool = False,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
) -> Comparison:
    """Compare stored results: measurement JSON files, run folders, folders of JSON, pytest-benchmark files."""
    parsed = parse_thresholds(thresholds)
    return compare_sets(load_sets(baseline_path), load_sets(candidate_path), parsed,
                        allow_cross_host=allow_cross_host, confidence=confidence, resamples=resamples)
