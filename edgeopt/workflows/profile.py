"""``edgeopt profile``: measure ONNX files as they are on hardware profiles and judge each against its budgets.

Every (profile, model) pair is measured fresh (``force``) through :func:`edgeopt.measure.cell.measure_cell` under
the output folder's run lock, on timing inputs at the model's shapes (``<out>/inputs/<stem>.npz``); the measurement
is saved as ``<out>/<stem>.json`` and a successful one is gated (:func:`edgeopt.evaluate.gate.gate_measurement`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeopt.core.run_lock import run_lock
from edgeopt.evaluate.gate import GateResult, exit_code_for, gate_measurement
from edgeopt.measure.cell import Cell, CellContext, measure_cell
from edgeopt.measure.launcher import prepare_timing_inputs
from edgeopt.measure.results import Measurement
from edgeopt.measure.stored import result_stem
from edgeopt.models.variants import Variant
from edgeopt.profiles.schema import HardwareProfile
from edgeopt.reports.table import Row, build_row

__all__ = ["ProfileReport", "profile_models"]


@dataclass(frozen=True)
class ProfileReport:
    """What ``edgeopt profile`` measured and judged, in the order measured (profiles outer, models inner)."""

    measurements: tuple[Measurement, ...]
    rows: tuple[Row, ...]  # one per measurement, failed ones included
    gates: tuple[GateResult, ...]  # one per successful measurement
    failures: int  # measurements that failed (no gate)
    written: tuple[Path, ...]  # the saved measurement files, one per measurement
    sentences: tuple[str, ...]  # every gate check's sentence, gate by gate
    exit_code: int

    def to_dict(self) -> dict[str, Any]:
        """The ``profile-measurements`` JSON document (without its envelope)."""
        return {"measurements": [str(path) for path in self.written], "rows": [row.to_dict() for row in self.rows],
                "gates": [gate.to_dict() for gate in self.gates], "exit_code": self.exit_code}


def profile_models(models: Sequence[Path], profiles: Sequence[HardwareProfile], out: Path, *,
                   proxy: bool = False) -> ProfileReport:
    """Measure every model file on every profile (fresh, saved in ``out``) and gate each successful measurement
    against its profile's budgets; holds ``out``'s run lock meanwhile."""
    out = Path(out)
    variants = [Variant.from_file(path) for path in models]
    context = CellContext(out, proxy=proxy, force=True)
    measurements: list[Measurement] = []
    gates: list[GateResult] = []
    rows: list[Row] = []
    written: list[Path] = []
    sentences: list[str] = []
    failures = 0
    with run_lock(out, "profile"):
        for profile in profiles:
            for variant in variants:
                stem = result_stem(variant.name, profile.name)  # the cell's own stem
                timing = prepare_timing_inputs(variant.path, profile, None, out / "inputs" / f"{stem}.npz")
                cell = Cell(variant, profile, timing)
                measurement = measure_cell(cell, context)
                gate = gate_measurement(measurement, profile) if measurement.ok else None
                if gate is None:
                    failures += 1
                else:
                    gates.append(gate)
                    sentences.extend(check.sentence for check in gate.checks)
                measurements.append(measurement)
                rows.append(build_row(measurement, gate, None, [], None))
                written.append(out / f"{cell.stem}.json")
    return ProfileReport(tuple(measurements), tuple(rows), tuple(gates), failures, tuple(written), tuple(sentences),
                         exit_code_for(gates, failures=failures))
