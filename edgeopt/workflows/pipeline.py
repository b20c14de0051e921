"""``run_pipeline``: model reference + profiles + calibration → variants, measurements, verdicts, reports.

The run reads in five steps: plan (``edgeopt.workflows.plan``: every input checked once, nothing written yet)
→ make the model and its variants and the inputs every cell runs (``edgeopt.workflows.run_inputs``) → measure
every cell (``RunConfig.measure``: here in order, or on a Ray device lab) → judge each profile
(``edgeopt.workflows.judge``) → write the summary and the reports.

Resumable: the exported model, each variant and each measurement is on disk (atomically) before the next step
starts, and a rerun reuses whatever still matches its inputs (``force=True`` redoes everything).  One run per
output folder at a time: the run holds the folder's lock (``edgeopt.core.run_lock``) from its first check to
its last report.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edgeopt.core.fileio import write_json_atomic, write_text_atomic
from edgeopt.core.logs import warnings_to_file
from edgeopt.core.revision import project_revision
from edgeopt.core.run_lock import run_lock
from edgeopt.evaluate.gate import GateResult
from edgeopt.measure.cell import measure_cells
from edgeopt.measure.results import Measurement, now_iso
from edgeopt.models.variants import Variant, VariantFailure
from edgeopt.reports.recommendation import recommend_all
from edgeopt.reports.run_summary import RunSummary
from edgeopt.reports.table import Row, render_markdown, render_table
from edgeopt.workflows.judge import (
    NOT_MADE,
    ProfileJudgement,
    RunVerdict,
    evaluation_record,
    judge_profile,
    run_verdict,
)
from edgeopt.workflows.plan import RunConfig, RunPlan, plan_run
from edgeopt.workflows.run_inputs import make_run_variants, resolve_model, write_run_inputs

__all__ = ["RunConfig", "RunResult", "run_pipeline"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """What a run made, measured and decided, and where its summary is."""

    out_dir: Path
    model_path: Path
    variants: list[Variant]
    variant_failures: list[VariantFailure]
    measurements: list[Measurement]
    gates: list[GateResult]
    rows: list[Row]
    tables: list[str]
    exit_code: int
    summary_path: Path
    markdown_path: Path


def run_pipeline(config: RunConfig) -> RunResult:
    """Plan (every input validated before anything is written), make, measure, judge and report, holding the
    output folder's lock throughout (a second command on the folder stops at once: ``FolderBusyError``, exit 2)."""
    with run_lock(config.out_dir, "run"):
        plan = plan_run(config)
        plan.layout.root.mkdir(parents=True, exist_ok=True)
        for line in plan.describe():
            logger.info(line)
        _claim_folder(plan)
        with _runtime_warnings_to(plan.layout.run_log) as warned:
            model_path = resolve_model(plan)
            variants, variant_failures = make_run_variants(plan, model_path)
            inputs = write_run_inputs(plan, model_path)
            cells = plan.cells(variants)
            measured = (config.measure or measure_cells)(cells, inputs.context(plan))
            judged = [judge_profile(plan, inputs, profile, [m for cell, m in zip(cells, measured, strict=True)
                                                            if cell.profile is profile], variants)
                      for profile in plan.profiles]
            result = _write_summary(plan, model_path, variants, variant_failures, judged,
                                    run_verdict(judged, variant_failures))
        if warned():
            logger.info(f"{warned()} runtime warning(s) (ONNX Runtime, OpenVINO, the quantizer) in "
                        f"{plan.layout.run_log}; -v shows them")
        return result


def _claim_folder(plan: RunPlan) -> None:
    """Remove another model's results (``plan.replaces``, under ``--force``), then record this run's model in the
    folder before anything is made or measured (``RunLayout.model_marker``)."""
    layout = plan.layout
    if plan.replaces:
        for folder in (layout.variants, layout.measurements, layout.inputs):
            shutil.rmtree(folder, ignore_errors=True)
        for path in (layout.summary_json, layout.summary_md, layout.model, *layout.root.glob("reference_inputs*.npz")):
            path.unlink(missing_ok=True)
    write_json_atomic(layout.model_marker, {"model": plan.config.model, "model_sha256": plan.model_sha256})


@contextlib.contextmanager
def _runtime_warnings_to(log: Path) -> Iterator[Callable[[], int]]:
    """Runtime warnings (Python's, and ONNX Runtime's C++ ones in this process) go to ``log``, not the console;
    yields the count so far (the workers keep their own stderr)."""
    import onnxruntime as ort

    with warnings_to_file(log) as warned:
        ort.set_default_logger_severity(3)
        try:
            yield warned
        finally:
            ort.set_default_logger_severity(2)


def _write_summary(plan: RunPlan, model_path: Path, variants: list[Variant], variant_failures: list[VariantFailure],
                   judged: list[ProfileJudgement], verdict: RunVerdict) -> RunResult:
    """``summary.json``, ``summary.md`` and the reports beside them (HTML, JUnit XML, CSV)."""
    layout, unmade = plan.layout, verdict.unmade_rows
    rows = [row for j in judged for row in j.rows] + unmade
    gates = [gate for j in judged for gate in j.gates]
    tables = [j.table for j in judged]
    if unmade:  # e.g. int8-trt-modelopt without its venv: the row says how to enable it
        tables.append(f"{NOT_MADE}\n" + render_table(unmade))
    recommended = recommend_all(rows, [p.name for p in plan.profiles])
    summary = RunSummary(model=plan.config.model, model_path=str(model_path), model_sha256=plan.model_sha256,
                         calibration=plan.calibration.describe() if plan.calibration else None,
                         profiles=[p.name for p in plan.profiles], profile_files=plan.profile_files(),
                         evaluation=evaluation_record(plan.evaluation),
                         rows=rows, gates=gates, exit_code=verdict.exit_code, verdict=verdict.line,
                         recommendations=[r.to_dict() for r in recommended], revision=project_revision(),
                         created_at=now_iso())
    write_json_atomic(layout.summary_json, summary.model_dump(mode="json"))
    sections = [(j.header, j.rows) for j in judged] + ([([NOT_MADE], unmade)] if unmade else [])
    write_text_atomic(layout.summary_md, render_markdown(sections, verdict.line, [r.line() for r in recommended]))
    from edgeopt.reports.writers import write_run_reports

    write_run_reports(layout.root)  # report.html, junit.xml, results.csv beside summary.json
    return RunResult(layout.root, model_path, variants, variant_failures, [m for j in judged for m in j.measured],
                     gates, rows, tables, verdict.exit_code, layout.summary_json, layout.summary_md)
