"""``edgeopt gate RESULT...``: stored measurements judged again, without measuring, against their profile's budgets.

The output budgets are judged too: a variant's stored outputs against the fp32 measurement of the same profile in the
same folder (as the run judged them, at the default decision threshold); with no such fp32 measurement, or outputs
that cannot be compared, the variant is inconclusive (``no fp32 reference: ...``), never a pass on latency alone.
Files measured from different models are refused in one call (a run folder reused for another model must not have
its leftovers judged as part of the new run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeopt.errors import ConfigError
from edgeopt.evaluate.fidelity import DEFAULT_DECISION_THRESHOLD
from edgeopt.evaluate.gate import OUTPUT_BUDGETS, GateResult, exit_code_for, gate_measurement, judge_outputs
from edgeopt.measure.results import Measurement, try_load
from edgeopt.measure.stored import load_measurement, result_stem
from edgeopt.profiles.schema import HardwareProfile, load_profile
from edgeopt.workflows.figures import OutputJudge

__all__ = ["GatedFile", "GateFilesReport", "gate_files"]


@dataclass(frozen=True)
class GatedFile:
    """One stored measurement and its verdict (``gate`` None when the measurement itself failed)."""

    path: Path
    measurement: Measurement
    profile: HardwareProfile
    gate: GateResult | None


@dataclass(frozen=True)
class GateFilesReport:
    files: tuple[GatedFile, ...]
    exit_code: int


def gate_files(paths: Sequence[Path], *, profile: str | None = None, budgets: Mapping[str, float] | None = None,
               proxy: bool = False) -> GateFilesReport:
    """Judge each measurement file against ``profile``'s budgets (default: the profile stored in it), ``budgets``
    overriding; ``proxy`` judges them as labelled proxies.  InputRejectedError (exit 3) for an unreadable or edited
    file, ConfigError (exit 2) for files measured from different models."""
    loaded = [(Path(path), load_measurement(path)) for path in paths]
    _one_model(loaded)
    references: dict[Path, Measurement | None] = {}  # each fp32 measurement file read once
    files: list[GatedFile] = []
    for path, measurement in loaded:
        if proxy:
            measurement = measurement.model_copy(update={"proxy": True})
        judged_on = load_profile(profile) if profile else HardwareProfile.model_validate(measurement.profile.settings)
        judged_on = judged_on.with_budgets(dict(budgets)) if budgets else judged_on
        gate = None
        if measurement.ok:
            gate = _with_outputs(gate_measurement(measurement, judged_on), measurement, path, judged_on, references)
        files.append(GatedFile(path, measurement, judged_on, gate))
    gates = [f.gate for f in files if f.gate is not None]
    return GateFilesReport(tuple(files), exit_code_for(gates, failures=sum(f.gate is None for f in files)))


def model_of(measurement: Measurement) -> str:
    """The sha256 of the model a measurement's variant was made from (its own, for a file measured as it is)."""
    parent = measurement.variant.provenance.get("parent")
    sha = parent.get("sha256") if isinstance(parent, dict) else None
    return str(sha or measurement.variant.sha256)


def _one_model(loaded: list[tuple[Path, Measurement]]) -> None:
    first: dict[str, Path] = {}
    for path, measurement in loaded:
        first.setdefault(model_of(measurement), path)
    if len(first) > 1:
        (a, path_a), (b, path_b) = list(first.items())[:2]
        raise ConfigError(f"{path_a} and {path_b} were measured from different models (sha256 {a[:12]} and "
                          f"{b[:12]}): gate one run's measurements at a time (a run folder reused for another model "
                          "keeps the old model's files)")


def _with_outputs(gate: GateResult, measurement: Measurement, path: Path, profile: HardwareProfile,
                  references: dict[Path, Measurement | None]) -> GateResult:
    """``gate`` with the profile's output budgets judged against the fp32 measurement beside ``path``."""
    budgets = {k: v for k, v in profile.budgets.model_dump().items() if v is not None and k in OUTPUT_BUDGETS}
    if not budgets or (measurement.variant.name == "fp32" and measurement.backend == "onnxruntime"):
        return gate  # no output budget, or the reference itself
    folder = path.parent
    beside = folder / f"{result_stem('fp32', measurement.profile_name)}.json"
    if beside not in references:
        references[beside] = try_load(beside)
    reference = references[beside]
    usable = reference if reference is not None and reference.ok else None
    why = (f"no fp32 measurement of profile {measurement.profile_name} beside {path.name} (gate the run's whole "
           "measurements folder)" if reference is None else "the fp32 measurement beside it failed")
    judge = OutputJudge(usable, folder, None, None, None, DEFAULT_DECISION_THRESHOLD, no_reference=why)
    found = (judge.figures(folder, measurement.outputs_file, list(measurement.output_names)).fidelity
             if measurement.outputs_file else [])
    missing = None if found else judge.missing_reference(folder, measurement.outputs_file)
    metric_budgets = {k: float(v) for k, v in budgets.items()}
    return judge_outputs(gate, metric_budgets, found, None, missing_reference=missing)
