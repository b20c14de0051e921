"""CSV of a run for pandas: one row per (variant, profile) with every statistic and interval.

``results.csv`` (:data:`RESULT_COLUMNS`): latencies in ms (``p50_ms``, ``p50_ms_lower``,
``p50_ms_upper``, ... for p50/p90/p95/p99), memory and size in MiB, speed-up vs fp32 with its
conservative interval, fidelity of the first output (with its count of NaN and Inf values; a NaN/Inf
figure is the cell ``NaN``/``Infinity``/``-Infinity``, which pandas reads as a float), accuracy with its
Wilson interval, the first task
metric (``metric``, ``metric_value`` with its bootstrap interval, ``metric_delta`` vs fp32 with its paired
interval), the overall verdict and, per budget metric, its limit and verdict; the broken stability rules
of an invalid measurement and the stability diagnosis line, when the run has them.  A run with task
metrics or input shifts appends, after these, per metric ``<metric>``, ``<metric>_lower``, ``_upper``,
``_delta``, ``_delta_lower``, ``_delta_upper``, and per shift and metric ``<shift>/<metric>`` with the
same suffixes plus ``_extra_drop`` (``_lower``, ``_upper``) and ``_fragile`` (see ``edgeopt.evaluate.robustness``).
Variants that could not be made have ``profile`` ``-``.  An empty cell is a missing value (``pd.read_csv``
reads it as NaN).

The samples CSV (:func:`write_samples_csv`) is long format: ``variant, profile, index, latency_ms``,
one row per timed call, in order.

**Formula injection.**  A text cell (or column name) that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return (a model given as ``=HYPERLINK(...).onnx``) would be run as a formula by a spreadsheet; it is
written with a leading single quote (``'=HYPERLINK(...)``), as OWASP advises.  Numbers are written as numbers
(``-0.5`` stays a number), and the lone ``-`` of an unmade variant's profile stays ``-``.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeopt.core.fileio import jsonable
from edgeopt.measure.stored import result_stem

if TYPE_CHECKING:
    from edgeopt.reports.run_data import RunData
    from edgeopt.reports.table import Row

PERCENTILE_NAMES = ("p50", "p90", "p95", "p99")
BUDGET_METRICS = ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "peak_rss_mb", "model_size_mb")  # as edgeopt.evaluate.gate

RESULT_COLUMNS: tuple[str, ...] = (
    "model", "profile", "variant", "precision", "native", "status", "verdict", "proxy", "host_matches",
    "host", "cpu_model", "arch", "logical_cores", "n", "mean_ms", "std_ms", "cv", "min_ms", "max_ms",
    *(f"{p}_ms{suffix}" for p in PERCENTILE_NAMES for suffix in ("", "_lower", "_upper")),
    "confidence", "estimator", "ci_method", "stop_reason", "throughput_per_s", "load_ms", "first_inference_ms",
    "peak_rss_mb", "model_added_mb", "size_mb", "speedup", "speedup_lower", "speedup_upper",
    "fidelity_output", "fidelity_cosine", "fidelity_min_cosine", "fidelity_sqnr_db", "fidelity_max_abs_error",
    "fidelity_top1_agreement", "fidelity_nan_values", "fidelity_inf_values",
    "accuracy", "accuracy_lower", "accuracy_upper", "accuracy_samples",
    "metric", "metric_value", "metric_lower", "metric_upper", "metric_delta", "metric_delta_lower",
    "metric_delta_upper", "metric_samples",
    *(f"{m}_{what}" for m in BUDGET_METRICS for what in ("budget", "verdict")),
    "invalid_reasons", "stability", "onnxruntime_version", "numpy_version", "edgeopt_version", "commit",
    "created_at", "failure_kind",
    "failure_message", "measurement_file",
)
SAMPLE_COLUMNS: tuple[str, ...] = ("variant", "profile", "index", "latency_ms")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str) -> str:
    """``value`` with a leading ``'`` when a spreadsheet would take it for a formula (module docstring)."""
    return f"'{value}" if value.startswith(_FORMULA_START) and value != "-" else value


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return jsonable(value)  # NaN, Infinity, -Infinity: the spelling summary.json has
    return value


def result_records(run: RunData) -> list[dict[str, Any]]:
    """One dict per row of ``results.csv``, keyed by :data:`RESULT_COLUMNS`."""
    records = []
    for row in run.rows:
        variant, profile = row.variant, row.profile
        m = run.measurements.get((variant, profile))
        rec: dict[str, Any] = dict.fromkeys(RESULT_COLUMNS)
        rec.update(model=run.summary.model, profile=profile, variant=variant, precision=row.precision,
                   native=row.expected_fast, status=row.status, verdict=row.verdict, proxy=row.proxy,
                   peak_rss_mb=row.peak_rss_mb, model_added_mb=row.model_added_mb, size_mb=row.size_mb,
                   failure_message=row.failure)
        if row.speedup:
            rec["speedup"], rec["speedup_lower"], rec["speedup_upper"] = row.speedup
        if row.fidelity:
            first = row.fidelity[0]
            rec.update(fidelity_output=first.output, fidelity_cosine=first.cosine,
                       fidelity_min_cosine=first.min_cosine, fidelity_sqnr_db=first.sqnr_db,
                       fidelity_max_abs_error=first.max_abs_error, fidelity_top1_agreement=first.top1_agreement,
                       fidelity_nan_values=first.nan_values, fidelity_inf_values=first.inf_values)
        if row.accuracy:
            a = row.accuracy
            rec.update(accuracy=a.value, accuracy_lower=a.lower, accuracy_upper=a.upper, accuracy_samples=a.samples)
        rec.update(_metric_cells(row))
        if m is not None:
            rec.update(host_matches=m.host_matches, host=m.host.get("hostname"), cpu_model=m.host.get("cpu_model"),
                       arch=m.host.get("arch"), logical_cores=m.host.get("logical_cores"),
                       load_ms=m.load_ms, first_inference_ms=m.first_inference_ms,
                       onnxruntime_version=m.versions.get("onnxruntime"), numpy_version=m.versions.get("numpy"),
                       edgeopt_version=m.versions.get("edgeopt"), commit=m.commit, created_at=m.created_at,
                       failure_kind=m.failure.kind if m.failure else None,
                       measurement_file=f"measurements/{result_stem(variant, profile)}.json")
            budgets = m.profile.budgets
            for metric in BUDGET_METRICS:
                rec[f"{metric}_budget"] = budgets.get(metric)
            if m.latency is not None:
                s = m.latency.summary()
                rec.update(n=s.n, mean_ms=s.mean, std_ms=s.std, cv=s.cv, min_ms=s.min, max_ms=s.max,
                           confidence=s.confidence, estimator=s.estimator, ci_method=s.ci_method,
                           stop_reason=m.latency.stop_reason, throughput_per_s=m.latency.throughput_per_s)
                for name in PERCENTILE_NAMES:
                    est = s.percentiles.get(name)
                    if est is not None:
                        rec[f"{name}_ms"], rec[f"{name}_ms_lower"], rec[f"{name}_ms_upper"] = (
                            est.value, est.lower, est.upper)
        rec["stability"] = row.stability
        gate = run.gate(variant, profile)
        rec["invalid_reasons"] = "; ".join(gate.invalid_reasons) if gate is not None and gate.invalid_reasons else None
        for check in gate.checks if gate is not None else ():
            rec[f"{check.metric}_budget"] = check.limit
            rec[f"{check.metric}_verdict"] = check.verdict.value
        records.append(rec)
    return records


def _metric_cells(row: Row) -> dict[str, Any]:
    cells: dict[str, Any] = {}
    if row.metrics:
        first = row.metrics[0]
        cells.update(metric=first.metric, metric_value=first.value, metric_lower=first.lower,
                     metric_upper=first.upper, metric_delta=first.delta, metric_delta_lower=first.delta_lower,
                     metric_delta_upper=first.delta_upper, metric_samples=first.samples)
    suffixes = ("", "_lower", "_upper", "_delta", "_delta_lower", "_delta_upper")
    for m in row.metrics:
        for suffix in suffixes:
            cells[f"{m.metric}{suffix}"] = getattr(m, suffix.lstrip("_") or "value")
    for s in row.shifts:
        key = f"{s.shift}/{s.metric}"
        for suffix in (*suffixes, "_extra_drop", "_extra_drop_lower", "_extra_drop_upper", "_fragile"):
            cells[f"{key}{suffix}"] = getattr(s, suffix.lstrip("_") or "value")
    return cells


def _extra_columns(records: list[dict[str, Any]]) -> tuple[str, ...]:
    """Per-metric and per-shift columns in first-seen order (absent from runs without them)."""
    seen: dict[str, None] = {}
    for record in records:
        for key in record:
            if key not in RESULT_COLUMNS:
                seen.setdefault(key, None)
    return tuple(seen)


def _render(columns: tuple[str, ...], records: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([_text(column) for column in columns])
    for record in records:
        writer.writerow([_cell(record.get(k)) for k in columns])
    return buffer.getvalue()


def render_results_csv(run: RunData) -> str:
    records = result_records(run)
    return _render(RESULT_COLUMNS + _extra_columns(records), records)


def write_results_csv(run: RunData, path: Path) -> Path:
    """Write ``results.csv`` of ``run`` to ``path`` atomically; returns ``path``."""
    from edgeopt.core.fileio import write_text_atomic

    write_text_atomic(Path(path), render_results_csv(run))
    return Path(path)


def write_samples_csv(run: RunData, path: Path) -> Path:
    """Write every latency sample (ms) of ``run``, one row each, to ``path`` atomically; returns ``path``."""
    from edgeopt.core.fileio import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(SAMPLE_COLUMNS)
        for (variant, profile), m in run.measurements.items():
            if m.latency is not None:
                writer.writerows((_text(variant), _text(profile), i, s / 1e6)
                                 for i, s in enumerate(m.latency.samples_ns))
    return path
