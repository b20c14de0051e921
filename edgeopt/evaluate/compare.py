"""Two-sample comparison of stored measurements: change ratios with bootstrap intervals, and verdicts.

For each (variant, profile) present in both a baseline and a candidate, and each statistic with a
threshold (``p95:5%``, ``peak_rss_mb:10%``), the change is ``candidate / baseline``: latency statistics
get a bootstrap interval and the interval rule, memory and size a direct ratio (both in
:mod:`edgeopt.core.ratio_stats`).  Inputs are measurement JSON files, run folders or pytest-benchmark saved
JSON; every file must load, and different hosts or library versions are warned about (tight latency
thresholds across hosts are refused unless forced).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeopt.core.ratio_stats import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    Threshold,
    Verdict,
    bootstrap_ratio,
    latency_verdict,
    parse_thresholds,
    scalar_verdict,
)
from edgeopt.errors import (
    EXIT_BACKEND_FAILURE,
    EXIT_BUDGET_FAILED,
    EXIT_INCONCLUSIVE,
    EXIT_OK,
    ConfigError,
    InputRejectedError,
    first_line,
)

if TYPE_CHECKING:
    from edgeopt.measure.results import Measurement

__all__ = ["Comparison", "MeasuredSet", "StatComparison", "compare_measurements", "compare_paths", "compare_sets",
           "load_sets"]

CROSS_HOST_MIN_REL = 0.10  # latency thresholds tighter than this are refused across hosts unless forced
_HOST_KEYS = ("arch", "cpu_model", "cpu_flags", "logical_cores", "memory_total_gb")
_VERSION_KEYS = ("edgeopt", "onnxruntime", "numpy", "python")


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
        settings = measurement.profile.settings
        return cls(
            variant=measurement.variant_name, profile=measurement.profile_name, source=source, samples_ms=samples,
            peak_rss_mb=measurement.memory.peak_rss_mb if measurement.memory else None,
            model_size_mb=measurement.variant.size_bytes / 2**20,
            host=measurement.host, versions=measurement.versions, runtime=settings.get("runtime"), failure=failure,
        )



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
        try:
            samples = np.asarray(data, dtype=np.float64).ravel() * 1e3
        except (TypeError, ValueError) as error:
            raise InputRejectedError(f"{path}: pytest-benchmark entry {name!r}: stats.data is not a list of "
                                     f"numbers ({first_line(error)})") from error
        if not bool(np.all(np.isfinite(samples))) or bool(np.any(samples < 0)):
            raise InputRejectedError(f"{path}: pytest-benchmark entry {name!r}: stats.data holds NaN, infinite or "
                                     "negative times; the results file was modified or is corrupt")
        sets.append(MeasuredSet(name, "pytest-benchmark", str(path), samples, host={k: v for k, v in host.items()
                                                                                    if v is not None},
                                versions={k: v for k, v in versions.items() if v is not None}))
    if not sets:
        raise InputRejectedError(f"{path}: pytest-benchmark file holds no benchmarks")
    return sets


def _load_file(path: Path) -> list[MeasuredSet]:
    from edgeopt.core.fileio import JsonLimitError, read_json
    from edgeopt.measure.stored import load_measurement

    try:
        document = read_json(path)  # size- and depth-checked before parsing
    except JsonLimitError as error:
        raise InputRejectedError(first_line(error)) from error
    except UnicodeDecodeError as error:
        raise InputRejectedError(f"{path}: cannot read: not UTF-8 text ({first_line(error)})") from error
    except OSError as error:
        raise InputRejectedError(f"{path}: cannot read: {first_line(error)}") from error
    except ValueError as error:
        raise InputRejectedError(f"{path}: not valid JSON (truncated or corrupt?): {first_line(error)}") from error
    if not isinstance(document, dict):
        raise InputRejectedError(f"{path}: not an edgeopt measurement or pytest-benchmark file (top level is not "
                                 "an object)")
    if "benchmarks" in document and "machine_info" in document:
        return _from_pytest_benchmark(document, path)
    if document.get("kind") != "measurement":
        raise InputRejectedError(f"{path}: not an edgeopt measurement (kind {document.get('kind')!r}) nor a "
                                 "pytest-benchmark file")
    measurement = load_measurement(path, document)
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
