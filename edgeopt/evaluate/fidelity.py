"""How far a variant's outputs are from the fp32 reference, and its task accuracy with an interval.

Every float output is also compared slice by slice where fp32's values are of clearly different sizes along an
axis (a detector's ``[1, 84, N]`` output: 4 box coordinates in pixels, then 80 class scores in [0, 1]): one
quantization scale for the whole tensor can round every score to 0 while the coordinates keep the whole-tensor
cosine near 1.  :class:`SliceFidelity` holds each slice's figures; a slice whose variant values are (near)
constant where fp32's vary is *lost* (:meth:`SliceFidelity.loss`), and the gate fails such a variant whatever
its whole-tensor figures.

Top-1 agreement is claimed for class scores (from the graph: ``edgeopt.models.graph.class_score_outputs``; or
by their values: the last axis sums to 1) and counted only where fp32 has decided: its top-1 probability ahead
of its top-2 by more than :data:`TOP1_MARGIN` (logits through a softmax), the margin and the positions left out
recorded.

NaN and infinity in outputs are data: an output holding any (an fp16 variant whose activations overflow)
is compared all the same, its count of NaN and Inf values recorded (``nan_values``, ``inf_values``,
``reference_nonfinite`` for fp32's), its cosine NaN (undefined), its SQNR and max abs error whatever the
arithmetic gives (``-inf`` dB, ``inf``); :meth:`OutputFidelity.problem` says it in words, the table shows
it, and ``edgeopt.evaluate.gate.judge_outputs`` fails every output budget of such a variant (fp32's own
outputs holding NaN too are said, not excused).
"""

from __future__ import annotations

import functools
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
SUMS_TO_ONE = 1e-3  # a last axis whose fp32 values are >= 0 and sum to 1 within this is class probabilities
TOP1_MARGIN = 0.01  # fp32 decided a position when its top-1 probability beats its top-2 by more than this
SLICE_RANGE_RATIO = 10.0  # positions along an axis whose fp32 ranges differ by more than this are other slices
NEGLIGIBLE_RANGE = 1e-4  # a position whose range is below this share of its axis' largest joins its neighbours
MAX_SLICES = 8  # an axis cut into more runs than this has no layout (interleaved sizes): not sliced
MIN_UNIT_SPAN = 0.05  # a [0, 1] slice whose fp32 values span less decides nothing (a class that never fires)
LOST_SPREAD = 0.01  # a variant slice whose range is below this share of fp32's is (near) constant: lost
UNIT_TOLERANCE = 1e-6  # fp32 probabilities may overshoot [0, 1] by an ulp (ONNX Runtime's fast Sigmoid gives 1.0000001)


def _in_unit_interval(low: float, high: float) -> bool:
    """Whether values from ``low`` to ``high`` are probabilities/scores in [0, 1], within float rounding."""
    return low >= -UNIT_TOLERANCE and high <= 1.0 + UNIT_TOLERANCE


def _short(value: float) -> str:
    """``0.83``, ``320.4``, ``0``: a value rounded to two decimals, for sentences."""
    return f"{round(value, 2):g}"


@dataclass(frozen=True)
class SliceFidelity:
    """Positions ``start:stop`` along ``axis`` of an output (its own axes, 0 first), compared with fp32 on their own.

    Slices come from fp32's values: along each axis, every position's range (max − min over the samples and the
    other axes) is taken; ranges more than :data:`SLICE_RANGE_RATIO` apart are different levels, and each
    contiguous run of one level is a slice (a position whose range is negligible joins the run before it).
    ``judged``: whether fp32's values there decide anything: always, except a slice in [0, 1] whose fp32 values
    span less than :data:`MIN_UNIT_SPAN` (a class that never fires).  ``lost``: a judged slice whose variant
    values are (near) constant, their range at most :data:`LOST_SPREAD` of fp32's.
    """

    axis: int
    start: int
    stop: int
    reference_min: float
    reference_max: float
    variant_min: float
    variant_max: float
    elements_per_sample: int
    cosine: float | None  # mean over samples; None under MIN_COSINE_ELEMENTS elements per sample
    sqnr_db: float | None
    decision_agreement: float | None  # for a slice whose fp32 values lie in [0, 1]
    judged: bool
    lost: bool

    def describe(self, output: str) -> str:
        """``slice 4:84 of output0 (range 0–0.83)``: where it is, and fp32's values there."""
        return (f"slice {self.start}:{self.stop} of {output} "
                f"(range {_short(self.reference_min)}–{_short(self.reference_max)})")

    def loss(self, output: str) -> str:
        """``slice 4:84 of output0 (range 0–0.83) lost: max 0.0``: what the variant kept of a lost slice."""
        kept = (f"max {round(self.variant_max, 2)}" if self.variant_min == self.variant_max
                else f"range {_short(self.variant_min)}–{_short(self.variant_max)}")
        return f"{self.describe(output)} lost: {kept}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SliceFidelity:
        names = {f.name for f in fields(cls)}
        floats = ("reference_min", "reference_max", "variant_min", "variant_max", "cosine", "sqnr_db",
                  "decision_agreement")
        return cls(**restore_floats({k: v for k, v in data.items() if k in names}, floats))


@dataclass(frozen=True)
class OutputFidelity:
    """One output of a variant vs the same output of the fp32 reference, over the reference inputs.

    Which figures exist depends on the output's kind: ``cosine``/``min_cosine`` only where each sample
    has at least :data:`MIN_COSINE_ELEMENTS` elements; ``top1_agreement`` for class scores of any rank
    (argmax along the last axis at every leading position: per sample for ``[N, C]``, per time step for
    ``[N, T, C]``, per anchor for detection heads), over ``top1_positions`` decisions;
    ``decision_agreement`` for outputs whose reference values all lie in [0, 1] (probabilities, scores,
    masks): the share of elements on the same side of ``decision_threshold``.  SQNR and max abs error
    always.  Top-1 agreement counts only the ``top1_positions`` where fp32 decided (its top-1 probability
    ahead of its top-2 by more than ``top1_margin``); ``top1_undecided`` near-ties are left out.  ``slices``:
    the output's slices along each axis whose fp32 values are of clearly different sizes
    (:class:`SliceFidelity`), empty where none are.
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
    top1_margin: float | None = None  # what fp32's top-1 probability must beat its top-2 by for a position to count
    top1_undecided: int = 0  # positions fp32 had not decided (left out of top1_agreement)
    slices: tuple[SliceFidelity, ...] = ()
    note: str | None = None  # an output not compared, and why (:func:`not_compared`): every figure absent

    @property
    def judged_slices(self) -> tuple[SliceFidelity, ...]:
        return tuple(s for s in self.slices if s.judged)

    @property
    def lost_slices(self) -> tuple[SliceFidelity, ...]:
        return tuple(s for s in self.slices if s.lost)

    @property
    def lowest_cosine(self) -> float | None:
        """The output's cosine, or a judged slice's where that is lower (NaN lowest)."""
        return _lowest([self.cosine, *(s.cosine for s in self.judged_slices)])

    @property
    def lowest_decision(self) -> float | None:
        """The output's decision agreement, or a judged slice's where that is lower."""
        return _lowest([self.decision_agreement, *(s.decision_agreement for s in self.judged_slices)])

    @property
    def nonfinite(self) -> int:
        """NaN and Inf values in the variant's output."""
        return self.nan_values + self.inf_values

    @property
    def values(self) -> int:
        return self.samples * self.elements_per_sample

    def problem(self) -> str | None:
        """``output 'y' holds 3 NaN and 5 Inf of 32 values (fp32: none)``, or None when every value is finite (an
        output not compared has its :attr:`note` instead)."""
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
        NaN/Inf counts, the top-1 margin and the slices)."""
        names = {f.name for f in fields(cls)}
        floats = ("cosine", "min_cosine", "sqnr_db", "max_abs_error", "top1_agreement", "decision_agreement",
                  "decision_threshold", "top1_margin")
        known = restore_floats({k: v for k, v in data.items() if k in names}, floats)
        known["slices"] = tuple(SliceFidelity.from_dict(s) for s in known.get("slices") or ())
        return cls(**known)

    def headline(self) -> tuple[str, float] | None:
        """The most meaningful figure of this output, as (name, value in [0, 1]): top-1 agreement for class
        scores, else decision agreement for a tiny output, else the cosine (a judged slice's where lower),
        else decision agreement."""
        tiny = self.elements_per_sample < MIN_COSINE_ELEMENTS
        if self.top1_agreement is not None:
            return "top1", self.top1_agreement
        if tiny and self.lowest_decision is not None:
            return "decision", self.lowest_decision
        if self.lowest_cosine is not None:
            return "cos", self.lowest_cosine
        if self.lowest_decision is not None:
            return "decision", self.lowest_decision
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
    """Stacked outputs by output index (an output left out by the worker is absent: :func:`left_out`)."""
    with np.load(path, allow_pickle=False) as data:
        return {int(key[3:]): data[key] for key in data.files if key.startswith("out")}


def left_out(path: Path) -> dict[int, str]:
    """Why the worker left outputs out of an outputs file, by output index (``why<i>``: ``non-tensor``,
    ``string``, ``shape varies``; ``edgeopt.measure.worker.left_out``)."""
    with np.load(path, allow_pickle=False) as data:
        return {int(key[3:]): str(data[key]) for key in data.files if key.startswith("why")}


def not_compared(name: str, why: str) -> OutputFidelity:
    """An output no figure is taken of, its note saying why: ``not comparable (non-tensor output 'zm')`` (a
    sequence or a map: ZipMap's), ``not comparable (string output 's')``, else (NonZero's data-dependent shape;
    an outputs file from before reasons were kept) ``output 'x' not compared: its shape varies between samples``."""
    if why in ("non-tensor", "string"):
        note = f"not comparable ({why} output '{name}')"
    else:
        note = f"output '{name}' not compared: its shape varies between samples"
    return OutputFidelity(output=name, samples=0, cosine=None, min_cosine=None, sqnr_db=None, max_abs_error=0.0,
                          top1_agreement=None, note=note)


def _per_sample(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float64).reshape(array.shape[0], -1)


def _is_class_scores(reference: np.ndarray) -> bool:
    """Float scores with a class axis last: rank >= 2 and 2..MAX_CLASSES entries on the last axis."""
    return (reference.dtype.kind == "f" and reference.ndim >= 2 and 2 <= reference.shape[-1] <= MAX_CLASSES
            and reference.size > 0)


def _sums_to_one(reference: np.ndarray) -> bool:
    """Whether every position's last axis holds probabilities: values >= 0 summing to 1 (within SUMS_TO_ONE)."""
    values = np.asarray(reference, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return bool(np.all(values >= 0) and np.all(np.abs(values.sum(axis=-1) - 1.0) <= SUMS_TO_ONE))


def compare(reference: np.ndarray, variant: np.ndarray, name: str,
            decision_threshold: float = DEFAULT_DECISION_THRESHOLD, class_scores: bool | None = None) -> OutputFidelity:
    """``reference`` and ``variant``: one output over the reference samples, stacked (samples first).
    ``class_scores``: whether the last axis holds class scores (from the graph:
    :func:`edgeopt.models.graph.class_score_outputs`); None judges by shape alone (float, rank >= 2); a last
    axis whose fp32 values sum to 1 holds class scores whatever the graph says."""
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
        cosine, min_cosine = _cosines(ref, var)
    agreement, positions, margin, undecided = None, 0, None, 0
    if _is_class_scores(reference) and (class_scores is not False or _sums_to_one(reference)):
        agreement, positions, margin, undecided = _top1(reference, variant)
    decision = threshold = None
    if ref.size and reference.dtype.kind in "fc" and _in_unit_interval(float(ref.min()), float(ref.max())):
        threshold = decision_threshold
        decision = float(np.mean((ref >= threshold) == (var >= threshold)))  # NaN is on neither side: disagrees
    sliceable = finite and reference.dtype.kind == "f" and reference.shape == variant.shape and ref.size > 0
    slices = _slices(ref.reshape(reference.shape), var.reshape(variant.shape), decision_threshold) if sliceable else ()
    return OutputFidelity(output=name, samples=int(ref.shape[0]), cosine=cosine, min_cosine=min_cosine,
                          sqnr_db=sqnr, max_abs_error=max_abs,
                          top1_agreement=agreement, elements_per_sample=per_sample, top1_positions=positions,
                          decision_agreement=decision, decision_threshold=threshold, nan_values=nan_values,
                          inf_values=inf_values, reference_nonfinite=reference_nonfinite, top1_margin=margin,
                          top1_undecided=undecided, slices=slices)


def _cosines(ref: np.ndarray, var: np.ndarray) -> tuple[float, float]:
    """Mean and lowest per-sample cosine of two finite ``[samples, elements]`` arrays.  A sample whose output is
    (all but) zero has no direction: it is left out (SQNR and max abs error still cover it); with no such sample
    left, the cosine is taken over all samples at once (0 when only one side is zero)."""
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(var, axis=1)
    dots = np.sum(ref * var, axis=1)
    valid = norms > 1e-12
    flat = float(np.linalg.norm(ref) * np.linalg.norm(var))
    overall = float(np.sum(ref * var)) / flat if flat > 0 else (1.0 if np.array_equal(ref, var) else 0.0)
    cosines = dots[valid] / norms[valid] if valid.any() else np.array([overall])
    return float(cosines.mean()), float(cosines.min())


def _top1(reference: np.ndarray, variant: np.ndarray) -> tuple[float | None, int, float, int]:
    """Top-1 agreement over the positions fp32 decided, those positions, the margin and the positions left out.

    fp32 decided a position when its top-1 probability beats its top-2 by more than TOP1_MARGIN: scores in
    [0, 1] (probabilities, sigmoid scores) as they are, other scores (logits) through a softmax.  An untrained
    network's near-equal logits decide nothing; a flip between two near-equal classes is noise, not a broken
    variant."""
    classes = reference.shape[-1]
    ref = np.asarray(reference, dtype=np.float64).reshape(-1, classes)
    var = np.asarray(variant).reshape(-1, classes)
    with np.errstate(all="ignore"):  # a NaN or infinite score decides nothing
        unit = bool(np.all((ref >= 0) & (ref <= 1)))
        shares = ref if unit else np.exp(ref - ref.max(axis=1, keepdims=True))
        probabilities = shares if unit else shares / shares.sum(axis=1, keepdims=True)
        second, first = np.partition(probabilities, classes - 2, axis=1)[:, -2:].T
        decided = (first - second) > TOP1_MARGIN
    count = int(np.count_nonzero(decided))
    if not count:
        return None, 0, TOP1_MARGIN, int(decided.size)
    agree = ref[decided].argmax(axis=1) == var[decided].argmax(axis=1)
    return float(np.mean(agree)), count, TOP1_MARGIN, int(decided.size) - count


def _slices(ref: np.ndarray, var: np.ndarray, threshold: float) -> tuple[SliceFidelity, ...]:
    """Every slice (:class:`SliceFidelity`) of a finite output along each of its axes (``ref`` and ``var``:
    float64, stacked, samples first, of one shape)."""
    return tuple(_slice(ref, var, axis, start, stop, threshold)
                 for axis in range(1, ref.ndim) for start, stop in _runs(ref, axis))


def _runs(ref: np.ndarray, axis: int) -> list[tuple[int, int]]:
    """The slices along ``axis`` of a stacked output, as ``(start, stop)``; none when the axis holds one level."""
    length = ref.shape[axis]
    if length < 2:
        return []
    others = tuple(a for a in range(ref.ndim) if a != axis)
    ranges = ref.max(axis=others) - ref.min(axis=others)
    top = float(ranges.max())
    if top <= 0:
        return []
    counted = ranges > NEGLIGIBLE_RANGE * top
    logs = np.log10(ranges[counted])
    ordered = np.sort(logs)
    cuts = ordered[1:][np.diff(ordered) > math.log10(SLICE_RANGE_RATIO)]  # where each higher level starts
    if not cuts.size:
        return []
    levels = np.full(length, -1)
    levels[counted] = np.searchsorted(cuts, logs, side="right")
    first = int(levels[counted][0])
    for i in range(length):  # a negligible position joins the run before it (the first run, at the start)
        if levels[i] < 0:
            levels[i] = levels[i - 1] if i else first
    edges = [0, *(int(i) + 1 for i in np.flatnonzero(np.diff(levels))), length]
    if len(edges) - 1 > MAX_SLICES:
        return []
    return list(zip(edges[:-1], edges[1:], strict=True))


def _slice(ref: np.ndarray, var: np.ndarray, axis: int, start: int, stop: int, threshold: float) -> SliceFidelity:
    """Positions ``start:stop`` along ``axis`` of the stacked ``ref`` and ``var``, compared."""
    where = tuple(slice(start, stop) if a == axis else slice(None) for a in range(ref.ndim))
    r, v = ref[where].reshape(ref.shape[0], -1), var[where].reshape(var.shape[0], -1)
    low, high, kept_low, kept_high = float(r.min()), float(r.max()), float(v.min()), float(v.max())
    unit = _in_unit_interval(low, high)
    judged = high - low >= MIN_UNIT_SPAN if unit else True
    return SliceFidelity(
        axis=axis - 1, start=start, stop=stop, reference_min=low, reference_max=high, variant_min=kept_low,
        variant_max=kept_high, elements_per_sample=int(r.shape[1]),
        cosine=_cosines(r, v)[0] if r.shape[1] >= MIN_COSINE_ELEMENTS else None,
        sqnr_db=_sqnr_db(float(np.sum(r**2)), float(np.sum((r - v) ** 2))),
        decision_agreement=float(np.mean((r >= threshold) == (v >= threshold))) if unit else None,
        judged=judged, lost=judged and kept_high - kept_low <= LOST_SPREAD * (high - low))


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


def _lowest(values: Sequence[float | None]) -> float | None:
    """The lowest of the figures that exist (NaN lowest), None when none does."""
    present = [v for v in values if v is not None]
    return functools.reduce(lowest, present) if present else None


def worst(found: Sequence[OutputFidelity]) -> dict[str, float]:
    """The worst of each figure across a variant's outputs and their judged slices: ``cosine`` (the lowest
    per-output or per-slice mean), ``top1`` and ``decision`` agreement; a figure none has is absent, a NaN one
    is the worst."""
    figures: dict[str, float] = {}
    for item in found:
        for key, value in (("cosine", item.lowest_cosine), ("top1", item.top1_agreement),
                           ("decision", item.lowest_decision)):
            if value is not None:
                figures[key] = lowest(figures.get(key, value), value)
    return figures


def nonfinite_problems(found: Sequence[OutputFidelity]) -> list[str]:
    """:meth:`OutputFidelity.problem` of every output whose values are not all finite, and the note of every
    output not compared."""
    return [text for item in found if (text := item.problem()) is not None]


def fidelity(reference_path: Path, variant_path: Path, names: list[str],
             decision_threshold: float = DEFAULT_DECISION_THRESHOLD,
             class_outputs: set[str] | None = None) -> list[OutputFidelity]:
    """Every output both files hold, compared (see :class:`OutputFidelity` for what each kind gets), in output
    order; an output either file left out (:func:`left_out`) is there too, not compared, its note saying why
    (:func:`not_compared`); ``class_outputs``: the output names that hold class scores (None: judge by shape)."""
    reference, variant = load_outputs(reference_path), load_outputs(variant_path)
    why = {**left_out(reference_path), **left_out(variant_path)}
    found = []
    for i in sorted(set(reference) | set(variant) | set(why) | set(range(len(names)))):
        name = names[i] if i < len(names) else f"out{i}"
        if i not in reference or i not in variant:
            found.append(not_compared(name, why.get(i, "shape varies")))
            continue
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
