"""Parity of an exported file with PyTorch: the tolerance rule, the worst error per output, the two sizes of
every dynamic dimension, and the inputs parity runs on (the user's samples, then in-domain synthetic data)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgeopt.errors import ExportError
from edgeopt.models.input_spec import InputSpec
from edgeopt.models.inputs import synthetic_feeds

if TYPE_CHECKING:
    import onnx

PARITY_SECOND_SIZE_SAMPLES = 2


@dataclass(frozen=True)
class ParityTolerance:
    """Export is rejected when an output's cosine is below ``min_cosine``, or when its largest error exceeds both
    ``max_abs`` and ``max_rel`` (relative to the output's largest magnitude): either bound is enough, as in
    Polygraphy and ``numpy.allclose``, so box coordinates in pixels are not held to an absolute 1e-3."""

    max_abs: float = 1e-3
    max_rel: float = 1e-3
    min_cosine: float = 0.9999


@dataclass(frozen=True)
class OutputParity:
    output: str
    max_abs_error: float
    max_rel_error: float
    cosine: float


def compare_outputs(name: str, expected: np.ndarray, actual: np.ndarray) -> OutputParity:
    a = np.asarray(expected, dtype=np.float64).ravel()
    b = np.asarray(actual, dtype=np.float64).ravel()
    diff = np.abs(a - b)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(a).max()) if a.size else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(np.dot(a, b) / norm) if norm > 0 else (1.0 if max_abs == 0 else 0.0)
    return OutputParity(output=name, max_abs_error=max_abs, max_rel_error=max_rel, cosine=cosine)


def second_size(size: int) -> int:
    """The second size parity runs a dynamic dimension at: ``size`` less its largest power-of-two divisor up to
    half of it (224 → 192, 320 → 256, 128 → 64, 16 → 8, 2 → 1), so strides that divide ``size`` still divide it
    and a maximum length (position embeddings) is never exceeded; 1 → 2."""
    if size <= 1:
        return 2
    step = size & -size  # the largest power of two dividing size
    while step > size // 2:
        step //= 2
    return size - max(step, 1)


def size_of(dim: str, sizes: Mapping[str, int]) -> int:
    """The size of a dimension name, or of a sum of names (``past+seq``: an attention mask over a cache)."""
    return sum(sizes[part] for part in dim.split("+"))


def concrete_specs(specs: Sequence[InputSpec], sizes: Mapping[str, int]) -> list[InputSpec]:
    return [InputSpec(s.name, tuple(size_of(d, sizes) if isinstance(d, str) else d for d in s.shape), s.dtype)
            for s in specs]


def parity_feeds(specs: Sequence[InputSpec], sizes_a: Mapping[str, int], sizes_b: Mapping[str, int],
                  model: onnx.ModelProto, user: Sequence[Mapping[str, np.ndarray]], count: int,
                  seed: int) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(label, feeds) for parity: the user's samples, in-domain synthetic data at the example sizes, and, when a
    dimension is dynamic, at the second sizes."""
    feeds: list[tuple[str, dict[str, np.ndarray]]] = [(f"sample {i}", {k: np.asarray(v) for k, v in s.items()})
                                                      for i, s in enumerate(user)]
    for index in range(max(1, count - len(user))):
        feeds.append((sizes_label(sizes_a), synthetic_feeds(concrete_specs(specs, sizes_a), model, seed=seed + index)))
    if sizes_b != sizes_a:
        for index in range(PARITY_SECOND_SIZE_SAMPLES):
            feeds.append((sizes_label(sizes_b),
                          synthetic_feeds(concrete_specs(specs, sizes_b), model, seed=seed + 100 + index)))
    return feeds


def sizes_label(sizes: Mapping[str, int]) -> str:
    return ", ".join(f"{name}={size}" for name, size in sizes.items()) or "the declared shapes"


def worst_of(previous: OutputParity | None, new: OutputParity) -> OutputParity:
    if previous is None:
        return new
    return OutputParity(new.output, max(new.max_abs_error, previous.max_abs_error),
                        max(new.max_rel_error, previous.max_rel_error), min(new.cosine, previous.cosine))


def check_tolerance(parity: OutputParity, tolerance: ParityTolerance, where: str, label: str) -> None:
    problems = []
    if parity.max_abs_error > tolerance.max_abs and parity.max_rel_error > tolerance.max_rel:
        problems.append(f"max abs error {parity.max_abs_error:.3g} > {tolerance.max_abs!r} and max rel error "
                        f"{parity.max_rel_error:.3g} > {tolerance.max_rel!r}")
    if parity.cosine < tolerance.min_cosine:
        problems.append(f"cosine {parity.cosine!r} < {tolerance.min_cosine!r}")
    if problems:
        raise ExportError(f"{where}: output '{parity.output}' differs from PyTorch at {label}: {'; '.join(problems)}")
