"""The files a run makes before it measures: the model (the user's ONNX file or a fresh export of their
factory), the variants, and the inputs every cell runs (reference inputs for fidelity and task metrics, the eval
set under each input shift, each profile's timing inputs).

Resumable: the export is reused when its factory, inputs, exporter and torch are unchanged, a variant when its
recipe and parent are (``edgeopt.models.quantize``); every file is written atomically.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeopt.core import progress
from edgeopt.core.fileio import read_json, sha256_file, sha256_json, write_npz_atomic
from edgeopt.evaluate.robustness import apply_shift
from edgeopt.measure.cell import CellContext
from edgeopt.measure.launcher import prepare_timing_inputs
from edgeopt.models.graph import class_score_outputs, load_model
from edgeopt.models.inputs import resolve_shapes, stacked_feeds, synthetic_feeds
from edgeopt.models.modelref import factory_source_sha256
from edgeopt.models.quantize import make_variants
from edgeopt.models.variants import LEFT_FLOAT_IN_SUBGRAPHS, Variant, VariantFailure
from edgeopt.workflows.plan import RunPlan, eval_arrays

__all__ = ["RunInputs", "make_run_variants", "resolve_model", "write_run_inputs"]

logger = logging.getLogger(__name__)

PARITY_USER_SAMPLES = 3  # calibration samples an export's parity check runs first


@dataclass(frozen=True)
class RunInputs:
    """What every cell of a run runs, and what its outputs are judged with."""

    reference: Path  # the reference inputs (fidelity, and the eval set's metrics)
    reference_sha: str  # their hash, with the shifted sets' (a stored measurement is reused only on the same)
    labels: np.ndarray | None  # the eval set's ground truth
    class_outputs: set[str] | None  # outputs whose values are class scores (top-1 agreement means something)
    shifted: dict[str, Path] = field(default_factory=dict)  # shift name -> the eval set under that shift

    def context(self, plan: RunPlan) -> CellContext:
        """What the run's cells share."""
        return CellContext(plan.layout.measurements, self.reference, self.reference_sha, self.shifted,
                           plan.config.proxy, plan.config.force, plan.config.wait_for_quiet_s)


def resolve_model(plan: RunPlan) -> Path:
    """The ONNX file to work on: the user's (validated when planned) or a fresh export of their factory (its
    parity checked on the first calibration samples first), reused when nothing it depends on changed."""
    config, reference = plan.config, plan.reference
    if reference.onnx_path is not None:
        return reference.onnx_path
    assert reference.factory is not None and plan.declared is not None
    from edgeopt.models.export import ExportResult, export_onnx, provenance_path_for

    target = plan.layout.model
    declaration, made = plan.declared
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
        samples = list(made.example_feeds()) + (list(plan.calibration.samples[:PARITY_USER_SAMPLES])
                                                if plan.calibration is not None else [])
        result: ExportResult = export_onnx(
            made.module, declaration, target, opset=config.opset, exporter=config.exporter,  # type: ignore[arg-type]
            source=reference.factory, source_sha256=wanted["source_sha256"], parity_inputs=samples,  # type: ignore[arg-type]
            with_past=config.with_past)
    worst = min(p.cosine for p in result.parity)
    logger.info(f"export: {target} (parity vs torch: max abs {max(p.max_abs_error for p in result.parity):.2g}, "
                f"cosine {worst:.7f})")
    return target


def _torch_version() -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def make_run_variants(plan: RunPlan, model_path: Path) -> tuple[list[Variant], list[VariantFailure]]:
    """The plan's variants of ``model_path`` (made, or reused when still valid), and the ones that failed."""
    config, profiles = plan.config, plan.profiles
    probe = None
    if config.inputs:  # concrete shapes for a dynamic model: check pre-processing and variants on them
        max_input_mb = max(p.bench.max_input_mb for p in profiles)  # each profile's own cap was checked up front
        probe = plan.calibration.samples[0] if plan.calibration is not None else synthetic_feeds(
            [r.spec() for r in resolve_shapes(list(plan.specs), where=config.model,
                                              profile_shapes=profiles[0].bench.input_shapes,
                                              batch_size=profiles[0].bench.batch_size)], load_model(model_path),
            seed=7, max_input_mb=max_input_mb, where=config.model)
    floors = [p.budgets.min_cosine for p in profiles if p.budgets.min_cosine is not None]
    made = make_variants(model_path, list(plan.recipes), plan.layout.variants, calibration=plan.calibration,
                         force=config.force, probe_feeds=dict(probe) if probe is not None else None,
                         chosen_by=plan.chosen_by, validation_timeout_s=min(p.bench.worker_timeout_s for p in profiles),
                         max_cosine_drop=1.0 - max(floors) if floors else None)  # int8-nncf-ac: the strictest floor
    for item in made:
        if isinstance(item, VariantFailure):
            why = item.message.removeprefix(f"variant {item.name}: ")
            made_as = f"not applicable: {why}" if item.not_applicable else f"FAILED: {why}"
        else:
            preprocessing = item.provenance["preprocessing"]
            made_as = f"{item.size_bytes / 2**20:.2f} MB" + ("" if preprocessing == "not applicable"
                                                             else f", {preprocessing}")
            made_as += "".join(f"; {repair}" for repair in item.provenance.get("graph_repairs") or ())
        for note in [] if isinstance(item, VariantFailure) else item.provenance.get("excluded", []):
            if note.get("reason") == LEFT_FLOAT_IN_SUBGRAPHS:
                made_as += f"; {note['nodes']} {LEFT_FLOAT_IN_SUBGRAPHS}"
        logger.info(f"variant {item.name}: {made_as}")
    return [v for v in made if isinstance(v, Variant)], [v for v in made if isinstance(v, VariantFailure)]


def write_run_inputs(plan: RunPlan, model_path: Path) -> RunInputs:
    """The reference inputs, the shifted eval sets and each profile's timing inputs, written."""
    reference, labels = _reference_inputs(plan, model_path)
    reference_sha = sha256_file(reference)
    evaluation = plan.evaluation
    shifted: dict[str, Path] = {}
    if evaluation is not None and evaluation.shifts:
        assert evaluation.space is not None
        spec = plan.specs[0]
        for shift in evaluation.shifts:
            name = evaluation.shift_names[shift.label]
            feeds = {spec.name: stacked_feeds(apply_shift(evaluation.eval_set.images, shift, evaluation.space), spec)}
            shifted[name] = write_npz_atomic(plan.layout.shifted_inputs(name), feeds)
        # a stored measurement is reused only when it ran the same shifted sets
        reference_sha = sha256_json({"reference": reference_sha,
                                     "shifts": {name: sha256_file(path) for name, path in shifted.items()}})
        logger.info(f"robustness: {', '.join(s.label for s in evaluation.shifts)} in {evaluation.space.describe()}")
    samples = plan.timing_samples  # real samples first: calibration, else eval
    for profile in plan.profiles:
        prepare_timing_inputs(model_path, profile, samples, plan.timing_inputs(profile),
                              specs=list(plan.specs) if plan.config.inputs else None)
    class_outputs = class_score_outputs(load_model(model_path))
    return RunInputs(reference, reference_sha, labels, class_outputs, shifted)


def _reference_inputs(plan: RunPlan, model_path: Path) -> tuple[Path, np.ndarray | None]:
    """Inputs every variant runs for fidelity (and task metrics, when an eval set is given): the eval set, else
    the calibration samples of the first sample's shapes, else seeded data inside each input's domain."""
    config, specs = plan.config, list(plan.specs)
    labels = None
    if plan.evaluation is not None:
        labels = plan.evaluation.eval_set.truth
        arrays = eval_arrays(plan.evaluation.eval_set, specs)
    elif plan.calibration is not None:
        first = plan.calibration.samples[0]  # samples of other shapes (e.g. other text widths) cannot be stacked
        same = [s for s in plan.calibration.samples if all(s[n].shape == first[n].shape for n in first)]
        arrays = {name: np.stack([s[name] for s in same[:config.reference_samples]]) for name in first}
    else:
        concrete = [r.spec() for r in resolve_shapes(specs, where=config.model)]
        model = load_model(model_path)  # the user's file or the export: integer inputs stay inside its tables
        max_input_mb = max(p.bench.max_input_mb for p in plan.profiles)
        feeds = [synthetic_feeds(concrete, model, seed=100 + i, max_input_mb=max_input_mb, where=config.model)
                 for i in range(config.reference_samples)]
        arrays = {spec.name: np.stack([f[spec.name] for f in feeds]) for spec in concrete}
    return write_npz_atomic(plan.layout.reference_inputs, arrays), labels
