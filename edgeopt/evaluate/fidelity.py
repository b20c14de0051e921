"""How far a variant's outputs are from the fp32 reference, and its task accuracy with an interval.

NaN and infinity in outputs are data: an output holding any (an fp16 variant whose activations overflow)
is compared all the same, its count of NaN and Inf values recorded (``nan_values``, ``inf_values``,
``reference_nonfinite`` for fp32's), its cosine NaN (undefined), its SQNR and max abs error whatever the
arithmetic gives (``-inf`` dB, ``inf``); :meth:`OutputFidelity.problem` says it in words, the table shows
it, and ``edgeopt.evaluate.gate.judge_outputs`` fails every output budget of such a variant (fp32's own
outputs holding NaN too are said, not excused).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.core.fileio import restore_floats
from edgeopt.core.stats import wilson_interval
from edgeopt.errors import CalibrationError

MIN_COSINE_ELEMENTS = 8  # a cosine over fewer elements per sample says nothing (1 element: always ±1)
DEFAULT_DECISION_THRESHOLD = 0.5
MAX_CLASSES = 100_000  # a last axis longer than this is not read as class scores


@dataclass(frozen=True)
class OutputFidelity:
    """One output of a variant vs the same output of the fp32 reference, over the reference inputs.

    Which figures exist depends on the output's kind: ``cosine``/``min_cosine`` only where each sample
    has at least :data:`MIN_COSINE_ELEMENTS` elements; ``top1_agreement`` for class scores of any rank
    (argmax along the last axis at every leading position: per sample for ``[N, C]``, per time step for
    ``[N, T, C]``, per anchor for detection heads), over ``top1_positions`` decisions;
    ``decision_agreement`` for outputs whose reference values all lie in [0, 1] (probabilities, scores,
    masks): the share of elements on the same side of ``decision_threshold``.  SQNR and max abs error
    always.
    """

    output: str
    samples: int
    cosine: float | None  # mean over samples of the per-sample cosine similarity
    min_cosine: float | None
    sqnr_db: float | None  # 10·log10(‖ref‖² / ‖ref − variant‖²) over all samples; None when identical
    max_abs_error: float
    top1_agreement: float | None  # share of argmax decisions along the class axis that agree
    elements_per_sample: int = 0
    top1_positions: int = 0
    decision_agreement: float | None = None
    decision_threshold: float | None = None
    nan_values: int = 0  # NaN values in the variant's output (over all samples)
    inf_values: int = 0  # ±Inf values in the variant's output
    reference_nonfinite: int = 0  # NaN/Inf values in fp32's own output

    @property
    def nonfinite(self) -> int:
        """NaN and Inf values in the variant's output."""
        return self.nan_values + self.inf_values

    @property
    def values(self) -> int:
        return self.samples * self.elements_per_sample

    def problem(self) -> str | None:
        """``output 'y' holds 3 NaN and 5 Inf of 32 values (fp32: none)``, or None when every value is finite."""
        if not self.nonfinite and not self.reference_nonfinite:
            return None
        kinds = " and ".join(f"{n} {kind}" for n, kind in ((self.nan_values, "NaN"), (self.inf_values, "Inf")) if n)
        of = f" of {self.values} values" if self.values else ""
        fp32 = f"{self.reference_nonfinite} NaN/Inf" if self.reference_nonfinite else "none"
        if not self.nonfinite:
            return f"output '{self.output}': fp32's own output holds {fp32} values{of}"
        return f"output '{self.output}' holds {kinds}{of} (fp32: {fp32})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputFidelity:
        """Inverse of :meth:`to_dict`, from JSON (non-finite figures as their strings; older rows lack the
        NaN/Inf counts)."""
        names = {f.name for f in fields(cls)}
        floats = ("cosine", "min_cosine", "sqnr_db", "max_abs_error", "top1_agreement", "decision_agreement",
                  "decision_threshold")
        return cls(**restore_floats({k: v for k, v in data.items() if k in names}, floats))

    def headline(self) -> tuple[str, float] | None:
        """The most meaningful figure of this output, as (name, value in [0, 1]): decision agreement for
        a tiny output, else top-1 agreement for class scores, else the cosine."""
        tiny = self.elements_per_sample < MIN_COSINE_ELEMENTS
        if tiny and self.decision_agreement is not None:
            return "decision", self.decision_agreement
        if self.top1_agreement is not None:
            return "top1", self.top1_agreement
        if self.cosine is not None:
            return "cos", self.cosine
        if self.decision_agreement is not None:
            return "decision", self.decision_agreement
        return None


@dataclass(frozen=True)
class Accuracy:
    metric: str
    value: float
    lower: float
    upper: float
    correct: int
    samples: int
    interval: str = "Wilson score, 95%"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Accuracy:
        names = {f.name for f in fields(cls)}
        return cls(**restore_floats({k: v for k, v in data.items() if k in names}, ("value", "lower", "upper")))


def load_outputs(path: Path) -> dict[int, np.ndarray]:
    """Stacked outputs by output index (an output whose shape varied between samples is absent)."""
    with np.load(path, allow_pickle=False) as data:
        return {int(key[3:]): data[key] for key in data.files if key.startswith("out")}


def _per_sample(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float64).reshape(array.shape[0], -1)


def _is_class_scores(reference: np.ndarray) -> bool:
    """Float scores with a class axis last: rank >= 2 and 2..MAX_CLASSES entries on the last axis."""
    return (reference.dtype.kind == "f" and reference.ndim >= 2 and 2 <= reference.shape[-1] <= MAX_CLASSES
            and reference.size > 0)


def compare(reference: np.ndarray, variant: np.ndarray, name: str,
            decision_threshold: float = DEFAULT_DECISION_THRESHOLD, class_scores: bool | None = None) -> OutputFidelity:
    """``class_scores``: whether the last axis holds class scores (from the graph:
    :func:`edgeopt.models.graph.class_score_outputs`); None judges by shape alone (float, rank >= 2)."""
    ref, var = _per_sample(reference), _per_sample(variant)
    nan_values, inf_values = int(np.count_nonzero(np.isnan(var))), int(np.count_nonzero(np.isinf(var)))
    reference_nonfinite = int(np.count_nonzero(~np.isfinite(ref)))
    finite = not (nan_values or inf_values or reference_nonfinite)
    per_sample = int(ref.shape[1]) if ref.ndim == 2 else 0
    with np.errstate(all="ignore"):  # NaN/Inf outputs give NaN/Inf figures, recorded as such
        noise = float(np.sum((ref - var) ** 2))
        signal = float(np.sum(ref**2))
        max_abs = float(np.abs(ref - var).max()) if ref.size else 0.0
    sqnr = _sqnr_db(signal, noise)
    cosine = min_cosine = None
    if per_sample >= MIN_COSINE_ELEMENTS and not finite:
        cosine = min_cosine = math.nan  # the direction of an output holding NaN/Inf is undefined
    elif per_sample >= MIN_COSINE_ELEMENTS:
        norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(var, axis=1)
        dots = np.sum(ref * var, axis=1)
        # a sample whose output is (all but) zero has no direction: it is left out of the per-sample
        # cosines (SQNR and max abs error still cover it); with no such sample left, the cosine is taken
        # over all samples at once
        valid = norms > 1e-12
        flat = float(np.linalg.norm(ref) * np.linalg.norm(var))
        overall = float(np.sum(ref * var)) / flat if flat > 0 else (1.0 if np.array_equal(ref, var) else 0.0)
        cosines = dots[valid] / norms[valid] if valid.any() else np.array([overall])
        cosine, min_cosine = float(cosines.mean()), float(cosines.min())
    agreement, positions = None, 0
    if _is_class_scores(reference) and class_scores is not False:
        classes = reference.shape[-1]
        ref_top = np.asarray(reference).reshape(-1, classes).argmax(axis=1)
        var_top = np.asarray(variant).reshape(-1, classes).argmax(axis=1)
        agreement, positions = float(np.mean(ref_top == var_top)), int(ref_top.size)
    decision = threshold = None
    if ref.size and reference.dtype.kind in "fc" and float(ref.min()) >= 0.0 and float(ref.max()) <= 1.0:
        threshold = decision_threshold
        decision = float(np.mean((ref >= threshold) == (var >= threshold)))  # NaN is on neither side: disagrees
    return OutputFidelity(output=name, samples=int(ref.shape[0]), cosine=cosine, min_cosine=min_cosine,
                          sqnr_db=sqnr, max_abs_error=max_abs,
                          top1_agreement=agreement, elements_per_sample=per_sample, top1_positions=positions,
                          decision_agreement=decision, decision_threshold=threshold, nan_values=nan_values,
                          inf_values=inf_values, reference_nonfinite=reference_nonfinite)


def _sqnr_db(signal: float, noise: float) -> float | None:
    """10·log10(signal / noise): None when identical, -999 for a zero reference, NaN when either sum is NaN
    (or both infinite), -inf when only the noise is infinite."""
    if noise == 0:
        return None
    if math.isnan(signal) or math.isnan(noise) or (math.isinf(signal) and math.isinf(noise)):
        return math.nan
    if signal == 0:
        return -999.0
    if math.isinf(noise):
        return -math.inf
    if math.isinf(signal):
        return math.inf
    return 10 * math.log10(signal / noise)


def lowest(a: float, b: float) -> float:
    """The lower of two figures, NaN being lower than anything (an undefined figure is the worst)."""
    return math.nan if math.isnan(a) or math.isnan(b) else min(a, b)


def worst(found: Sequence[OutputFidelity]) -> dict[str, float]:
    """The worst of each figure across a variant's outputs: ``cosine`` (the lowest per-output mean),
    ``top1`` and ``decision`` agreement; a figure no output has is absent, a NaN one is the worst."""
    figures: dict[str, float] = {}
    for item in found:
        for key, value in (("cosine", item.cosine), ("top1", item.top1_agreement),
                           ("decision", item.decision_agreement)):
            if value is not None:
                figures[key] = lowest(figures.get(key, value), value)
    return figures


def nonfinite_problems(found: Sequence[OutputFidelity]) -> list[str]:
    """:meth:`OutputFidelity.problem` of every output whose values are not all finite."""
    return [text for item in found if (text := item.problem()) is not None]


def fidelity(reference_path: Path, variant_path: Path, names: list[str],
             decision_threshold: float = DEFAULT_DECISION_THRESHOLD,
             class_outputs: set[str] | None = None) -> list[OutputFidelity]:
    """Every output both files hold, compared (see :class:`OutputFidelity` for what each kind gets);
    ``class_outputs``: the output names that hold class scores (None: judge by shape)."""
    reference, variant = load_outputs(reference_path), load_outputs(variant_path)
    found = []
    for i in sorted(set(reference) & set(variant)):
        name = names[i] if i < len(names) else f"out{i}"
        scores = None if class_outputs is None else name in class_outputs
        found.append(compare(reference[i], variant[i], name, decision_threshold, scores))
    return found


def check_labels(labels: np.ndarray, classes: int, source: str = "") -> None:
    """Refuse (``CalibrationError``, exit 3, naming ``source``) labels that are not class indices of an output
    with ``classes`` scores: each must lie in ``[0, classes)``; else every sample would simply count as wrong."""
    values = np.asarray(labels).reshape(-1)
    if not values.size or values.dtype.kind not in "iu":
        return
    outside = (values < 0) | (values >= classes)
    if bool(outside.any()):
        where = source or getattr(labels, "source", "") or "the eval set"
        raise CalibrationError(
            f"{where}: array 'labels': {int(outside.sum())} of {values.size} label(s) outside 0..{classes - 1} "
            f"(smallest {int(values.min())}, largest {int(values.max())}); the model's first output has {classes} "
            "class scores, and a label is the index of one")


def top1_accuracy(outputs_path: Path, labels: np.ndarray) -> Accuracy:
    """Top-1 accuracy of the first output's argmax against ``labels``, with a Wilson interval.  ValueError
    when the labels are not class indices of that output (integer labels used as regression targets have no
    top-1; the ``top1`` metric refuses such labels: ``edgeopt.evaluate.metrics``)."""
    logits = _per_sample(load_outputs(outputs_path)[0])  # KeyError if the first output varied in shape
    try:
        check_labels(labels, int(logits.shape[1]))
    except CalibrationError as error:
        raise ValueError(str(error)) from error
    correct = int(np.sum(logits.argmax(axis=1) == np.asarray(labels).reshape(-1)))
    n = int(logits.shape[0])
    lower, upper = wilson_interval(correct, n, 0.95)
    return Accuracy(metric="top1", value=correct / n, lower=lower, upper=upper, correct=correct, samples=n)
