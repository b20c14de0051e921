"""The TensorRT rows of a run on any machine: static readiness, accuracy emulated on the CPU, golden outputs.

For a profile with a ``tensorrt`` section, every TensorRT row carries the static readiness of the exact file
it builds (``edgeopt.backends.tensorrt.readiness`` against the profile's ``tensorrt.version``) and what its
evidence is: ``built on GPU`` when an engine was built and timed, ``statically verified`` when only the static
check ran and passed (necessary, not sufficient), ``static check: not ready`` when it found blockers.  Each
TensorRT INT8 row is followed by a row "TensorRT INT8 accuracy, emulated on CPU": the same Q/DQ file run under
ONNX Runtime CPU (``edgeopt.measure.emulation``), judged by the profile's output budgets, with no latency; its
first reference inputs and those outputs are saved in Polygraphy's format under ``tensorrt-goldens/<variant>/``
(``edgeopt.backends.tensorrt.goldens``), for the first GPU run to compare the engine against.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from edgeopt.backends.tensorrt.goldens import write_goldens
from edgeopt.backends.tensorrt.readiness import Readiness, check_tensorrt_readiness
from edgeopt.errors import EdgeoptError
from edgeopt.evaluate.gate import GateResult, judge_outputs
from edgeopt.measure.emulation import LABEL, Emulation, emulate_or_reuse
from edgeopt.measure.results import Measurement
from edgeopt.measure.stored import EMULATED_STATUS
from edgeopt.models.variants import Variant
from edgeopt.profiles.schema import HardwareProfile
from edgeopt.reports.table import Row
from edgeopt.workflows.figures import OutputJudge

logger = logging.getLogger(__name__)

BUILT = "built on GPU"
VERIFIED = "statically verified"
NOT_READY = "static check: not ready"
EMULATED = "emulated on CPU"
EMULATES = "tensorrt int8"
SHOWN_BLOCKERS = 5  # the first blockers a row carries (trt-check lists them all)
GOLDEN_SAMPLES = 4  # reference inputs saved as goldens: enough to catch a broken engine, small files (ResNet: 3 MB)
GOLDENS = "tensorrt-goldens"  # under the run folder, one folder per TensorRT-bound variant



@dataclasses.dataclass
class TensorRtRows:
    """The rows of one profile with its TensorRT rows annotated and the emulated rows added, and the reasons
    of what failed (an emulation that could not run counts as a failed measurement)."""

    rows: list[Row]
    failures: list[str]
    emulations: list[tuple[Variant, Emulation, Path]]


def tensorrt_rows(profile: HardwareProfile, measured: list[Measurement], variants: list[Variant], rows: list[Row],
                  run_dir: Path, judge: OutputJudge, gates: list[GateResult], *,
                  reference_path: Path, reference_sha: str | None, extra_references: dict[str, Path],
                  force: bool = False) -> TensorRtRows:
    """``rows`` with the readiness and evidence of every TensorRT row, each INT8 one followed by its emulated
    accuracy row (its gate appended to ``gates``)."""
    assert profile.tensorrt is not None
    target = profile.tensorrt.readiness_target
    by_name = {m.variant_name: m for m in measured}
    by_sha = {v.sha256: v for v in variants}
    checked: dict[str, Readiness | str] = {}
    budgets = {k: v for k, v in profile.budgets.model_dump().items()
               if v is not None and k in ("min_cosine", "min_top1_agreement", "min_decision_agreement",
                                          "max_metric_drop")}
    found = TensorRtRows([], [], [])
    for row in rows:
        measurement = by_name.get(row.variant)
        if measurement is None or measurement.backend != "tensorrt":
            found.rows.append(row)
            continue
        readiness = _readiness(measurement, target, checked)
        found.rows.append(_annotated(row, measurement, readiness))
        variant = by_sha.get(str(measurement.variant.sha256))
        if measurement.session.get("precision") != "int8" or variant is None:
            continue
        emulation, directory = emulate_or_reuse(variant, profile, run_dir, emulates=EMULATES,
                                                reference_inputs=reference_path, reference_sha=reference_sha,
                                                extra_references=extra_references, force=force)
        common = dict(variant=emulation.name, profile=profile.name, precision="int8", expected_fast=False,
                      size_mb=variant.size_bytes / 2**20, runtime=LABEL, evidence=EMULATED,
                      readiness=found.rows[-1].readiness, blockers=found.rows[-1].blockers)
        if not emulation.ok or emulation.outputs_file is None:
            message = emulation.failure.message if emulation.failure else "emulation failed"
            found.failures.append(message)
            found.rows.append(Row(status="failed", failure=message, verdict="error", **common))  # type: ignore[arg-type]
            continue
        fidelity, accuracy, metrics, shifts = judge.figures(directory, emulation.outputs_file, emulation.output_names)
        missing = None if fidelity else judge.missing_reference(directory, emulation.outputs_file)
        gate = judge_outputs(GateResult(variant=emulation.name, profile=profile.name, checks=(), host_matches=True,
                                        proxy=False), budgets, fidelity, metrics[0] if metrics else None,
                             missing_reference=missing)
        gates.append(gate)
        found.emulations.append((variant, emulation, directory))
        _goldens(variant, emulation, directory, reference_path, run_dir)
        found.rows.append(Row(status=EMULATED_STATUS, fidelity=tuple(fidelity), accuracy=accuracy, metrics=metrics,
                              shifts=shifts, verdict=gate.verdict.value,
                              sentences=tuple(c.sentence for c in gate.checks), **common))  # type: ignore[arg-type]
    return found


def _readiness(measurement: Measurement, target: str, checked: dict[str, Readiness | str]) -> Readiness | str:
    """The static check of the row's file (once per file), or why it could not be checked."""
    sha = str(measurement.variant.sha256)
    if sha not in checked:
        try:
            checked[sha] = check_tensorrt_readiness(Path(measurement.variant.path), target)
        except EdgeoptError as error:
            checked[sha] = f"static check failed: {error}"
        result = checked[sha]
        logger.info(f"trt-check {measurement.variant.name}: "
                    + (result.verdict() if isinstance(result, Readiness) else result))
    return checked[sha]


def _annotated(row: Row, measurement: Measurement, readiness: Readiness | str) -> Row:
    if isinstance(readiness, str):
        return dataclasses.replace(row, evidence=BUILT if measurement.ok else NOT_READY, readiness=readiness)
    evidence = BUILT if measurement.ok else VERIFIED if readiness.ready else NOT_READY
    return dataclasses.replace(row, evidence=evidence, readiness=readiness.verdict(),
                               blockers=tuple(f.sentence() for f in readiness.blockers[:SHOWN_BLOCKERS]))


def _goldens(variant: Variant, emulation: Emulation, directory: Path, reference_path: Path, run_dir: Path) -> None:
    """The first reference inputs and the emulation's outputs for them, in Polygraphy's JSON format."""
    assert emulation.outputs_file is not None
    with np.load(reference_path, allow_pickle=False) as stacked:
        feeds = {name: stacked[name][:GOLDEN_SAMPLES] for name in stacked.files}
    with np.load(directory / emulation.outputs_file, allow_pickle=False) as stored:
        arrays = [stored[f"out{i}"][:GOLDEN_SAMPLES] if f"out{i}" in stored.files else None
                  for i in range(len(emulation.output_names))]
    if any(a is None for a in arrays):  # an output of data-dependent shape was not stored: no complete goldens
        logger.info(f"goldens {variant.name}: skipped, an output's shape depends on the data")
        return
    count = len(next(iter(feeds.values())))
    inputs = [{name: array[i] for name, array in feeds.items()} for i in range(count)]
    outputs = [{name: array[i] for name, array in zip(emulation.output_names, arrays, strict=True)  # type: ignore[index]
                if array is not None} for i in range(count)]
    folder = Path(run_dir) / GOLDENS / variant.name
    written = write_goldens(folder, inputs, outputs, runner_name="onnxrt-cpu-emulation",
                            model_sha256=variant.sha256, note=f"{LABEL}: {emulation.method}",
                            precision="int8", model_path=variant.path)
    logger.info(f"goldens {variant.name}: {written.folder} ({count} inputs; on a GPU: {written.command})")
