"""No reference, no pass: a variant whose outputs were not compared with an fp32 row (it failed, or its outputs
file is gone) is inconclusive with the reason, whatever budgets the profile sets; real runs of a tiny model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from edgeopt.errors import EXIT_BACKEND_FAILURE, EXIT_INCONCLUSIVE
from edgeopt.measure.cell import Cell, CellContext, failed_measurement, measure_cells
from edgeopt.measure.results import Failure, Measurement
from edgeopt.workflows.pipeline import RunConfig, run_pipeline
from tests.profiles import write_profile

TAIL = "; a variant whose outputs were not compared with fp32's cannot pass on quick: inconclusive"


def _reference_check(summary: Path, variant: str) -> dict[str, object]:
    document = json.loads(summary.read_text())
    (gate,) = [g for g in document["gates"] if g["variant"] == variant]
    (row,) = [r for r in document["rows"] if r["variant"] == variant]
    assert gate["verdict"] == "inconclusive" and row["verdict"] == "inconclusive" and not row["fidelity"]
    (check,) = [c for c in gate["checks"] if c["metric"] == "fidelity_reference"]
    return check


def test_a_variant_whose_fp32_outputs_are_missing_is_inconclusive(tmp_path: Path, mlp_model: Path) -> None:
    profile = write_profile(tmp_path, "quick")  # latency and memory budgets only: no output budget set
    config = RunConfig(model=str(mlp_model), profiles=(str(profile),), out_dir=tmp_path / "out",
                       variants=("fp32", "fp16"))
    assert run_pipeline(config).exit_code == 0
    (tmp_path / "out" / "measurements" / "fp32__quick.outputs.npz").unlink()
    second = run_pipeline(config)  # both measurements reused, fp32's outputs gone
    assert second.exit_code == EXIT_INCONCLUSIVE
    check = _reference_check(second.summary_path, "fp16")
    missing = "the fp32 row's outputs file fp32__quick.outputs.npz is missing"
    assert check["sentence"] == f"no fp32 reference: {missing}{TAIL}"


def test_a_variant_whose_fp32_row_failed_is_inconclusive(tmp_path: Path, mlp_model: Path) -> None:
    def fp32_crashes(cells: Sequence[Cell], context: CellContext) -> list[Measurement]:
        """The run's cells measured, but fp32's worker "crashed" (its failure recorded as the worker's would be)."""
        fp32 = [c for c in cells if c.variant.name == "fp32"]
        measured = iter(measure_cells([c for c in cells if c not in fp32], context))
        for cell in fp32:
            crash = Failure(kind="crash", message="worker crashed (exit -9)\nstderr: killed")
            failed_measurement(cell, context, crash).save(Path(context.directory) / f"{cell.stem}.json")
        return [Measurement.load(Path(context.directory) / f"{c.stem}.json") if c in fp32 else next(measured)
                for c in cells]

    profile = write_profile(tmp_path, "quick")
    result = run_pipeline(RunConfig(model=str(mlp_model), profiles=(str(profile),), out_dir=tmp_path / "out",
                                    variants=("fp32", "fp16"), measure=fp32_crashes))
    assert result.exit_code == EXIT_BACKEND_FAILURE  # the failed fp32 row counts as a failure, fp16 is not a pass
    check = _reference_check(result.summary_path, "fp16")
    assert check["sentence"] == f"no fp32 reference: the fp32 row failed (worker crashed (exit -9)){TAIL}"
