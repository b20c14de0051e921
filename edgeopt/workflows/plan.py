"""``plan_run``: a :class:`RunConfig` checked and resolved once into a typed, frozen :class:`RunPlan`.

The plan holds everything a run decides before it writes a file: the model reference (parsed once), the
model's inputs, the profiles with their budgets, the recipes and why each was chosen, the calibration set, the
evaluation plan (eval set, metrics, input shifts), the run folder's layout and each profile's timing-inputs
file.  Every input is validated here — a bad one stops the run (exit 2 or 3) before anything is written — and
everything after planning reads the plan.  Once the variants exist, :meth:`RunPlan.cells` lists the measurement
cells: each profile's backends say which (variant, backend, precision) rows they offer.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeopt.backends import cells_for
from edgeopt.core.fileio import sha256_file
from edgeopt.core.host import host_fingerprint
from edgeopt.errors import BackendError, ConfigError, first_line
from edgeopt.evaluate.metrics import EvalSet, MetricSpec, check_metrics, default_metrics, load_eval_set, parse_metric
from edgeopt.evaluate.robustness import Shift, ValueSpace, apply_shift, parse_shifts, value_space
from edgeopt.measure.cell import Cell, MeasureCells
from edgeopt.models.calibration import CalibrationSet, cap_note, load_calibration
from edgeopt.models.factory import FactoryResult, declared_inputs, factory_result
from edgeopt.models.graph import cpu_session, input_specs, load_model, output_specs
from edgeopt.models.input_spec import InputSpec
from edgeopt.models.inputs import resolve_shapes, stacked_feeds
from edgeopt.models.modelref import InputDeclaration, ModelReference
from edgeopt.models.recipes import Recipe, default_variants
from edgeopt.models.variants import Variant
from edgeopt.profiles.schema import HardwareProfile, load_profile, profile_file
from edgeopt.reports.run_summary import RunLayout

__all__ = ["Declared", "EvalPlan", "RunConfig", "RunPlan", "eval_arrays", "eval_samples", "plan_run"]


@dataclass(frozen=True)
class RunConfig:
    """Everything ``edgeopt run`` needs; the CLI builds exactly this."""

    model: str
    profiles: tuple[str, ...]
    out_dir: Path
    calibration: str | None = None
    variants: tuple[str, ...] = ()  # empty: the defaults for the profiles' CPU classes (default_variants)
    skip_variants: tuple[str, ...] = ()  # default variants left out (bench.py's latency job: same-graph recipes)
    keep_float: tuple[str, ...] = ()  # node names or op types every int8 recipe leaves in float (--keep-float)
    eval_set: str | None = None
    inputs: tuple[InputSpec, ...] = ()  # --input: dims that are names stay dynamic in an export
    dim_sizes: dict[str, int] = field(default_factory=dict)  # --input's name=size hints (example/timing sizes)
    opset: int | None = None  # None: the exporter's own (dynamo: its default >= 18; torchscript: 17)
    exporter: str = "dynamo"
    with_past: bool = False  # a causal LM exported with its key/value cache as inputs and outputs
    budgets: dict[str, float] = field(default_factory=dict)
    proxy: bool = False
    force: bool = False
    wait_for_quiet_s: float = 0.0  # before each measurement, wait up to this long for the profile's load rule
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


Declared = tuple[InputDeclaration, FactoryResult]  # a factory's inputs and what it made


@dataclass(frozen=True, eq=False)
class RunPlan:
    """A run, decided: what :func:`plan_run` resolved from a :class:`RunConfig` (read by every later step)."""

    config: RunConfig
    reference: ModelReference  # the model reference, parsed once
    declared: Declared | None  # a factory's input declaration and what it made (None: an ONNX file)
    specs: tuple[InputSpec, ...]  # the model's inputs (hinted dims at their sizes; other names left to resolve)
    profiles: tuple[HardwareProfile, ...]  # with the run's budgets applied
    recipes: tuple[Recipe, ...]
    chosen_by: dict[str, str]  # default recipe -> why it was chosen (empty when variants were named)
    calibration: CalibrationSet | None
    evaluation: EvalPlan | None
    layout: RunLayout
    notes: tuple[str, ...] = ()  # what planning decided that the user should read (e.g. a skipped recipe)
    model_sha256: str = ""  # of the ONNX file, or of a factory's reference: which model the run folder holds
    replaces: str | None = None  # another model whose results the folder holds, removed first (--force)

    @property
    def timing_samples(self) -> CalibrationSet | None:
        """The real samples timing inputs are taken from: the calibration set, else the first eval samples."""
        return self.calibration or eval_samples(self.evaluation, list(self.specs))

    def timing_inputs(self, profile: HardwareProfile) -> Path:
        """Where the timing inputs of ``profile`` go."""
        return self.layout.timing_inputs(profile.name)

    def cells(self, variants: Sequence[Variant]) -> list[Cell]:
        """The measurement cells: for each profile, the (backend, variant, precision) rows its backends offer
        (``cells`` in each ``edgeopt.backends.<name>_settings``); a torch row runs the factory itself."""
        factory = self.reference.factory
        return [Cell(variant, profile, self.timing_inputs(profile), backend, precision,
                     factory if backend == "torch" else None)
                for profile in self.profiles for backend, variant, precision in cells_for(profile, list(variants),
                                                                                          factory)]

    def describe(self) -> list[str]:
        """The plan as log lines (the run prints them before it writes anything)."""
        source = (f"factory {self.reference.factory}, exported with {self.config.exporter}" if self.reference.factory
                  else f"ONNX file {self.reference.onnx_path}")
        inputs = ", ".join(f"{s.name}[{'x'.join(str(d) for d in s.shape)}]:{s.dtype}" for s in self.specs)
        recipes = ", ".join(r.name for r in self.recipes) or "none"
        files = ", ".join(f"{name} from {path}" for name, path in self.profile_files().items())
        lines = [f"plan: model {source}; inputs {inputs}",
                 f"plan: profiles {files}; variants {recipes}; "
                 f"out {self.layout.root}", self.timing_estimate()]
        if self.replaces:
            lines.append(f"plan: {self.layout.root} holds results of another model, {self.replaces}: removed first "
                         "(--force)")
        return [*lines, *self.notes]

    def profile_files(self) -> dict[str, str]:
        """Each profile's name -> the file it was read from (a name on ``EDGEOPT_PROFILE_PATH`` may shadow a shipped
        one: the run says which)."""
        return {p.name: str(profile_file(name)) for p, name in zip(self.profiles, self.config.profiles, strict=True)}

    def timing_estimate(self) -> str:
        """How long the timed loops take at most: each row's warm-up and ``max_seconds`` (``sample_floor`` may
        lengthen a slow model's rows), before making variants, loading models and reference outputs."""
        planned = [Variant(r.name, Path(r.name), r.precision, {"recipe": r.to_dict()}) for r in self.recipes]
        rows = [(profile, len(cells_for(profile, planned, self.reference.factory))) for profile in self.profiles]
        seconds = sum(n * (p.bench.warmup_seconds + p.bench.max_seconds) for p, n in rows)
        floors = [p.name for p, n in rows if n and p.bench.sample_floor is not None]
        longer = f"; longer for slow rows under bench.sample_floor ({', '.join(floors)})" if floors else ""
        shown = f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}"
        return (f"plan: timing {sum(n for _, n in rows)} row(s), at most {shown} s of warm-up and timed loops "
                f"(bench.warmup_seconds + bench.max_seconds per row){longer}, plus making variants and loading models")


def plan_run(config: RunConfig) -> RunPlan:
    """Check and resolve every input of ``config`` once, before anything is written (ConfigError exit 2,
    InputRejectedError/CalibrationError exit 3, BackendError for a model ONNX Runtime cannot open)."""
    if not (config.wait_for_quiet_s >= 0 and math.isfinite(config.wait_for_quiet_s)):
        raise ConfigError(f"--wait-for-quiet must be a finite number of seconds >= 0, got {config.wait_for_quiet_s:g}")
    if not 0.0 < config.decision_threshold < 1.0:
        raise ConfigError(f"--decision-threshold must lie between 0 and 1, got {config.decision_threshold:g}")
    reference = ModelReference.parse(config.model)
    profiles = [load_profile(name) for name in config.profiles]
    profiles = [p.with_budgets(config.budgets) if config.budgets else p for p in profiles]
    chosen_by = {} if config.variants else default_variants(profiles, host_fingerprint())
    unknown = set(config.skip_variants) - set(chosen_by)
    if unknown:
        raise ConfigError(f"skip_variants: {', '.join(sorted(unknown))} not among the default variants "
                          f"({', '.join(chosen_by) or 'variants were named explicitly'})")
    chosen_by = {name: rule for name, rule in chosen_by.items() if name not in config.skip_variants}
    recipes = [Recipe.parse(name) for name in config.variants or chosen_by]
    if config.keep_float:
        recipes = _kept_in_float(recipes, config.keep_float, reference)
    declared = _declared(config, reference) if reference.factory else None
    specs = _model_inputs(config, reference, declared)
    calibration, notes = None, []
    if config.calibration:
        calibration = load_calibration(config.calibration, expected_inputs=specs,
                                       min_samples=config.min_calibration_samples,
                                       max_samples=config.max_calibration_samples)
        notes.append(f"calibration: {calibration.name}, {calibration.count} samples, "
                     f"sha256 {calibration.content_hash[:12]}")
        notes.extend(filter(None, [cap_note(calibration)]))  # an entry point that had more (or never ends)
    elif any(r.kind == "int8-static" for r in recipes):
        notes.append("int8-static variants skipped: no calibration set (pass --calibration DIR)")
        recipes = [r for r in recipes if r.kind != "int8-static"]
    evaluation = _plan_evaluation(config, reference)
    _check_shapes(config, specs, profiles, calibration, evaluation)
    if reference.onnx_path is not None:
        _check_runs_on_cpu(reference.onnx_path)
    layout = RunLayout(Path(config.out_dir))
    digest = (sha256_file(reference.onnx_path) if reference.onnx_path is not None
              else hashlib.sha256(reference.text.encode("utf-8")).hexdigest())
    return RunPlan(config, reference, declared, tuple(specs), tuple(profiles), tuple(recipes), chosen_by,
                   calibration, evaluation, layout, tuple(notes), digest, _other_model(config, layout, digest))


def folder_model(layout: RunLayout) -> tuple[str, str] | None:
    """(model, sha256) of the results the run folder holds: its model marker, else its summary; None when it
    names none (a fresh folder, or one of a run before summaries recorded the model's sha256)."""
    for path in (layout.model_marker, layout.summary_json):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("model_sha256"), str):
            return str(record.get("model", "?")), record["model_sha256"]
    return None


def _other_model(config: RunConfig, layout: RunLayout, digest: str) -> str | None:
    """The other model whose results ``layout`` holds (to be removed first under ``force``); ConfigError (exit 2)
    naming both models without ``force``; None when the folder holds none or this model's."""
    found = folder_model(layout)
    if found is None or found[1] == digest:
        return None
    other = f"{found[0]} (sha256 {found[1][:12]})"
    if not config.force:
        raise ConfigError(f"--out {layout.root}: this folder holds the results of another model, {other}; this run's "
                          f"model is {config.model} (sha256 {digest[:12]}); choose a fresh --out, or pass --force to "
                          "remove the other model's variants and measurements first")
    return other


def _plan_evaluation(config: RunConfig, reference: ModelReference) -> EvalPlan | None:
    """Load and check the eval set, the metrics and the shifts (ConfigError/CalibrationError on a mismatch)."""
    if not config.eval_set:
        if config.metrics or config.shifts:
            raise ConfigError(f"--{'metric' if config.metrics else 'shift'} needs an eval set (--eval FILE.npz)")
        return None
    eval_set = load_eval_set(config.eval_set)
    specs = tuple(parse_metric(name) for name in (config.metrics or default_metrics(eval_set)))
    onnx_path = reference.onnx_path  # labels are checked against its classes when known
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


def _declared(config: RunConfig, reference: ModelReference) -> Declared:
    """A factory's inputs as declared: ``--input``, else the example inputs it returns with its module
    (``(module, example_inputs)``), else its module's ``input_spec()``; with a causal LM's cache inputs under
    ``--with-past`` (``past`` is then set like any other dimension).  The factory is called here: its errors stop
    the run before anything is written."""
    assert reference.factory is not None
    made = factory_result(reference.factory)
    declaration = declared_inputs(made, InputDeclaration(tuple(config.inputs), config.dim_sizes))
    if not config.with_past:
        return declaration, made
    from edgeopt.models.torch_io import with_past_inputs

    specs = with_past_inputs(made.module, list(declaration.specs), config.model)
    return InputDeclaration(tuple(specs), declaration.sizes), made


def _model_inputs(config: RunConfig, reference: ModelReference, declared: Declared | None) -> list[InputSpec]:
    """The model's inputs, known before anything is written: from the ONNX file (with the dimensions ``--input``
    fixes; other symbolic dims stay symbolic) or the factory's declaration (each hinted dimension at its size)."""
    if reference.onnx_path is None:
        assert declared is not None
        return declared[0].concrete()
    in_file = input_specs(load_model(reference.onnx_path))
    if not config.inputs:
        return in_file
    given = tuple(InputDeclaration(tuple(config.inputs), config.dim_sizes).concrete())
    resolved = resolve_shapes(in_file, given=given, strict=False, where=str(reference.onnx_path))
    return [InputSpec(r.name, tuple(d.value if d.source == "--input" and d.value is not None else dim
                                    for d, dim in zip(r.dims, r.declared, strict=True)), r.dtype)
            for r in resolved]


def _check_runs_on_cpu(model_path: Path) -> None:
    """Refuse, before anything is written, a model ONNX Runtime cannot even open (e.g. an unknown operator)."""
    try:
        cpu_session(model_path, threads=None, optimization="disable", log_severity=4)
    except Exception as error:  # noqa: BLE001 - onnxruntime raises several unrelated types
        first = first_line(error)
        raise BackendError(f"{model_path}: ONNX Runtime (CPU) cannot open this model: {first}") from error


def _check_shapes(config: RunConfig, specs: list[InputSpec], profiles: list[HardwareProfile],
                  calibration: CalibrationSet | None, plan: EvalPlan | None) -> None:
    """Every profile's timing shapes resolve (else exit 2 saying how to set them)."""
    samples: list[dict[str, np.ndarray]] = list(calibration.samples) if calibration is not None else []
    if not samples and plan is not None:
        evaluated = eval_samples(plan, specs)
        samples = list(evaluated.samples) if evaluated is not None else []
    for profile in profiles:
        resolve_shapes(specs, profile_shapes=profile.bench.input_shapes, samples=samples,
                       batch_size=profile.bench.batch_size, where=f"{config.model} on profile {profile.name}",
                       max_input_mb=profile.bench.max_input_mb)


def eval_arrays(eval_set: EvalSet, specs: list[InputSpec]) -> dict[str, np.ndarray]:
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


def _kept_in_float(recipes: list[Recipe], tokens: tuple[str, ...], reference: ModelReference) -> list[Recipe]:
    """Each int8 recipe with the nodes ``--keep-float`` names (a node name, or an op type: its every node) left in
    float (``exclude_nodes``: its name gains ``-x<k>-<hash>``); ConfigError naming a token the graph lacks."""
    import onnx

    if reference.onnx_path is None:
        raise ConfigError("--keep-float names nodes of an ONNX file; export the model first (edgeopt export) and run "
                          "the file")
    graph = onnx.load(str(reference.onnx_path), load_external_data=False).graph
    by_type: dict[str, list[str]] = {}
    for node in graph.node:
        by_type.setdefault(node.op_type, []).append(node.name)
    names = {node.name for node in graph.node}
    kept: set[str] = set()
    for token in tokens:
        if token in names:
            kept.add(token)
        elif token in by_type:
            kept.update(n for n in by_type[token] if n)
        else:
            raise ConfigError(f"--keep-float {token}: no node and no op type of that name in "
                              f"{reference.onnx_path.name} (op types: {', '.join(sorted(by_type))})")
    return [replace(r, exclude_nodes=tuple(sorted(set(r.exclude_nodes) | kept))) if r.precision == "int8" else r
            for r in recipes]


def eval_samples(plan: EvalPlan | None, specs: list[InputSpec], count: int = 4) -> CalibrationSet | None:
    """The first eval samples as per-sample feeds (what a run without calibration data times)."""
    if plan is None:
        return None
    arrays = eval_arrays(plan.eval_set, specs)
    samples = tuple({name: array[index] for name, array in arrays.items()}
                    for index in range(min(count, plan.eval_set.count)))
    return CalibrationSet(f"eval:{Path(plan.eval_set.source).name}", plan.eval_set.source, samples)
