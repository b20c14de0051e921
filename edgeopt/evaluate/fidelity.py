"""How far a variant's outputs are from the fp32 reference, and its task accuracy with an interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.core.stats import wilson_interval

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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
    per_sample = int(ref.shape[1]) if ref.ndim == 2 else 0
    noise = float(np.sum((ref - var) ** 2))
    signal = float(np.sum(ref**2))
    sqnr = None if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -999.0)
    cosine = min_cosine = None
    if per_sample >= MIN_COSINE_ELEMENTS:
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
        decision = float(np.mean((ref >= threshold) == (var >= threshold)))
    return OutputFidelity(output=name, samples=int(ref.shape[0]), cosine=cosine, min_cosine=min_cosine,
                          sqnr_db=sqnr, max_abs_error=float(np.abs(ref - var).max()) if ref.size else 0.0,
                          top1_agreement=agreement, elements_per_sample=per_sample, top1_positions=positions,
                          decision_agreement=decision, decision_threshold=threshold)


def worst(found: Sequence[OutputFidelity]) -> dict[str, float]:
    """The worst of each figure across a variant's outputs: ``cosine`` (the lowest per-output mean),
    ``top1`` and ``decision`` agreement; a figure no output has is absent."""
    figures: dict[str, float] = {}
    for item in found:
        for key, value in (("cosine", item.cosine), ("top1", item.top1_agreement),
                           ("decision", item.decision_agreement)):
            if value is not None:
                figures[key] = min(figures.get(key, value), value)
    return figures


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


def top1_accuracy(outputs_path: Path, labels: np.ndarray) -> Accuracy:
    """Top-1 accuracy of the first output's argmax against ``labels``, with a Wilson interval."""
    logits = _per_sample(load_outputs(outputs_path)[0])  # KeyError if the first output varied in shape
    correct = int(np.sum(logits.argmax(axis=1) == np.asarray(labels).reshape(-1)))
    n = int(logits.shape[0])
    lower, upper = wilson_interval(correct, n, 0.95)
    return Accuracy(metric="top1", value=correct / n, lower=lower, upper=upper, correct=correct, samples=n)
