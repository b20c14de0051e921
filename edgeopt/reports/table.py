"""Reports a human reads: the side-by-side variant table (terminal) and a Markdown summary.

Every latency is shown with its confidence interval and sample count; the estimator and the
interval method are named in the header, and a proxy run says so on every line.  A measurement that
broke its profile's stability policy shows ``invalid``, and the Markdown spells out the broken rule and
the run's stability diagnosis.  A variant whose outputs hold NaN/Inf says so in its fidelity cell
("outputs contain NaN/Inf: ...") and in the Markdown's details; a metric with NaN/Inf scores says so in
its accuracy cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from tabulate import tabulate

from edgeopt.core.fileio import restore_floats
from edgeopt.core.stats import CI_METHOD, ESTIMATOR, PercentileEstimate, ratio_interval
from edgeopt.evaluate.fidelity import Accuracy, OutputFidelity, nonfinite_problems, worst
from edgeopt.evaluate.gate import GateResult
from edgeopt.evaluate.metrics import MetricResult, short_cell
from edgeopt.evaluate.robustness import ShiftResult
from edgeopt.measure.results import Measurement
from edgeopt.measure.stored import EMULATED_STATUS, NOT_APPLICABLE_STATUS


@dataclass(frozen=True)
class Row:
    """One (variant, profile) line of the comparison."""

    variant: str
    profile: str
    precision: str
    expected_fast: bool
    status: str
    samples: int | None = None
    p50_ms: dict[str, Any] | None = None
    p95_ms: dict[str, Any] | None = None
    peak_rss_mb: float | None = None
    model_added_mb: float | None = None
    size_mb: float | None = None
    speedup: tuple[float, float, float] | None = None
    fidelity: tuple[OutputFidelity, ...] = ()
    accuracy: Accuracy | None = None
    verdict: str = "n/a"
    sentences: tuple[str, ...] = ()
    failure: str | None = None
    proxy: bool = False
    stability: str | None = None  # one-line stability diagnosis (StabilityReport.describe())
    runtime: str = "onnxruntime"  # backend, and for OpenVINO the inference precision asked for
    metrics: tuple[MetricResult, ...] = ()  # task metrics on the eval set (first = the table's accuracy column)
    shifts: tuple[ShiftResult, ...] = ()  # every metric under every input shift (edgeopt.evaluate.robustness)
    evidence: str | None = None  # TensorRT rows: "built on GPU" | "statically verified" | ... (workflows.tensorrt_rows)
    readiness: str | None = None  # TensorRT rows: the static readiness verdict of the file it builds
    blockers: tuple[str, ...] = ()  # TensorRT rows: the first blockers the static check found
    node: str | None = None  # lab runs: the node that measured the row, "<hostname> (<node id, 12 hex>)"

    def __post_init__(self) -> None:  # rows read back from summary.json carry plain dicts (NaN/Inf as strings)
        object.__setattr__(self, "fidelity", tuple(
            f if isinstance(f, OutputFidelity) else OutputFidelity.from_dict(f) for f in self.fidelity or ()))
        object.__setattr__(self, "metrics", tuple(
            m if isinstance(m, MetricResult) else MetricResult.from_dict(m) for m in self.metrics or ()))
        object.__setattr__(self, "shifts", tuple(
            s if isinstance(s, ShiftResult) else ShiftResult.from_dict(restore_floats(s, _SHIFT_FLOATS))
            for s in self.shifts or ()))
        object.__setattr__(self, "blockers", tuple(self.blockers or ()))

    def problems(self) -> list[str]:
        """What is not a number in this row, in words: outputs holding NaN/Inf, metrics scoring NaN/Inf."""
        return [*nonfinite_problems(self.fidelity), *(text for m in self.metrics if (text := m.problem()))]

    def notes(self) -> list[str]:
        """Why an output was not compared with fp32 (a sequence/map or string output, a shape that varies)."""
        return [f.note for f in self.fidelity if f.note]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fidelity"] = [f.to_dict() for f in self.fidelity]
        data["accuracy"] = self.accuracy.to_dict() if self.accuracy else None
        data["metrics"] = [m.to_dict() for m in self.metrics]
        data["shifts"] = [s.to_dict() for s in self.shifts]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Row:
        """A ``summary.json`` row back (inverse of :meth:`to_dict`; a NaN/Inf figure, written as ``"NaN"``/
        ``"Infinity"``, is a float again: ``edgeopt.core.fileio``)."""
        speedup = data.get("speedup")
        accuracy = data.get("accuracy")
        handled = {"variant", "profile", "precision", "expected_fast", "status", "samples", "p50_ms", "p95_ms",
                   "peak_rss_mb", "model_added_mb", "size_mb", "speedup", "fidelity", "accuracy", "verdict",
                   "sentences", "failure", "proxy"}
        extra = {f.name: data[f.name] for f in fields(cls) if f.name not in handled and f.name in data}
        return cls(
            variant=str(data["variant"]), profile=str(data["profile"]), precision=str(data.get("precision", "-")),
            expected_fast=bool(data.get("expected_fast", False)), status=str(data.get("status", "failed")),
            samples=data.get("samples"), p50_ms=data.get("p50_ms"), p95_ms=data.get("p95_ms"),
            peak_rss_mb=data.get("peak_rss_mb"), model_added_mb=data.get("model_added_mb"),
            size_mb=data.get("size_mb"),
            speedup=None if speedup is None else (float(speedup[0]), float(speedup[1]), float(speedup[2])),
            fidelity=tuple(OutputFidelity.from_dict(f) for f in data.get("fidelity") or ()),
            accuracy=None if accuracy is None else Accuracy.from_dict(accuracy),
            verdict=str(data.get("verdict", "n/a")), sentences=tuple(data.get("sentences") or ()),
            failure=data.get("failure"), proxy=bool(data.get("proxy", False)), **extra,
        )


_SHIFT_FLOATS = tuple(f.name for f in fields(ShiftResult) if "float" in str(f.type))


def build_row(measurement: Measurement, gate: GateResult | None, reference: Measurement | None,
              fidelity: list[OutputFidelity], accuracy: Accuracy | None, *,
              metrics: tuple[MetricResult, ...] = (), shifts: tuple[ShiftResult, ...] = ()) -> Row:
    common = dict(variant=measurement.variant_name, profile=measurement.profile_name,
                  precision=measurement.variant.precision, expected_fast=measurement.expected_fast,
                  size_mb=measurement.variant.size_bytes / 2**20,
                  proxy=gate.proxy if gate is not None else False, runtime=measurement.runtime_label,
                  node=lab_node(measurement))
    if not measurement.ok or measurement.latency is None:
        message = measurement.failure.message if measurement.failure else "failed"
        if measurement.unsupported:
            return Row(status="unsupported", failure=message, verdict="unsupported", **common)  # type: ignore[arg-type]
        return Row(status="failed", failure=message, verdict="error", **common)  # type: ignore[arg-type]
    summary = measurement.latency.summary()
    p50, p95 = summary.percentiles["p50"], summary.percentiles["p95"]
    speedup = None
    if reference is not None and reference.ok and reference.latency is not None:
        speedup = ratio_interval(reference.latency.summary().percentiles["p50"], p50)
    memory = measurement.memory
    report = measurement.stability_report()
    sentences = (*gate.invalid_reasons, *(c.sentence for c in gate.checks)) if gate is not None else ()
    return Row(
        status="ok", samples=summary.n, p50_ms=p50.to_dict(), p95_ms=p95.to_dict(),
        peak_rss_mb=memory.peak_rss_mb if memory else None,
        model_added_mb=memory.model_added_mb if memory else None, speedup=speedup,
        fidelity=tuple(fidelity), accuracy=accuracy, metrics=metrics, shifts=shifts,
        verdict=gate.verdict.value if gate is not None else "n/a",
        sentences=sentences, stability=report.describe() if report is not None else None,
        **common,  # type: ignore[arg-type]
    )


def lab_node(measurement: Measurement) -> str | None:
    """``<hostname> (<node id, 12 hex>)`` of the lab node a measurement ran on; None for a local one."""
    lab = measurement.lab or {}
    if not lab.get("node_id"):
        return None
    return f"{lab.get('hostname') or '?'} ({str(lab['node_id'])[:12]})"


def _ci(estimate: dict[str, Any] | None) -> str:
    if estimate is None:
        return "-"
    e = PercentileEstimate.from_dict(estimate)
    if e.lower is None or e.upper is None:
        return f"{e.value:.4g} [no CI]"
    return f"{e.value:.4g} [{e.lower:.4g}, {e.upper:.4g}]"


def _speedup(value: tuple[float, float, float] | None) -> str:
    return "-" if value is None else f"{value[0]:.2f}x [{value[1]:.2f}, {value[2]:.2f}]"


def _nonfinite_cell(found: tuple[OutputFidelity, ...]) -> str | None:
    """``outputs contain NaN/Inf: 3 NaN, 5 Inf of 32 values``, or None when every output is finite."""
    nan, inf = sum(f.nan_values for f in found), sum(f.inf_values for f in found)
    fp32 = sum(f.reference_nonfinite for f in found)
    if not nan and not inf and not fp32:
        return None
    counts = ", ".join(f"{n} {kind}" for n, kind in ((nan, "NaN"), (inf, "Inf")) if n)
    values = sum(f.values for f in found)
    text = f"outputs contain NaN/Inf: {counts} of {values} values" if counts else "outputs finite"
    return text + (f" (fp32's too: {fp32})" if fp32 else "")


def _fidelity(row: Row) -> str:
    """The worst figure of each kind across the row's outputs (cosine, top-1 and decision agreement), led by
    the count of NaN/Inf values when an output holds any."""
    figures = worst(row.fidelity)
    flag = _nonfinite_cell(row.fidelity)
    if not figures:
        if not row.fidelity:
            return "-"
        worst_abs = max((f.max_abs_error for f in row.fidelity), key=lambda v: (v != v, v))  # NaN counts as largest
        return "; ".join([*([flag] if flag else []), f"max abs {worst_abs:.3g}"])
    parts = [f"cos {figures['cosine']:.4f}"] if "cosine" in figures else []
    parts += [f"top1 {100 * figures['top1']:.1f}%"] if "top1" in figures else []
    parts += [f"decision {100 * figures['decision']:.1f}%"] if "decision" in figures else []
    return "; ".join([*([flag] if flag else []), ", ".join(parts)])


def _accuracy(row: Row) -> str:
    """The first task metric with its bootstrap interval (``top1`` unnamed), else the Wilson top-1."""
    if row.metrics:
        first = row.metrics[0]
        return ("" if first.metric == "top1" else f"{first.metric} ") + first.format_value()
    a = row.accuracy
    return "-" if a is None else f"{100 * a.value:.1f}% [{100 * a.lower:.1f}, {100 * a.upper:.1f}]"


def _delta(row: Row) -> str:
    return row.metrics[0].format_delta() if row.metrics else "-"


def _tensorrt_cell(row: Row) -> str:
    """``statically verified for TensorRT 10.3; not built: ...`` (or the blockers' rules) for a TensorRT row."""
    readiness = row.readiness or ""
    if row.evidence == "statically verified":
        return readiness.split(" (")[0].replace("statically ready", "statically verified: ready")
    return readiness.split("; static check")[0]


def _cells(row: Row) -> list[str]:
    native = "yes" if row.expected_fast else "no"
    size = f"{row.size_mb:.2f}" if row.size_mb else "-"
    if row.status == EMULATED_STATUS:  # accuracy only: a CPU time of a TensorRT-bound file means nothing
        return [row.variant.split("@")[0], row.runtime, "-", "-", "-", "-", "-", size, "-", _fidelity(row),
                _accuracy(row), _delta(row), ("PROXY " if row.proxy else "") + row.verdict]
    if row.status != "ok":
        label = row.status if row.status in ("unsupported", NOT_APPLICABLE_STATUS) else "error"
        text = f"{label}: {row.failure}"
        if row.readiness and row.evidence != "built on GPU":
            text = f"{_tensorrt_cell(row)}; not built: {str(row.failure).rsplit(': ', 1)[-1]}"
        first = text.splitlines()[0] if text else text  # a variant that could not be made: its whole first line
        return [row.variant.split("@")[0], row.runtime, native, "-", "-", "-", "-", size, "-", "-", "-", "-",
                first if row.profile == "-" else text[:110]]
    verdict = ("PROXY " if row.proxy else "") + row.verdict
    return [row.variant.split("@")[0], row.runtime, native, str(row.samples), _ci(row.p50_ms), _ci(row.p95_ms),
            f"{row.peak_rss_mb:.0f}" if row.peak_rss_mb is not None else "-",
            f"{row.size_mb:.2f}" if row.size_mb is not None else "-", _speedup(row.speedup), _fidelity(row),
            _accuracy(row), _delta(row), verdict]


HEADERS = ["variant", "runtime", "native", "n", "p50 ms [95% CI]", "p95 ms [95% CI]", "peak MB", "size MB",
           "speed-up vs fp32 (p50)", "fidelity vs fp32", "accuracy [95% CI]", "Δ vs fp32 (paired)", "verdict"]


def render_robustness(rows: list[Row], *, tablefmt: str = "simple") -> str:
    """Per variant and input shift: the first metric, its paired change vs fp32 under the same shift, and
    FRAGILE where the drop under the shift exceeds the clean-data drop (paired interval wholly above 0).
    A title line, then the table in tabulate's ``tablefmt`` (``github`` for Markdown, ``html``, which
    escapes the cells).  Empty when no row has shift results."""
    shifted = [r for r in rows if r.shifts]
    if not shifted:
        return ""
    metric = shifted[0].shifts[0].metric
    labels: list[str] = []
    for row in shifted:
        for result in row.shifts:
            if result.shift not in labels:
                labels.append(result.shift)
    table = []
    for row in shifted:
        by_shift: Mapping[str, ShiftResult] = {s.shift: s for s in row.shifts if s.metric == metric}
        clean = next((m for m in row.metrics if m.metric == metric), None)
        clean_cell = "-" if clean is None else _clean_cell(clean)
        table.append([row.variant.split("@")[0], row.runtime, clean_cell,
                      *(by_shift[label].format_cell() if label in by_shift else "-" for label in labels)])
    title = (f"robustness: {metric} under input shift; Δ = change vs fp32 under the same shift (paired 95% "
             "bootstrap); FRAGILE = drop under the shift exceeds the clean-data drop (paired interval above 0)")
    body = tabulate(table, headers=["variant", "runtime", "clean", *labels], tablefmt=tablefmt,
                    disable_numparse=True)
    return f"{title}\n{body}"


def _clean_cell(metric: MetricResult) -> str:
    return short_cell(metric.value, metric.percent, metric.delta, metric.delta_lower, metric.delta_upper)


def settings_line(measurement: Measurement) -> str:
    """Runtime, threads and stop rule of a measurement, in one line."""
    session, bench = measurement.session, measurement.bench
    versions = " ".join(f"{k} {v}" for k, v in measurement.versions.items() if k in ("onnxruntime", "numpy"))
    return (f"settings: {session.get('backend')} ({versions}), {session.get('intra_op_threads')} intra-op thread(s), "
            f"providers {','.join(measurement.providers_active) or '-'}, "
            f"warm-up {bench.get('warmup_iterations')} calls (reference inputs included) and >= "
            f"{bench.get('warmup_seconds', 0)} s, "
            f"stop when the {bench.get('stop_percentile')} CI is within "
            f"±{100 * float(bench.get('target_ci_rel', 0)):g}%"
            f" or after {bench.get('max_seconds')} s (min {bench.get('min_iterations')} samples)"
            + (f"; inputs {inputs_text(measurement.input_shapes)}" if measurement.input_shapes else ""))


def inputs_text(shapes: dict[str, list[int]]) -> str:
    """``x 1x3x48x320, sr scalar``: the concrete shape every input was timed at."""
    return ", ".join(f"{name} {'x'.join(map(str, shape)) or 'scalar'}" for name, shape in shapes.items())


def header_lines(profile: str, host_summary: str, host_matches: bool, reasons: list[str], proxy: bool) -> list[str]:
    if host_matches:
        where = f"this host IS {profile} ({host_summary})"
    elif proxy:
        where = f"PROXY: measured on {host_summary}, NOT on {profile}; every number is a proxy"
    else:
        where = f"this host is NOT {profile} ({'; '.join(reasons)}): budgets are not applicable (use --proxy)"
    return [f"profile {profile}: {where}",
            f"latency: {ESTIMATOR} percentiles, CI {CI_METHOD}; speed-up interval is conservative (two 95% CIs)"]


def markdown_text(text: str) -> str:
    """``text`` inert in Markdown: ``&``, ``<`` and ``>`` as entities (a model, output or profile name is never
    HTML in a PR comment, whatever renders it)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _markdown_cell(text: str) -> str:
    return markdown_text(text).replace("|", "\\|").replace("\n", " ")


def render_table(rows: list[Row], *, markdown: bool = False) -> str:
    """The variant table; a lab run's table gains a ``node`` column (which board measured each row)."""
    fmt = "github" if markdown else "simple"
    table = [[*_cells(r), r.node or "-"] if any(x.node for x in rows) else _cells(r) for r in rows]
    headers = [*HEADERS, "node"] if any(r.node for r in rows) else HEADERS
    if markdown:
        table = [[_markdown_cell(str(cell)) for cell in row] for row in table]
    return tabulate(table, headers=headers, tablefmt=fmt, disable_numparse=True)


def _invalid(sentence: str) -> bool:
    return sentence.removeprefix("PROXY ").startswith("invalid measurement")


def render_markdown(sections: list[tuple[list[str], list[Row]]], verdict_line: str,
                    recommendations: Sequence[str] = ()) -> str:
    """A PR-comment-sized summary: the verdict and each profile's recommended row, one table per profile, the
    failed and undecided budgets spelt out."""
    lines = ["# edgeopt results", "", f"**{verdict_line}**", ""]
    if recommendations:
        lines += [f"- {markdown_text(line)}" for line in recommendations] + [""]
    for header, rows in sections:
        lines += [f"- {markdown_text(h)}" for h in header] + ["", render_table(rows, markdown=True), ""]
        robustness = render_robustness(rows, tablefmt="github")
        if robustness:
            title, _, body = robustness.partition("\n")
            lines += [title, "", body, ""]
        notes = [f"{r.variant}: {s}" for r in rows for s in r.sentences
                 if " > budget" in s or " < floor" in s or "fails " in s or "inconclusive" in s or _invalid(s)
                 or "Q/DQ differently" in s]
        notes += [f"{r.variant}: {p}" for r in rows for p in r.problems()
                  if not any(p in s for s in r.sentences)]  # said once: not again where a check says it
        notes += [f"{r.variant}: {n}" for r in rows for n in r.notes() if not any(n in s for s in r.sentences)]
        notes += [f"{r.variant}: stability: {r.stability}" for r in rows if r.verdict == "invalid" and r.stability]
        notes += [f"{r.variant}: {r.failure}" for r in rows if r.failure]
        notes += [f"{r.variant}: {r.readiness}" for r in rows if r.readiness and r.status != EMULATED_STATUS]
        notes += [f"{r.variant}: TensorRT would refuse: {b}" for r in rows if r.status != EMULATED_STATUS
                  for b in r.blockers]
        if notes:
            lines += ["Details:", ""] + [f"- {markdown_text(n)}" for n in notes] + [""]
    return "\n".join(lines)
