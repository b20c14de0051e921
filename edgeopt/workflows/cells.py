"""The measurement cells of a run and the hook that measures them.

``run_pipeline`` lists every (variant, profile, backend, precision) cell of the run first, then hands the whole
list to one :data:`MeasureCells` callable (``RunConfig.measure``).  The default, :func:`measure_cells`, measures
them one after the other on this host with :func:`edgeopt.workflows.reuse.measure_or_reuse`; the device lab
(``edgeopt.lab``) dispatches them to the nodes of a Ray cluster instead, all at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeopt.measure.results import Measurement
from edgeopt.models.quantize import Variant
from edgeopt.profiles.schema import HardwareProfile
from edgeopt.workflows.reuse import measure_or_reuse

__all__ = ["Cell", "CellContext", "MeasureCells", "measure_cells"]


@dataclass(frozen=True)
class Cell:
    """One measurement a run asks for."""

    variant: Variant
    profile: HardwareProfile
    timing_inputs: Path
    backend: str | None = None
    precision: str | None = None
    model_reference: str | None = None  # a torch row runs the factory itself


@dataclass(frozen=True)
class CellContext:
    """What every cell of one run shares."""

    directory: Path  # the run's measurements folder
    reference_inputs: Path | None
    reference_sha: str | None
    extra_references: dict[str, Path]
    proxy: bool
    force: bool


#: ``(cells, context) -> one Measurement per cell, in the cells' order``; each saved in ``context.directory``.
MeasureCells = Callable[[Sequence[Cell], CellContext], list[Measurement]]


def measure_cells(cells: Sequence[Cell], context: CellContext) -> list[Measurement]:
    """Measure (or reuse) each cell on this host, in order."""
    return [measure_or_reuse(cell.variant, cell.profile, context.directory, timing_inputs=cell.timing_inputs,
                             reference_inputs=context.reference_inputs, reference_sha=context.reference_sha,
                             proxy=context.proxy, force=context.force, backend=cell.backend,
                             precision=cell.precision, extra_references=context.extra_references,
                             model_reference=cell.model_reference)
            for cell in cells]
