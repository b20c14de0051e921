"""Judging a run: each profile's rows and verdicts (budgets, fidelity vs its fp32 row, task metrics, TensorRT
readiness and emulated accuracy), and the run's one verdict line and exit code.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

from edgeopt.core.host import HostFingerprint
from edgeopt.errors import EXIT_OK
from edgeopt.evaluate.fidelity import Accuracy, OutputFidelity, worst
from edgeopt.evaluate.gate import GateResult, exit_code_for, gate_measurement, judge_outputs
from edgeopt.evaluate.metrics import INTERVAL_METHOD, MetricResult
from edgeopt.evaluate.robustness import ShiftResult
from edgeopt.measure.results import Measurement
from edgeopt.measure.stored import NOT_APPLICABLE_STATUS
from edgeopt.models.variants import Variant, VariantFailure
from edgeopt.profiles.schema import HardwareProfile
from edgeopt.reports.table import Row, build_row, header_lines, render_robustness, render_table, settings_line
from edgeopt.workflows.figures import OutputJudge
from edgeopt.workflows.plan import EvalPlan, RunPlan
from edgeopt.workflows.run_inputs import RunInputs
from edgeopt.workflows.tensorrt_rows import tensorrt_rows

__all__ = ["ProfileJudgement", "RunVerdict", "evaluation_record", "judge_profile", "run_verdict"]

logger = logging.getLogger(__name__)
NOT_MADE = "variants that could not be made"


@dataclass(frozen=True)
class ProfileJudgement:
    """One profile's part of a run: its measurements, rows (TensorRT ones annotated, emulated ones added),
    gates, table header, and the reasons of what failed besides its measurements (an emulation)."""

    profile: HardwareProfile
    measured: list[Measurement]
    rows: list[Row]
    gates: list[GateResult]
    header: list[str]
    failures: list[str]

    @property
    def table(self) -> str:
        robustness = render_robustness(self.rows)
        return "\n".join([*self.header, render_table(self.rows), *([robustness] if robustness else [])])


def judge_profile(plan: RunPlan, inputs: RunInputs, profile: HardwareProfile, measured: list[Measurement],
                  variants: list[Variant]) -> ProfileJudgement:
    """Rows and gates of ``profile``'s measurements, each judged against the profile's budgets and its fp32 row;
    a profile with a ``tensorrt`` section gets its TensorRT rows (``edgeopt.workflows.tensorrt_rows``)."""
    reference = next((m for m in measured if m.variant_name == "fp32" and m.ok), None)
    judge = OutputJudge(reference, plan.layout.measurements, inputs.labels, plan.evaluation, inputs.class_outputs,
                        plan.config.decision_threshold, no_reference=_no_reference(measured))
    gates: list[GateResult] = []
    rows = _runtimes_disagree(_evaluate(measured, profile, judge, gates, plan.config.proxy), profile)
    failures: list[str] = []
    if profile.tensorrt is not None:
        trt = tensorrt_rows(profile, measured, variants, rows, plan.layout.root, judge, gates,
                            reference_path=inputs.reference, reference_sha=inputs.reference_sha,
                            extra_references=inputs.shifted, force=plan.config.force)
        rows, failures = trt.rows, trt.failures
    first = measured[0] if measured else None
    header = [f"profile {profile.name}: nothing measured"]
    if first is not None:
        header = header_lines(profile.name, HostFingerprint.from_dict(first.host).summary(), first.host_matches,
                              list(first.mismatch_reasons), plan.config.proxy)
        ok = next((m for m in measured if m.ok), None)
        if ok is not None:
            header.append(settings_line(ok))
    return ProfileJudgement(profile, measured, rows, gates, header, failures)


@dataclass(frozen=True)
class RunVerdict:
    """The run's exit code and one-line verdict, and the rows of the variants that could not be made."""

    exit_code: int
    line: str
    unmade_rows: list[Row]


def run_verdict(judged: list[ProfileJudgement], variant_failures: list[VariantFailure]) -> RunVerdict:
    """A model a secondary runtime refuses (or a runtime not installed) is a row with its reason; the profile's
    own reference runtime refusing is a failure, as is a variant that could not be made or an emulation.  A recipe
    that does not apply to the model (already quantized, nothing to quantize) is a ``not-applicable`` row: the exit
    code comes from the rows that were measured."""
    gates = [g for j in judged for g in j.gates]
    measurements = [m for j in judged for m in j.measured]
    counted = [m for m in measurements if not m.ok and not (m.unsupported and not _is_reference_runtime(m))]
    emulation_failures = [f for j in judged for f in j.failures]
    unmade_failures = [f for f in variant_failures if not f.not_applicable]  # a recipe that does not apply is no error
    failures = len(unmade_failures) + len(emulation_failures) + len(counted)
    exit_code = exit_code_for(gates, failures=failures)
    reasons = ([f.message for f in unmade_failures] + [m.failure.message for m in counted if m.failure is not None]
               + emulation_failures)
    unmade = [Row(variant=f.name, profile="-", precision="-", expected_fast=False,
                  status=NOT_APPLICABLE_STATUS if f.not_applicable else "failed", failure=f.message,
                  verdict=NOT_APPLICABLE_STATUS if f.not_applicable else "error") for f in variant_failures]
    line = _verdict_line(gates, failures, exit_code, reasons, len(variant_failures) - len(unmade_failures))
    return RunVerdict(exit_code, line, unmade)


def _evaluate(measured: list[Measurement], profile: HardwareProfile, judge: OutputJudge,
              gates: list[GateResult], proxy: bool) -> list[Row]:
    rows = []
    budgets = {k: v for k, v in profile.budgets.model_dump().items() if v is not None}
    for measurement in measured:
        found: list[OutputFidelity] = []
        accuracy: Accuracy | None = None
        metrics: tuple[MetricResult, ...] = ()
        shifts: tuple[ShiftResult, ...] = ()
        if measurement.ok and measurement.outputs_file:
            found, accuracy, metrics, shifts = judge.figures(judge.directory, measurement.outputs_file,
                                                            measurement.output_names)
        gate = None
        if measurement.ok:
            missing, compared = None, found
            if measurement is judge.reference:  # agrees with itself: judged only on NaN/Inf in its own outputs
                compared = [f for f in found if f.nonfinite]
            elif not found:  # never pass: nothing was compared with fp32
                missing = judge.missing_reference(judge.directory, measurement.outputs_file)
            gate = judge_outputs(gate_measurement(measurement, profile, proxy=proxy), budgets, compared,
                                 metrics[0] if metrics else None, missing_reference=missing)
            gates.append(gate)
        rows.append(build_row(measurement, gate, judge.reference, found, accuracy, metrics=metrics, shifts=shifts))
    return rows


QDQ_DIFFERS = "the runtimes execute its Q/DQ differently"
DEFAULT_COSINE_SPREAD = 0.05  # the spread that counts as a disagreement when the profile sets no min_cosine


def _runtimes_disagree(rows: list[Row], profile: HardwareProfile) -> list[Row]:
    """``rows`` with a sentence on every INT8 file whose worst cosine vs fp32 differs across runtimes by more than the
    profile's cosine budget leaves room for (``1 - min_cosine``): the same file, two runtimes' Q/DQ arithmetic
    (each row is still judged on its own figures)."""
    floor = profile.budgets.min_cosine
    spread = 1 - float(floor) if floor is not None else DEFAULT_COSINE_SPREAD
    by_file: dict[str, list[tuple[Row, float]]] = {}
    for row in rows:
        cosine = worst(row.fidelity).get("cosine") if row.status == "ok" and row.precision == "int8" else None
        if cosine is not None and math.isfinite(cosine):
            by_file.setdefault(row.variant.split("@")[0], []).append((row, cosine))
    said: dict[int, str] = {}
    for name, found in by_file.items():
        (low, lo), (high, hi) = min(found, key=lambda f: f[1]), max(found, key=lambda f: f[1])
        if hi - lo > spread:
            sentence = (f"{name}: cosine vs fp32 {lo:.3f} on {low.runtime}, {hi:.3f} on {high.runtime} (more apart "
                        f"than the budget's {spread:.3g}): {QDQ_DIFFERS}")
            logger.warning(sentence)
            said.update((id(row), sentence) for row, _ in found)
    return [dataclasses.replace(row, sentences=(*row.sentences, said[id(row)])) if id(row) in said else row
            for row in rows]


def _no_reference(measured: list[Measurement]) -> str:
    """Why a profile's rows have no fp32 row to be compared with: it failed, or was not measured."""
    fp32 = next((m for m in measured if m.variant_name == "fp32"), None)
    if fp32 is None:
        return "this profile has no fp32 row (it was not asked for: add --variant fp32)"
    lines = fp32.failure.message.splitlines() if fp32.failure is not None else []
    why = next((line.strip() for line in lines if line.strip()), "no reason given")
    return f"the fp32 row failed ({why})"


def _is_reference_runtime(measurement: Measurement) -> bool:
    runtimes = measurement.profile.runtimes
    declared = runtimes.get("backends") or [runtimes.get("backend", "onnxruntime")]
    return measurement.backend.startswith(str(declared[0]))


def evaluation_record(plan: EvalPlan | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    return {"eval_set": plan.eval_set.source, "samples": plan.eval_set.count,
            "metrics": [m.name for m in plan.metrics], "interval": INTERVAL_METHOD,
            "shifts": [{"name": s.name, "severity": s.severity, "label": s.label} for s in plan.shifts],
            "value_space": plan.space.describe() if plan.space is not None else None,
            "fragile_rule": "extra drop vs fp32 under the shift beyond the clean-data drop, paired bootstrap "
                            "95% interval wholly above 0"}


def _verdict_line(gates: list[GateResult], failures: int, exit_code: int,
                  reasons: tuple[str, ...] | list[str] = (), not_applicable: int = 0) -> str:
    """The run's one-line verdict; ``reasons``: why each failed variant or measurement failed (the first
    named in the line, so the reader of the table sees why without opening run.log); ``not_applicable``: recipes
    that do not apply to the model (counted, no error)."""
    counts: dict[str, int] = {}
    for gate in gates:
        counts[gate.verdict.value] = counts.get(gate.verdict.value, 0) + 1
    parts = [f"{n} {v}" for v, n in sorted(counts.items())]
    if failures:
        more = f"; and {len(reasons) - 1} more" if len(reasons) > 1 else ""
        parts.append(f"{failures} failed to build or measure" + (f" ({reasons[0]}{more})" if reasons else ""))
    if not_applicable:
        parts.append(f"{not_applicable} recipe(s) not applicable to this model")
    word = {EXIT_OK: "PASS"}.get(exit_code, {1: "FAIL", 4: "ERROR", 5: "INCONCLUSIVE"}.get(exit_code, "ERROR"))
    if exit_code == EXIT_OK and counts and set(counts) == {"not-applicable"}:
        word = "NOT APPLICABLE"
    if exit_code == 5 and "inconclusive" not in counts and "invalid" in counts:
        word = "INVALID MEASUREMENT"
    return f"verdict: {word} (exit {exit_code}): " + (", ".join(parts) or "nothing measured")
