"""How far a variant's outputs are from the fp32 reference, and its task accuracy with an interval."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.core.stats import wilson_interval


@dataclass(frozen=True)
class OutputFidelity:
    """One output of a variant vs the same output of the fp32 reference, over the reference inputs."""

    output: str
    samples: int
    cosine: float  # mean over samples of the per-sample cosine similarity
    min_cosine: float
    sqnr_db: float | None  # 10·log10(‖ref‖² / ‖ref − variant‖²) over all samples; None when identical
    max_abs_error: float
    top1_agreement: float | None  # share of samples whose argmax agrees (classification-shaped outputs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def compare(reference: np.ndarray, variant: np.ndarray, name: str) -> OutputFidelity:
    ref, var = _per_sample(reference), _per_sample(variant)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(var, axis=1)
    dots = np.sum(ref * var, axis=1)
    # a sample whose output is (all but) zero has no direction: it is left out of the per-sample
    # cosines (SQNR and max abs error still cover it); with no such sample left, the cosine is taken
    # over all samples at once
    valid = norms > 1e-12
    flat = float(np.linalg.norm(ref) * np.linalg.norm(var))
    overall = float(np.sum(ref * var)) / flat if flat > 0 else (1.0 if np.array_equal(ref, var) else 0.0)
    cosines = dots[valid] / norms[valid] if valid.any() else np.array([overall])
    noise = float(np.sum((ref - var) ** 2))
    signal = float(np.sum(ref**2))
    sqnr = None if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -999.0)
    agreement = None
    if ref.shape[1] > 1 and reference.ndim >= 2 and reference.shape[-1] == ref.shape[1]:
        agreement = float(np.mean(ref.argmax(axis=1) == var.argmax(axis=1)))
    return OutputFidelity(output=name, samples=int(ref.shape[0]), cosine=float(cosines.mean()),
                          min_cosine=float(cosines.min()), sqnr_db=sqnr,
                          max_abs_error=float(np.abs(ref - var).max()) if ref.size else 0.0,
                          top1_agreement=agreement)


def fidelity(reference_path: Path, variant_path: Path, names: list[str]) -> list[OutputFidelity]:
    reference, variant = load_outputs(reference_path), load_outputs(variant_path)
    return [compare(reference[i], variant[i], names[i] if i < len(names) else f"out{i}")
            for i in sorted(set(reference) & set(variant))]


def top1_accuracy(outputs_path: Path, labels: np.ndarray) -> Accuracy:
    """Top-1 accuracy of the first output's argmax against ``labels``, with a Wilson interval."""
    logits = _per_sample(load_outputs(outputs_path)[0])  # KeyError if the first output varied in shape
    correct = int(np.sum(logits.argmax(axis=1) == np.asarray(labels).reshape(-1)))
    n = int(logits.shape[0])
    lower, upper = wilson_interval(correct, n, 0.95)
    return Accuracy(metric="top1", value=correct / n, lower=lower, upper=upper, correct=correct, samples=n)
