"""The figures of one outputs file against its profile's fp32 row: fidelity per output, top-1 accuracy on the
eval set's labels, task metrics and the result under each input shift.

:class:`OutputJudge` is built once per profile (with that profile's fp32 measurement, or why it has none) and
asked for the :class:`OutputFigures` of every row's outputs, measured or emulated
(``edgeopt.workflows.tensorrt_rows``), and, for a row that got no fidelity, why
(:meth:`OutputJudge.missing_reference`: such a row is never pass).  An output that cannot be compared (a
sequence or map, text, a shape that varies between samples) is in the fidelity with its note
(``not comparable (non-tensor output 'zm')``), beside the outputs that were compared; a row none of whose
outputs could be compared gets no fidelity, and the notes say why.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edgeopt.errors import EdgeoptError, first_line
from edgeopt.evaluate.fidelity import Accuracy, OutputFidelity, fidelity, top1_accuracy
from edgeopt.evaluate.metrics import (
    MetricResult,
    Resamples,
    Scores,
    load_output_list,
    score_outputs,
    summarise,
)
from edgeopt.evaluate.robustness import ShiftResult, shift_result
from edgeopt.measure.results import Measurement
from edgeopt.measure.stored import extra_outputs_file
from edgeopt.workflows.plan import EvalPlan

__all__ = ["OutputFigures", "OutputJudge"]

logger = logging.getLogger(__name__)


class OutputFigures(NamedTuple):
    """What one outputs file showed."""

    fidelity: list[OutputFidelity]
    accuracy: Accuracy | None
    metrics: tuple[MetricResult, ...]
    shifts: tuple[ShiftResult, ...]


class OutputJudge:
    """Fidelity vs the profile's fp32 row, top-1 accuracy, task metrics and shift results of one outputs file."""

    def __init__(self, reference: Measurement | None, directory: Path, labels: np.ndarray | None,
                 plan: EvalPlan | None, class_outputs: set[str] | None, decision_threshold: float,
                 no_reference: str = "this profile has no fp32 row") -> None:
        """``no_reference``: why ``reference`` is None (the fp32 row failed, or was not asked for)."""
        self.reference, self.directory, self.labels = reference, directory, labels
        self.class_outputs, self.decision_threshold = class_outputs, decision_threshold
        self.no_reference = no_reference
        self.scorer = _Scorer(plan, directory, reference) if plan is not None else None
        self.unreadable: dict[Path, str] = {}  # outputs file -> why comparing it with fp32's failed
        self.uncompared: dict[Path, list[str]] = {}  # outputs file none of whose outputs was compared -> the notes

    def figures(self, directory: Path, outputs_file: str, output_names: list[str]) -> OutputFigures:
        """The figures of ``directory/outputs_file`` (outputs named ``output_names``)."""
        found: list[OutputFidelity] = []
        accuracy: Accuracy | None = None
        metrics: tuple[MetricResult, ...] = ()
        shifts: tuple[ShiftResult, ...] = ()
        outputs = directory / outputs_file
        reference = self.reference
        if reference is not None and reference.outputs_file and outputs.exists():
            try:
                found = fidelity(self.directory / reference.outputs_file, outputs, output_names,
                                 self.decision_threshold, self.class_outputs)
                if all(f.note is not None for f in found):  # nothing compared: no fidelity (never pass), the notes why
                    self.uncompared[outputs] = [f.note for f in found if f.note is not None]
                    found = []
            except (EdgeoptError, OSError, ValueError) as error:
                self.unreadable[outputs] = first_line(error)
        if self.labels is not None and self.labels.dtype.kind in "iu" and outputs.exists():
            with contextlib.suppress(KeyError, ValueError):
                accuracy = top1_accuracy(outputs, self.labels)
        if self.scorer is not None and outputs.exists():
            metrics, shifts = self.scorer.score(directory, outputs_file)
        return OutputFigures(found, accuracy, metrics, shifts)

    def missing_reference(self, directory: Path, outputs_file: str | None) -> str:
        """Why the outputs ``directory/outputs_file`` got no fidelity vs fp32 (asked when :meth:`figures` found
        none): the sentence after ``no fp32 reference:`` in the row's gate."""
        if self.reference is None:
            return self.no_reference
        if not self.reference.outputs_file:
            return "the fp32 row kept no outputs"
        kept = self.directory / self.reference.outputs_file
        if not kept.exists():
            return f"the fp32 row's outputs file {kept.name} is missing"
        if not outputs_file:
            return "this row kept no outputs to compare with fp32's"
        outputs = directory / outputs_file
        if not outputs.exists():
            return f"this row's outputs file {outputs_file} is missing"
        if outputs in self.unreadable:
            return f"its outputs could not be compared with fp32's ({self.unreadable[outputs]})"
        notes = self.uncompared.get(outputs) or ["an output whose shape varies between samples is not compared"]
        return f"no output of this row could be compared with fp32's ({'; '.join(notes)})"


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
        resamples = Resamples(clean[0].values.size)
        fp32_clean = {s.spec.name: s for s in self.fp32.get(None, [])}
        metrics = tuple(summarise(s, fp32_clean.get(s.spec.name), resamples) for s in clean)
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
                                           fp32_clean.get(name), resamples))
        return metrics, tuple(shifts)
