"""``run_pipeline``: model reference + profiles + calibration → variants, measurements, verdicts, reports.

Resumable: the exported model, each variant and each measurement is on disk (atomically)
before the next step starts, and a rerun reuses whatever still matches its inputs
(``force=True`` redoes everything).  One run per output folder at a time: the run holds the folder's
lock (``edgeopt.core.run_lock``) from its first check to its last report.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.backends import cells_for
from edgeopt.core import progress
from edgeopt.core.fileio import (
    read_json,
    sha256_file,
    sha256_json,
    write_json_atomic,
    write_npz_atomic,
    write_text_atomic,
)
from edgeopt.core.host import host_fingerprint
from edgeopt.core.logs import warnings_to_file
from edgeopt.core.run_lock import run_lock
from edgeopt.errors import EXIT_OK, BackendError, ConfigError, EdgeoptError, first_line
from edgeopt.evaluate.fidelity import Accuracy, OutputFidelity, fidelity, top1_accuracy
from edgeopt.evaluate.gate import GateResult, exit_code_for, gate_measurement, judge_outputs
from edgeopt.evaluate.metrics import (
    INTERVAL_METHOD,
    EvalSet,
    MetricResult,
    MetricSpec,
    Scores,
    check_metrics,
    default_metrics,
    load_eval_set,
    load_output_list,
    parse_metric,
    resample_indices,
    score_outputs,
    summarise,
)
from edgeopt.evaluate.robustness import (
    Shift,
    ShiftResult,
    ValueSpace,
    apply_shift,
    parse_shifts,
    shift_result,
    value_space,
)
from edgeopt.measure.launcher import (
    extra_outputs_file,
    prepare_timing_inputs,
)
from edgeopt.measure.results import Measurement
from edgeopt.measure.run_folder import RunLayout, RunSummary
from edgeopt.models.calibration import CalibrationSet, InputSpec, load_calibration
from edgeopt.models.factory import FactoryResult, declared_inputs, factory_result
from edgeopt.models.graph import class_score_outputs, cpu_session, input_specs, load_model, output_specs
from edgeopt.models.inputs import resolve_shapes, stacked_feeds, synthetic_feeds
from edgeopt.models.modelref import (
    InputDeclaration,
    ModelReference,
    factory_source_sha256,
)
from edgeopt.models.quantize import (
    LEFT_FLOAT_IN_SUBGRAPHS,
    Recipe,
    Variant,
    VariantFailure,
    default_variants,
    make_variants,
)
from edgeopt.profiles.schema import HardwareProfile, load_profile
from edgeopt.reports.table import (
    Row,
    build_row,
    header_lines,
    render_markdown,
    render_robustness,
    render_table,
    settings_line,
)
from edgeopt.workflows.cells import Cell, CellContext, MeasureCells, measure_cells
from edgeopt.workflows.tensorrt_rows import tensorrt_rows

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    """Everything ``edgeopt run`` needs; the CLI builds exactly this."""

    model: str
    profiles: tuple[str, ...]
    out_dir: Path
    calibration: str | None = None
    variants: tuple[str, ...] = ()  # empty: the defaults for the profiles' CPU classes (default_variants)
    skip_variants: tuple[str, ...] = ()  # default variants left out (bench.py's latency job: same-graph recipes)
    eval_set: str | None = None
    inputs: tuple[InputSpec, ...] = ()  # --input: dims that are names stay dynamic in an export
    dim_sizes: dict[str, int] = field(default_factory=dict)  # --input's name=size hints (example/timing sizes)
    opset: int | None = None  # None: the exporter's own (dynamo: its default >= 18; torchscript: 17)
    exporter: str = "dynamo"
    with_past: bool = False  # a causal LM exported with its key/value cache as inputs and outputs
    budgets: dict[str, float] = field(default_factory=dict)
    proxy: bool = False
    force: bool = False
    min_calibration_samples: int = 16
    max_calibration_samples: int | None = None
    reference_samples: int = 16
    decision_threshold: float = 0.5  # decision agreement of outputs in [0, 1] (fidelity)
    metrics: tuple[str, ...] = ()  # task metrics on the eval set (edgeopt.evaluate.metrics); default by the eval file
    shifts: tuple[str, ...] = ()  # eval-set input shifts (edgeopt.evaluate.robustness): "noise", "blur:1.5", "all"
    shift_range: tuple[float, float] | None = None  # pixel value range the shifts act in; default: inferred
    measure: MeasureCells | None = None  # measures the run's cells; default: measure_cells, here in order (lab: Ray)


@dataclass(frozen=True)
class EvalPlan:
    """What ``--eval`` asks for, validated before anything is written."""

    eval_set: EvalSet
    metrics: tuple[MetricSpec, ...]
    shifts: tuple[Shift, ...] = ()
    space: ValueSpace | None = None

    @property
    def shift_names(self) -> dict[str, str]:
        """Shift label → the name its inputs and outputs files carry (``shift-noise``, ``shift-blur-1.5``)."""
        return {s.label: "shift-" + s.label.replace(":", "-") for s in self.shifts}


def plan_evaluation(config: RunConfig) -> EvalPlan | None:
    """Load and check the eval set, the metrics and the shifts (ConfigError/CalibrationError on a mismatch)."""
    if not config.eval_set:
        if config.metrics or config.shifts:
            raise ConfigError(f"--{'metric' if config.metrics else 'shift'} needs an eval set (--eval FILE.npz)")
        return None
    eval_set = load_eval_set(config.eval_set)
    specs = tuple(parse_metric(name) for name in (config.metrics or default_metrics(eval_set)))
    onnx_path = ModelReference.parse(config.model).onnx_path  # labels are checked against its classes when known
    check_metrics(specs, eval_set, output_specs(load_model(onnx_path, load_external_data=False, check=False))
                  if onnx_path is not None else ())
    shifts = parse_shifts(config.shifts)
    space = None
    if shifts and eval_set.inputs:
        raise ConfigError(f"--shift transforms images: {config.eval_set} holds one array per model input")
    if shifts:
        space = value_space(eval_set.images, declared=config.shift_range, calibration=config.calibration)
        for shift in shifts:  # fail now, not after the variants are made
            apply_shift(eval_set.images[:1], shift, space)
    return EvalPlan(eval_set, specs, shifts, space)


@dataclass(frozen=True)
class RunResult:
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


def given_inputs(config: RunConfig) -> list[InputSpec]:
    """``--input`` with each hinted dimension name (``seq=128``) at its size: the shapes the user fixed."""
    return InputDeclaration(tuple(config.inputs), config.dim_sizes).concrete()


def input_declaration(config: RunConfig) -> tuple[InputDeclaration, FactoryResult]:
    """A factory's inputs (:func:`run_inputs`), with a causal LM's cache inputs under ``--with-past``
    (``past`` is then set like any other dimension: the samples, the profile, or the run stops)."""
    declaration, made = run_inputs(config)
    if not config.with_past:
        return declaration, made
    from edgeopt.models.torch_io import with_past_inputs

    specs = with_past_inputs(made.module, list(declaration.specs), config.model)
    return InputDeclaration(tuple(specs), declaration.sizes), made


def run_inputs(config: RunConfig) -> tuple[InputDeclaration, FactoryResult]:
    """A factory's inputs as declared: ``--input``, else the example inputs it returns with its module
    (``(module, example_inputs)``), else its module's ``input_spec()``; and what the factory made (it is called
    here: its errors stop the run before anything is written)."""
    reference = ModelReference.parse(config.model)
    assert reference.factory is not None
    made = factory_result(reference.factory)
    return declared_inputs(made, InputDeclaration(tuple(config.inputs), config.dim_sizes)), made


Declared = tuple[InputDeclaration, FactoryResult]  # a factory's inputs and what it made (input_declaration)


def model_input_specs(config: RunConfig, declared: Declared | None = None) -> list[InputSpec]:
    """The model's inputs, known before anything is written: from the ONNX file or the factory's declaration
    (``declared``, else made here; each hinted dimension at its size; other dimension names left for the profile,
    the samples or the batch size to set)."""
    reference = ModelReference.parse(config.model)
    if reference.onnx_path is not None:
        in_file = input_specs(load_model(reference.onnx_path))
        return _with_given_shapes(in_file, tuple(given_inputs(config)), reference.onnx_path) \
            if config.inputs else in_file
    return (declared or input_declaration(config))[0].concrete()


def _with_given_shapes(declared: list[InputSpec], given: tuple[InputSpec, ...], path: Path) -> list[InputSpec]:
    """The model's inputs with the dimensions ``--input`` fixes (names, ranks and fixed dims checked by
    :func:`edgeopt.models.inputs.resolve_shapes`); other symbolic dims stay symbolic."""
    resolved = resolve_shapes(declared, given=given, strict=False, where=str(path))
    return [InputSpec(r.name, tuple(d.value if d.source == "--input" and d.value is not None else dim
                                    for d, dim in zip(r.dims, r.declared, strict=True)), r.dtype)
            for r in resolved]


def check_runs_on_cpu(model_path: Path) -> None:
    """Refuse, before anything is written, a model ONNX Runtime cannot even open (e.g. an unknown operator)."""
    try:
        cpu_session(model_path, threads=None, optimization="disable", log_severity=4)
    except Exception as error:  # noqa: BLE001 - onnxruntime raises several unrelated types
        first = first_line(error)
        raise BackendError(f"{model_path}: ONNX Runtime (CPU) cannot open this model: {first}") from error


def _torch_version() -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


PARITY_USER_SAMPLES = 3  # calibration samples an export's parity check runs first


def resolve_model(config: RunConfig, declared: Declared | None = None,
                  parity_samples: CalibrationSet | None = None) -> Path:
    """The ONNX file to work on: the user's (validated) or a fresh export of their factory (``declared``, else
    made here; its parity checked on the first ``parity_samples`` first)."""
    reference = ModelReference.parse(config.model)
    if reference.onnx_path is not None:
        return reference.onnx_path
    assert reference.factory is not None
    from edgeopt.models.export import ExportResult, export_onnx, provenance_path_for

    target = config.out_dir / "model.onnx"
    declaration, made = declared or input_declaration(config)
    wanted = {"source": reference.factory, "source_sha256": factory_source_sha256(reference.factory),
              "opset_requested": config.opset, "exporter": config.exporter, "with_past": config.with_past,
              "dim_hints": dict(declaration.sizes),
              "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in declaration.specs]}
    if not config.force and target.exists() and provenance_path_for(target).exists():
        with contextlib.suppress(Exception):
            previous = read_json(provenance_path_for(target))
            same_torch = previous.get("versions", {}).get("torch") == _torch_version()
            if (same_torch and all(previous.get(k) == v for k, v in wanted.items())
                    and previous.get("sha256") == sha256_file(target)):
                logger.info(f"export: reusing {target} (same factory, inputs and exporter)")
                return target
    with progress.task(f"export {reference.factory}"):
        samples = list(made.example_feeds()) + (list(parity_samples.samples[:PARITY_USER_SAMPLES])
                                                if parity_samples is not None else [])
        result: ExportResult = export_onnx(
            made.module, declaration, target, opset=config.opset, exporter=config.exporter,  # type: ignore[arg-type]
            source=reference.factory, source_sha256=wanted["source_sha256"], parity_inputs=samples,  # type: ignore[arg-type]
            with_past=config.with_past)
    worst = min(p.cosine for p in result.parity)
    logger.info(f"export: {target} (parity vs torch: max abs {max(p.max_abs_error for p in result.parity):.2g}, "
                f"cosine {worst:.7f})")
    return target


def _eval_arrays(eval_set: EvalSet, specs: list[InputSpec]) -> dict[str, np.ndarray]:
    """Per-sample feeds of every model input from an eval set: its ``images`` for a single-input model, else
    its array named after each input (ConfigError naming what is missing)."""
    if not eval_set.inputs:
        if len(specs) != 1:
            raise ConfigError(f"{eval_set.source}: 'images' feeds single-input models; this one has {len(specs)} "
                              f"inputs: store one array per input ({', '.join(s.name for s in specs)}) instead")
        return {specs[0].name: stacked_feeds(eval_set.images, specs[0], eval_set.source)}
    missing = [s.name for s in specs if s.name not in eval_set.inputs]
    extra = sorted(set(eval_set.inputs) - {s.name for s in specs})
    if missing or extra:
        raise ConfigError(f"{eval_set.source}: arrays {sorted(eval_set.inputs)} do not match the model's inputs "
                          f"({', '.join(s.name for s in specs)})")
    return {s.name: stacked_feeds(eval_set.inputs[s.name], s, eval_set.source) for s in specs}


def _eval_samples(plan: EvalPlan | None, specs: list[InputSpec], count: int = 4) -> CalibrationSet | None:
    """The first eval samples as per-sample feeds (what a run without calibration data times)."""
    if plan is None:
        return None
    arrays = _eval_arrays(plan.eval_set, specs)
    samples = tuple({name: array[index] for name, array in arrays.items()}
                    for index in range(min(count, plan.eval_set.count)))
    return CalibrationSet(f"eval:{Path(plan.eval_set.source).name}", plan.eval_set.source, samples)


def _shifted_inputs(plan: EvalPlan, spec: InputSpec, directory: Path) -> dict[str, Path]:
    """One inputs file per shift (``reference_inputs.shift-noise.npz``), by the name its outputs file carries."""
    assert plan.space is not None or not plan.shifts
    paths = {}
    for shift in plan.shifts:
        name = plan.shift_names[shift.label]
        shifted = apply_shift(plan.eval_set.images, shift, plan.space)  # type: ignore[arg-type]
        feeds = {spec.name: stacked_feeds(shifted, spec)}
        paths[name] = write_npz_atomic(directory / f"reference_inputs.{name}.npz", feeds)
    return paths


def _reference_inputs(config: RunConfig, specs: list[InputSpec], calibration: CalibrationSet | None,
                      target: Path, model_path: Path, plan: EvalPlan | None = None,
                      max_input_mb: float | None = None) -> tuple[Path, np.ndarray | None]:
    """Inputs every variant runs for fidelity (and task metrics, when an eval set is given)."""
    labels = None
    if plan is not None:
        labels = plan.eval_set.truth
        arrays = _eval_arrays(plan.eval_set, specs)
    elif calibration is not None:
        first = calibration.samples[0]  # samples of other shapes (e.g. other text widths) cannot be stacked
        same = [s for s in calibration.samples if all(s[n].shape == first[n].shape for n in first)]
        arrays = {name: np.stack([s[name] for s in same[:config.reference_samples]]) for name in first}
    else:
        concrete = [r.spec() for r in resolve_shapes(specs, where=config.model)]
        model = load_model(model_path)  # the user's file or the export: integer inputs stay inside its tables
        feeds = [synthetic_feeds(concrete, model, seed=100 + i, max_input_mb=max_input_mb, where=config.model)
                 for i in range(config.reference_samples)]
        arrays = {spec.name: np.stack([f[spec.name] for f in feeds]) for spec in concrete}
    return write_npz_atomic(target, arrays), labels


def _check_shapes(config: RunConfig, specs: list[InputSpec], profiles: list[HardwareProfile],
                  calibration: CalibrationSet | None, plan: EvalPlan | None) -> None:
    """Before anything is written: every profile's timing shapes resolve (else exit 2 saying how to set them)."""
    samples: list[dict[str, np.ndarray]] = list(calibration.samples) if calibration is not None else []
    if not samples and plan is not None:
        evaluated = _eval_samples(plan, specs)
        samples = list(evaluated.samples) if evaluated is not None else []
    for profile in profiles:
        resolve_shapes(specs, profile_shapes=profile.bench.input_shapes, samples=samples,
                       batch_size=profile.bench.batch_size, where=f"{config.model} on profile {profile.name}",
                       max_input_mb=profile.bench.max_input_mb)


def _profiles(config: RunConfig) -> list[HardwareProfile]:
    profiles = [load_profile(name) for name in config.profiles]
    return [p.with_budgets(config.budgets) if config.budgets else p for p in profiles]


def run_pipeline(config: RunConfig) -> RunResult:
    """Validate every input, then make, measure, judge and report, holding the output folder's lock throughout
    (a second command on the folder stops at once: ``FolderBusyError``, exit 2)."""
    with run_lock(config.out_dir, "run"):
        return _run_locked(config)


def _run_locked(config: RunConfig) -> RunResult:
    out = Path(config.out_dir)
    if not 0.0 < config.decision_threshold < 1.0:
        raise ConfigError(f"--decision-threshold must lie between 0 and 1, got {config.decision_threshold:g}")
    profiles = _profiles(config)
    chosen_by = {} if config.variants else default_variants(profiles, host_fingerprint())
    unknown = set(config.skip_variants) - set(chosen_by)
    if unknown:
        raise ConfigError(f"skip_variants: {', '.join(sorted(unknown))} not among the default variants "
                          f"({', '.join(chosen_by) or 'variants were named explicitly'})")
    chosen_by = {name: rule for name, rule in chosen_by.items() if name not in config.skip_variants}
    recipes = [Recipe.parse(name) for name in config.variants or chosen_by]
    declared = input_declaration(config) if ModelReference.parse(config.model).factory else None
    specs = model_input_specs(config, declared)
    calibration = None
    notes: list[str] = []
    if config.calibration:
        calibration = load_calibration(config.calibration, expected_inputs=specs,
                                       min_samples=config.min_calibration_samples,
                                       max_samples=config.max_calibration_samples)
        notes.append(f"calibration: {calibration.name}, {calibration.count} samples, "
                     f"sha256 {calibration.content_hash[:12]}")
    elif any(r.kind == "int8-static" for r in recipes):
        notes.append("int8-static variants skipped: no calibration set (pass --calibration DIR)")
        recipes = [r for r in recipes if r.kind != "int8-static"]
    plan = plan_evaluation(config)
    _check_shapes(config, specs, profiles, calibration, plan)
    if ModelReference.parse(config.model).onnx_path is not None:
        check_runs_on_cpu(Path(config.model))
    # every input is validated: from here on, files are written
    out.mkdir(parents=True, exist_ok=True)
    for note in notes:
        logger.info(note)
    import onnxruntime as ort

    with warnings_to_file(out / "run.log") as warned:
        ort.set_default_logger_severity(3)  # its C++ warnings in this process (the workers keep their own stderr)
        try:
            result = _run_stages(config, profiles, recipes, specs, calibration, plan, chosen_by, declared)
        finally:
            ort.set_default_logger_severity(2)
    if warned():
        logger.info(f"{warned()} runtime warning(s) (ONNX Runtime, OpenVINO, the quantizer) in {out / 'run.log'}; "
                    "-v shows them")
    return result


def _run_stages(config: RunConfig, profiles: list[HardwareProfile], recipes: list[Recipe], specs: list[InputSpec],
                calibration: CalibrationSet | None, plan: EvalPlan | None,
                chosen_by: dict[str, str], declared: Declared | None) -> RunResult:
    """Export, variants, measurements, verdicts and reports, once every input has been validated."""
    out = Path(config.out_dir)
    model_path = resolve_model(config, declared, calibration)
    probe = None
    max_input_mb = max(p.bench.max_input_mb for p in profiles)  # each profile's own cap was checked up front
    if config.inputs:  # concrete shapes for a dynamic model: check pre-processing and variants on them
        probe = calibration.samples[0] if calibration is not None else synthetic_feeds(
            [r.spec() for r in resolve_shapes(specs, where=config.model, profile_shapes=profiles[0].bench.input_shapes,
                                              batch_size=profiles[0].bench.batch_size)], load_model(model_path), seed=7,
            max_input_mb=max_input_mb, where=config.model)
    made = make_variants(model_path, recipes, out / "variants", calibration=calibration, force=config.force,
                         probe_feeds=dict(probe) if probe is not None else None, chosen_by=chosen_by,
                         validation_timeout_s=min(p.bench.worker_timeout_s for p in profiles))
    variants = [v for v in made if isinstance(v, Variant)]
    variant_failures = [v for v in made if isinstance(v, VariantFailure)]
    for item in made:
        made_as = (f"FAILED: {item.message}" if isinstance(item, VariantFailure)
                   else f"{item.size_bytes / 2**20:.2f} MB, {item.provenance['preprocessing']}")
        for note in [] if isinstance(item, VariantFailure) else item.provenance.get("excluded", []):
            if note.get("reason") == LEFT_FLOAT_IN_SUBGRAPHS:
                made_as += f"; {note['nodes']} {LEFT_FLOAT_IN_SUBGRAPHS}"
        logger.info(f"variant {item.name}: {made_as}")
    class_outputs = class_score_outputs(load_model(model_path))  # where top-1 agreement means something
    reference_path, labels = _reference_inputs(config, specs, calibration, out / "reference_inputs.npz", model_path,
                                              plan, max_input_mb)
    reference_sha = sha256_file(reference_path)
    shifted = _shifted_inputs(plan, specs[0], out) if plan is not None and plan.shifts else {}
    if shifted:  # a stored measurement is reused only when it ran the same shifted sets
        reference_sha = sha256_json({"reference": reference_sha,
                                     "shifts": {name: sha256_file(path) for name, path in shifted.items()}})
        assert plan is not None and plan.space is not None
        logger.info(f"robustness: {', '.join(s.label for s in plan.shifts)} in {plan.space.describe()}")
    measurements: list[Measurement] = []
    gates: list[GateResult] = []
    rows: list[Row] = []
    sections: list[tuple[list[str], list[Row]]] = []
    tables: list[str] = []
    timing_samples = calibration or _eval_samples(plan, specs)  # real samples first: calibration, else eval
    emulation_failures: list[str] = []
    factory = ModelReference.parse(config.model).factory
    timings = {profile.name: prepare_timing_inputs(model_path, profile, timing_samples,
                                                   out / "inputs" / f"{profile.name}.npz",
                                                   specs=specs if config.inputs else None) for profile in profiles}
    cells = [Cell(variant, profile, timings[profile.name], backend, precision, factory if backend == "torch" else None)
             for profile in profiles for backend, variant, precision in runtime_matrix(profile, variants, factory)]
    all_measured = (config.measure or measure_cells)(cells, CellContext(
        out / "measurements", reference_path, reference_sha, shifted, config.proxy, config.force))
    for profile in profiles:
        measured = [m for cell, m in zip(cells, all_measured, strict=True) if cell.profile is profile]
        reference = next((m for m in measured if m.variant_name == "fp32" and m.ok), None)
        figures = _Figures(reference, out / "measurements", labels, plan, class_outputs,
                           config.decision_threshold)
        profile_rows = _evaluate(measured, profile, figures, gates, config.proxy)
        if profile.tensorrt is not None:
            trt = tensorrt_rows(profile, measured, variants, profile_rows, out, figures.of, gates,
                                reference_path=reference_path, reference_sha=reference_sha,
                                extra_references=shifted, force=config.force)
            profile_rows, emulation_failures = trt.rows, emulation_failures + trt.failures
        measurements += measured
        rows += profile_rows
        first = measured[0] if measured else None
        header = [f"profile {profile.name}: nothing measured"]
        if first is not None:
            header = header_lines(profile.name, _host_summary(first), first.host_matches,
                                  list(first.mismatch_reasons), config.proxy)
            ok = next((m for m in measured if m.ok), None)
            if ok is not None:
                header.append(settings_line(ok))
        sections.append((header, profile_rows))
        robustness = render_robustness(profile_rows)
        tables.append("\n".join([*header, render_table(profile_rows), *([robustness] if robustness else [])]))
    # a model a secondary runtime refuses (or a runtime not installed) is a row with its reason; the
    # profile's own reference runtime refusing is a failure
    failures = len(variant_failures) + len(emulation_failures) + sum(
        1 for m in measurements if not m.ok and not (m.unsupported and not _is_reference_runtime(m)))
    exit_code = exit_code_for(gates, failures=failures)
    reasons = [f.message for f in variant_failures] + [
        m.failure.message for m in measurements
        if m.failure is not None and not (m.unsupported and not _is_reference_runtime(m))] + emulation_failures
    verdict_line = _verdict_line(gates, failures, exit_code, reasons)
    extra_rows = [Row(variant=f.name, profile="-", precision="-", expected_fast=False, status="failed",
                      failure=f.message, verdict="error") for f in variant_failures]
    if extra_rows:  # e.g. int8-trt-modelopt without its venv: the row says how to enable it
        tables.append("variants that could not be made\n" + render_table(extra_rows))
    layout = RunLayout(out)
    summary = RunSummary(model=config.model, model_path=str(model_path),
                         calibration=calibration.describe() if calibration else None,
                         profiles=[p.name for p in profiles], evaluation=_evaluation_record(plan),
                         rows=[r.to_dict() for r in rows + extra_rows],
                         gates=[g.to_dict() for g in gates], exit_code=exit_code, verdict=verdict_line)
    write_json_atomic(layout.summary_json, summary.model_dump(mode="json"))
    markdown = render_markdown(sections + ([(["variants that could not be made"], extra_rows)] if extra_rows else []),
                               verdict_line)
    write_text_atomic(layout.summary_md, markdown)
    from edgeopt.reports.writers import write_run_reports

    write_run_reports(out)  # report.html, junit.xml, results.csv beside summary.json
    return RunResult(out, model_path, variants, variant_failures, measurements, gates, rows + extra_rows, tables,
                     exit_code, layout.summary_json, layout.summary_md)


def runtime_matrix(profile: HardwareProfile, variants: list[Variant],
                   factory: str | None = None) -> list[tuple[str, Variant, str | None]]:
    """(backend, variant, precision) for every row a profile asks for: each backend says which cells it
    offers (``cells`` in its ``edgeopt.backends.<name>_settings`` module)."""
    return cells_for(profile, variants, factory)


def _is_reference_runtime(measurement: Measurement) -> bool:
    runtimes = measurement.profile.get("settings", {}).get("runtime", {})
    declared = runtimes.get("backends") or [runtimes.get("backend", "onnxruntime")]
    return measurement.backend.startswith(str(declared[0]))


def _host_summary(measurement: Measurement | None) -> str:
    if measurement is None:
        return "unknown host"
    from edgeopt.core.host import HostFingerprint

    return HostFingerprint.from_dict(measurement.host).summary()


Figures = tuple[list[OutputFidelity], Accuracy | None, tuple[MetricResult, ...], tuple[ShiftResult, ...]]


class _Figures:
    """Fidelity vs the profile's fp32 row, top-1 accuracy, task metrics and shift results of one outputs file."""

    def __init__(self, reference: Measurement | None, directory: Path, labels: np.ndarray | None,
                 plan: EvalPlan | None, class_outputs: set[str] | None, decision_threshold: float) -> None:
        self.reference, self.directory, self.labels = reference, directory, labels
        self.class_outputs, self.decision_threshold = class_outputs, decision_threshold
        self.scorer = _Scorer(plan, directory, reference) if plan is not None else None

    def of(self, directory: Path, outputs_file: str, output_names: list[str]) -> Figures:
        found: list[OutputFidelity] = []
        accuracy: Accuracy | None = None
        metrics: tuple[MetricResult, ...] = ()
        shifts: tuple[ShiftResult, ...] = ()
        outputs = directory / outputs_file
        reference = self.reference
        if reference is not None and reference.outputs_file and outputs.exists():
            with contextlib.suppress(EdgeoptError, OSError, ValueError):
                found = fidelity(self.directory / reference.outputs_file, outputs, output_names,
                                 self.decision_threshold, self.class_outputs)
        if self.labels is not None and self.labels.dtype.kind in "iu" and outputs.exists():
            with contextlib.suppress(KeyError, ValueError):
                accuracy = top1_accuracy(outputs, self.labels)
        if self.scorer is not None and outputs.exists():
            metrics, shifts = self.scorer.score(directory, outputs_file)
        return found, accuracy, metrics, shifts


def _evaluate(measured: list[Measurement], profile: HardwareProfile, figures: _Figures,
              gates: list[GateResult], proxy: bool) -> list[Row]:
    rows = []
    budgets = {k: v for k, v in profile.budgets.model_dump().items() if v is not None}
    for measurement in measured:
        found: list[OutputFidelity] = []
        accuracy: Accuracy | None = None
        metrics: tuple[MetricResult, ...] = ()
        shifts: tuple[ShiftResult, ...] = ()
        if measurement.ok and measurement.outputs_file:
            found, accuracy, metrics, shifts = figures.of(figures.directory, measurement.outputs_file,
                                                          measurement.output_names)
        gate = None
        if measurement.ok:
            missing = None
            if measurement is not figures.reference and not found:
                missing = ("this profile has no fp32 row to compare with (it failed, or was not asked for: add "
                           "--variant fp32)" if figures.reference is None
                           else "its outputs could not be compared with the fp32 row's")
            gate = judge_outputs(gate_measurement(measurement, profile, proxy=proxy), budgets, found,
                                 metrics[0] if metrics else None, missing_reference=missing)
            gates.append(gate)
        rows.append(build_row(measurement, gate, figures.reference, found, accuracy, metrics=metrics, shifts=shifts))
    return rows


class _Scorer:
    """Task metrics and shift results of each row of one profile, against that profile's fp32 row."""

    def __init__(self, plan: EvalPlan, directory: Path, reference: Measurement | None) -> None:
        self.plan, self.directory = plan, directory
        self.truth = plan.eval_set.truth
        self.stems = {label: name for label, name in plan.shift_names.items()}
        self.reported: set[str] = set()
        self.fp32: dict[str | None, list[Scores]] = {}
        self.fp32_outputs: dict[str | None, list[np.ndarray]] = {}
        if reference is not None:
            for key in (None, *self.stems):
                outputs = self._outputs(directory, reference.outputs_file, key) if reference.outputs_file else None
                if outputs is not None:
                    self.fp32_outputs[key] = outputs
                    self.fp32[key] = self._scores(outputs, outputs)

    def _outputs(self, directory: Path, outputs_file: str, shift: str | None) -> list[np.ndarray] | None:
        name = (outputs_file if shift is None
                else extra_outputs_file(outputs_file.removesuffix(".outputs.npz"), self.stems[shift]))
        path = directory / name
        if not path.exists():
            return None
        try:
            return load_output_list(path)
        except (OSError, ValueError) as error:
            self._problem(f"{path}: unreadable outputs ({error})")
            return None

    def _problem(self, line: str) -> None:
        if line not in self.reported:
            self.reported.add(line)
            logger.info(f"metric: {line}")

    def _scores(self, outputs: list[np.ndarray], reference: list[np.ndarray] | None) -> list[Scores]:
        found, problems = score_outputs(self.plan.metrics, outputs, self.truth, reference)
        for line in problems:
            self._problem(line)
        return found

    def score(self, directory: Path, outputs_file: str) -> tuple[tuple[MetricResult, ...], tuple[ShiftResult, ...]]:
        """The metrics of the outputs file ``outputs_file`` in ``directory`` (and of its shifted sets)."""
        clean_outputs = self._outputs(directory, outputs_file, None)
        if not clean_outputs:
            return (), ()
        clean = self._scores(clean_outputs, self.fp32_outputs.get(None))
        if not clean:
            return (), ()
        indices = resample_indices(clean[0].values.size)
        fp32_clean = {s.spec.name: s for s in self.fp32.get(None, [])}
        metrics = tuple(summarise(s, fp32_clean.get(s.spec.name), indices) for s in clean)
        shifts: list[ShiftResult] = []
        by_name = {s.spec.name: s for s in clean}
        for label in self.stems:
            outputs = self._outputs(directory, outputs_file, label)
            if not outputs:
                continue
            fp32_shifted = {s.spec.name: s for s in self.fp32.get(label, [])}
            for scores in self._scores(outputs, self.fp32_outputs.get(label)):
                name = scores.spec.name
                shifts.append(shift_result(label, scores, by_name.get(name), fp32_shifted.get(name),
                                           fp32_clean.get(name), indices))
        return metrics, tuple(shifts)


def _evaluation_record(plan: EvalPlan | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    return {"eval_set": plan.eval_set.source, "samples": plan.eval_set.count,
            "metrics": [m.name for m in plan.metrics], "interval": INTERVAL_METHOD,
            "shifts": [{"name": s.name, "severity": s.severity, "label": s.label} for s in plan.shifts],
            "value_space": plan.space.describe() if plan.space is not None else None,
            "fragile_rule": "extra drop vs fp32 under the shift beyond the clean-data drop, paired bootstrap "
                            "95% interval wholly above 0"}


def _verdict_line(gates: list[GateResult], failures: int, exit_code: int,
                  reasons: tuple[str, ...] | list[str] = ()) -> str:
    """The run's one-line verdict; ``reasons``: why each failed variant or measurement failed (the first
    named in the line, so the reader of the table sees why without opening run.log)."""
    counts: dict[str, int] = {}
    for gate in gates:
        counts[gate.verdict.value] = counts.get(gate.verdict.value, 0) + 1
    parts = [f"{n} {v}" for v, n in sorted(counts.items())]
    if failures:
        more = f"; and {len(reasons) - 1} more" if len(reasons) > 1 else ""
        parts.append(f"{failures} failed to build or measure" + (f" ({reasons[0]}{more})" if reasons else ""))
    word = {EXIT_OK: "PASS"}.get(exit_code, {1: "FAIL", 4: "ERROR", 5: "INCONCLUSIVE"}.get(exit_code, "ERROR"))
    if exit_code == EXIT_OK and counts and set(counts) == {"not-applicable"}:
        word = "NOT APPLICABLE"
    if exit_code == 5 and "inconclusive" not in counts and "invalid" in counts:
        word = "INVALID MEASUREMENT"
    return f"verdict: {word} (exit {exit_code}): " + (", ".join(parts) or "nothing measured")
