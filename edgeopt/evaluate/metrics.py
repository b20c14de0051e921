"""Task metrics on a variant's saved outputs, each with a bootstrap interval and a paired delta vs fp32.

A metric turns the outputs of every eval sample into one **score per sample** (top-1: 1 when the
argmax is the label; MAE: the sample's mean absolute error; ...); the metric's value aggregates
them (a mean, or the root of the mean for RMSE).  Because the scores are per sample, every value
gets a seeded percentile bootstrap interval over samples (:data:`BOOTSTRAP_RESAMPLES` resamples of
the N samples with replacement, :data:`BOOTSTRAP_SEED`, 2.5th and 97.5th percentiles of the
resampled statistic), and the change vs fp32 gets a **paired** interval: the same resampled
indices are applied to the variant's and fp32's scores, so samples both get right (or wrong) cancel.

Built-in names: ``top1``, ``top5`` (integer ``labels``), ``mae``, ``rmse`` (float ``targets``),
``cosine_to_fp32`` and ``retrieval_agreement@K`` (no labels: compared with the fp32 outputs).
A user metric is ``package.module:function`` called as ``function(outputs, targets)`` with
``outputs`` the list of the model's outputs (each stacked, samples first) and ``targets`` the eval
set's ``labels`` or ``targets`` array (or None); it returns one score per sample.  An
optional attribute ``function.higher_is_better = False`` says lower is better (default: higher).

Labels are class indices: ``top1``/``top5`` refuse (exit 3, naming the eval file) a label outside
``[0, classes)`` of the scored output, which would otherwise only count as a wrong answer.  NaN and
infinity are data: a score that is NaN/Inf (MAE of an output holding Inf, a user metric's NaN) is kept,
the value and interval become whatever the arithmetic gives, and ``MetricResult.nonfinite_scores``
counts such samples, so the table flags the metric and the gate fails ``max_metric_drop``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edgeopt.core.fileio import restore_floats
from edgeopt.errors import USER_CODE_ERRORS, CalibrationError, ConfigError, UserCodeError
from edgeopt.evaluate.fidelity import check_labels

if TYPE_CHECKING:
    from edgeopt.models.input_spec import InputSpec

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
INTERVAL_METHOD = (f"percentile bootstrap over samples, {CONFIDENCE:.0%}, {BOOTSTRAP_RESAMPLES} resamples, "
                   f"seed {BOOTSTRAP_SEED}; delta: paired (same resampled indices)")
BUILTIN_METRICS = ("top1", "top5", "mae", "rmse", "cosine_to_fp32", "retrieval_agreement@K")

ScoreFn = Callable[[list[np.ndarray], "np.ndarray | None", "list[np.ndarray] | None"], np.ndarray]


# ----------------------------------------------------------------------------------------- eval set


class Labels(np.ndarray):
    """Integer class labels that remember the eval file they came from (``source``), so a check made when
    they are scored against a model's classes names the file (:func:`edgeopt.evaluate.fidelity.check_labels`)."""

    source: str = ""

    def __array_finalize__(self, obj: Any) -> None:
        self.source = getattr(obj, "source", "")


def _labels_of(file: Path | str, labels: np.ndarray | None) -> np.ndarray | None:
    if labels is None:
        return None
    tagged = np.asarray(labels).view(Labels)
    tagged.source = str(file)
    return tagged


@dataclass(frozen=True, eq=False)
class EvalSet:
    """A stacked evaluation set: ``images`` (N first) and optional ``labels`` (ints) or ``targets`` (floats).

    A multi-input model's eval file holds one array per model input name instead (``inputs``, N first;
    ``images`` is then the first of them, for counting)."""

    images: np.ndarray
    labels: np.ndarray | None = None
    targets: np.ndarray | None = None
    source: str = ""
    inputs: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.labels is not None and not isinstance(self.labels, Labels):
            object.__setattr__(self, "labels", _labels_of(self.source, self.labels))

    @property
    def truth(self) -> np.ndarray | None:
        """What metrics compare against: the labels (:class:`Labels`, naming the file), else the targets."""
        return self.labels if self.labels is not None else self.targets

    @property
    def count(self) -> int:
        return int(self.images.shape[0])


def load_eval_set(path: str | Path) -> EvalSet:
    """Read ``--eval FILE``: with ``labels`` it is validated exactly as :func:`load_eval_split`; without,
    ``images`` must be finite floats (N first, N > 0) and ``targets``, when present, N finite numbers per row."""
    from edgeopt.models.calibration import _load_array_file, load_eval_split

    file = Path(path)
    if not file.exists():
        raise CalibrationError(f"{file}: eval file not found")
    if file.is_dir():
        raise CalibrationError(f"{file}: is a directory; --eval takes one .npz file")
    arrays = _load_array_file(file)
    if "images" not in arrays and set(arrays) - {"labels", "targets"}:
        return _per_input_eval_set(file, arrays)
    if "labels" in arrays:
        images, labels = load_eval_split(file)
        targets = arrays.get("targets")
        return EvalSet(images, _checked_labels(file, labels), _checked_targets(file, targets, len(images)), str(file))
    if "images" not in arrays:
        raise CalibrationError(f"{file}: array 'images' missing (the file holds {sorted(arrays)})")
    images = arrays["images"]
    if images.dtype.kind != "f" or images.ndim < 2 or not len(images):
        raise CalibrationError(f"{file}: array 'images': dtype {images.dtype} shape {images.shape}; expected "
                               "a non-empty float array stacked along a leading axis")
    bad = int(np.count_nonzero(~np.isfinite(images)))
    if bad:
        raise CalibrationError(f"{file}: array 'images': {bad} NaN/Inf value(s); values must be finite")
    return EvalSet(images, None, _checked_targets(file, arrays.get("targets"), len(images)), str(file))


def _per_input_eval_set(file: Path, arrays: dict[str, np.ndarray]) -> EvalSet:
    """An eval file with one array per model input name (samples first) plus ``labels``/``targets``."""
    inputs = {name: array for name, array in arrays.items() if name not in ("labels", "targets")}
    counts = {name: len(array) if array.ndim else 0 for name, array in inputs.items()}
    count = next(iter(counts.values()))
    if not count or len(set(counts.values())) != 1:
        raise CalibrationError(f"{file}: per-input arrays must hold the same number (> 0) of samples first; "
                               f"got {counts}")
    for name, array in inputs.items():
        if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
            raise CalibrationError(f"{file}: array '{name}': NaN/Inf values; values must be finite")
    labels = arrays.get("labels")
    if labels is not None and (labels.dtype.kind not in "iu" or labels.ndim != 1 or len(labels) != count):
        raise CalibrationError(f"{file}: array 'labels': dtype {labels.dtype} shape {labels.shape}; expected "
                               f"{count} integers, one per sample")
    return EvalSet(next(iter(inputs.values())), _checked_labels(file, labels),
                   _checked_targets(file, arrays.get("targets"), count), str(file), inputs)


def _checked_labels(file: Path, labels: np.ndarray | None) -> np.ndarray | None:
    """Labels are class indices: a negative one is refused now; one past the model's classes when the model
    is known (:func:`check_metrics` with the model's outputs, and when ``top1``/``top5`` score them)."""
    if labels is not None and labels.size and int(labels.min()) < 0:
        negative = int(np.count_nonzero(labels < 0))
        raise CalibrationError(f"{file}: array 'labels': {negative} of {labels.size} label(s) negative (smallest "
                               f"{int(labels.min())}); a label is a class index, 0 or more")
    return labels


def _checked_targets(file: Path, targets: np.ndarray | None, count: int) -> np.ndarray | None:
    if targets is None:
        return None
    if targets.dtype.kind not in "iuf" or targets.ndim < 1 or len(targets) != count:
        raise CalibrationError(f"{file}: array 'targets': dtype {targets.dtype} shape {targets.shape}; expected "
                               f"{count} numeric rows, one per image")
    if not np.all(np.isfinite(targets)):
        raise CalibrationError(f"{file}: array 'targets': NaN/Inf values; values must be finite")
    return targets


# ------------------------------------------------------------------------------------------ metrics


@dataclass(frozen=True)
class MetricSpec:
    """A metric by name: how it scores each sample and how those scores aggregate."""

    name: str
    score: ScoreFn
    higher_is_better: bool = True
    aggregate: Literal["mean", "root_mean"] = "mean"
    percent: bool = False  # shown ×100 with a % sign (shares: top-k, agreement)
    needs: Literal["labels", "targets", "reference", "none"] = "none"


def _logits(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """The first floating-point output, one row per sample (an integer output ahead of it, such as a
    transformer passing its token ids through or an ArgMax, is not scores); else the first output."""
    first = next((np.asarray(o) for o in outputs if np.asarray(o).dtype.kind == "f"), np.asarray(outputs[0]))
    return first.reshape(first.shape[0], -1).astype(np.float64)


def _topk(k: int) -> ScoreFn:
    def score(outputs: list[np.ndarray], truth: np.ndarray | None, _ref: list[np.ndarray] | None) -> np.ndarray:
        logits = _logits(outputs)
        if truth is None:
            raise ConfigError(f"top{k} needs integer 'labels' in the eval file")
        if logits.shape[1] < k:
            raise ConfigError(f"top{k}: the first output has {logits.shape[1]} value(s) per sample; needs >= {k}")
        check_labels(truth, int(logits.shape[1]))  # exit 3 naming the eval file: not class indices
        labels = np.asarray(truth).reshape(-1).astype(np.int64)
        # stable order: among equal logits the lower class index ranks first (same as argmax)
        ranked = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        return np.any(ranked == labels[:, None], axis=1).astype(np.float64)

    return score


def _regression(squared: bool) -> ScoreFn:
    def score(outputs: list[np.ndarray], truth: np.ndarray | None, _ref: list[np.ndarray] | None) -> np.ndarray:
        if truth is None:
            raise ConfigError(f"{'rmse' if squared else 'mae'} needs 'targets' (or 'labels') in the eval file")
        predicted = _logits(outputs)
        wanted = np.asarray(truth, dtype=np.float64).reshape(len(truth), -1)
        if predicted.shape != wanted.shape:
            raise ConfigError(f"{'rmse' if squared else 'mae'}: the first output has {predicted.shape[1]} value(s) "
                              f"per sample, the targets {wanted.shape[1]}")
        error = predicted - wanted
        return np.mean(error**2 if squared else np.abs(error), axis=1)

    return score


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.sum(a * b, axis=1)
    same = np.all(a == b, axis=1)
    return np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(same, 1.0, 0.0))


def _cosine_to_fp32(outputs: list[np.ndarray], _truth: np.ndarray | None,
                    reference: list[np.ndarray] | None) -> np.ndarray:
    assert reference is not None
    return _cosines(_logits(outputs), _logits(reference))


def nearest_neighbours(embeddings: np.ndarray, k: int) -> np.ndarray:
    """Indices (N, k) of each sample's k nearest other samples by cosine similarity (ties: lower index)."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-30)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def _retrieval(k: int) -> ScoreFn:
    def score(outputs: list[np.ndarray], _truth: np.ndarray | None,
              reference: list[np.ndarray] | None) -> np.ndarray:
        assert reference is not None
        mine, theirs = _logits(outputs), _logits(reference)
        if mine.shape[0] <= k:
            raise ConfigError(f"retrieval_agreement@{k} needs more than {k} eval samples, got {mine.shape[0]}")
        a, b = np.sort(nearest_neighbours(mine, k), axis=1), np.sort(nearest_neighbours(theirs, k), axis=1)
        return np.all(a == b, axis=1).astype(np.float64)

    return score


def _user_metric(reference: str) -> MetricSpec:
    from edgeopt.models.modelref import load_entry_point, user_code_error

    try:
        function = load_entry_point(reference)
    except ConfigError as error:
        raise ConfigError(f"--metric {error}") from error
    if not callable(function):
        raise ConfigError(f"--metric {reference}: not a function (got {type(function).__name__})")

    def score(outputs: list[np.ndarray], truth: np.ndarray | None, _ref: list[np.ndarray] | None) -> np.ndarray:
        try:
            values = np.asarray(function(outputs, truth), dtype=np.float64)
        except USER_CODE_ERRORS as error:  # a metric that fails judges nothing: exit 3, never a row without it
            raise user_code_error(f"--metric {reference}", "your metric", error) from error
        count = int(np.asarray(outputs[0]).shape[0])
        if values.shape != (count,):  # NaN/Inf scores are kept: data, counted in MetricResult.nonfinite_scores
            raise UserCodeError(f"--metric {reference}: your metric must return {count} per-sample scores (one per "
                                f"eval sample), got shape {values.shape}; edgeopt stopped without a result")
        return values

    return MetricSpec(reference, score, higher_is_better=bool(getattr(function, "higher_is_better", True)))


def parse_metric(name: str) -> MetricSpec:
    """The metric ``name`` names: a built-in (see :data:`BUILTIN_METRICS`) or ``package.module:function``."""
    text = name.strip()
    if text in ("top1", "top5"):
        return MetricSpec(text, _topk(int(text[3:])), percent=True, needs="labels")
    if text in ("mae", "rmse"):
        return MetricSpec(text, _regression(text == "rmse"), higher_is_better=False,
                          aggregate="root_mean" if text == "rmse" else "mean", needs="targets")
    if text == "cosine_to_fp32":
        return MetricSpec(text, _cosine_to_fp32, needs="reference")
    if text.startswith("retrieval_agreement"):
        suffix = text.removeprefix("retrieval_agreement")
        k_text = suffix.removeprefix("@") if suffix else "5"
        if not k_text.isdigit() or int(k_text) < 1 or (suffix and not suffix.startswith("@")):
            raise ConfigError(f"--metric {name}: expected retrieval_agreement@K with K a positive integer")
        k = int(k_text)
        return MetricSpec(f"retrieval_agreement@{k}", _retrieval(k), percent=True, needs="reference")
    if ":" in text:
        return _user_metric(text)
    raise ConfigError(f"--metric {name}: unknown metric; built-in: {', '.join(BUILTIN_METRICS)}, "
                      "or package.module:function")


def default_metrics(eval_set: EvalSet) -> tuple[str, ...]:
    """top1 with integer labels; mae with float targets; else cosine to fp32."""
    if eval_set.labels is not None:
        return ("top1",)
    if eval_set.targets is not None:
        return ("mae",)
    return ("cosine_to_fp32",)


def check_metrics(specs: Sequence[MetricSpec], eval_set: EvalSet, outputs: Sequence[InputSpec] = ()) -> None:
    """Refuse, before anything runs, a metric the eval file cannot feed.  Given the model's ``outputs``
    (``edgeopt.models.graph.output_specs``), the labels of a metric that reads them as class indices
    (``top1``, ``top5``) must lie below the first floating-point output's last dimension when that is fixed
    (CalibrationError, exit 3, naming the eval file); a symbolic one is checked when the outputs are scored."""
    for spec in specs:
        if spec.needs == "labels" and eval_set.labels is None:
            raise ConfigError(f"--metric {spec.name}: needs integer 'labels' in {eval_set.source}")
        if spec.needs == "targets" and eval_set.truth is None:
            raise ConfigError(f"--metric {spec.name}: needs 'targets' (or 'labels') in {eval_set.source}")
    if eval_set.labels is not None and any(spec.needs == "labels" for spec in specs):
        first = next((o for o in outputs if o.dtype.startswith(("float", "bfloat"))), None)
        classes = first.shape[-1] if first is not None and first.shape else None
        if isinstance(classes, int) and classes >= 1:
            check_labels(eval_set.labels, classes, eval_set.source)


# ---------------------------------------------------------------------------------------- bootstrap


MAX_RESAMPLE_INDICES = 1 << 24  # indices drawn at once: 128 MiB of int64, as much again for the scores they gather


@dataclass(frozen=True)
class Resamples:
    """Bootstrap resamples of ``n`` samples drawn with replacement from one seeded stream (the same seed, the same
    resamples), in chunks of at most :data:`MAX_RESAMPLE_INDICES` indices: a 1 M-sample eval set needs ~256 MiB,
    not the 16 GiB of one (2000, n) matrix.  Up to 8,388 samples the one chunk is that whole matrix."""

    n: int
    resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = BOOTSTRAP_SEED

    def chunks(self) -> Iterator[np.ndarray]:
        """(k, n) index matrices, k rows at a time, ``resamples`` rows in all."""
        rng = np.random.default_rng(self.seed)
        rows = max(1, MAX_RESAMPLE_INDICES // max(1, self.n))
        for start in range(0, self.resamples, rows):
            yield rng.integers(0, self.n, size=(min(rows, self.resamples - start), self.n))

    def stats(self, statistic: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``statistic(indices)`` (k resamples' index rows -> their k values) over every resample."""
        return np.concatenate([np.asarray(statistic(chunk), dtype=np.float64) for chunk in self.chunks()])


def aggregate(scores: np.ndarray, how: str, axis: int | None = None) -> Any:
    mean = np.mean(scores, axis=axis)
    return np.sqrt(mean) if how == "root_mean" else mean


def bootstrap_interval(scores: np.ndarray, how: str = "mean", resamples: Resamples | None = None,
                       confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(value, lower, upper): the aggregate and its percentile bootstrap interval over samples."""
    scores = np.asarray(scores, dtype=np.float64)
    resamples = Resamples(scores.size) if resamples is None else resamples
    with np.errstate(all="ignore"):  # NaN/Inf scores give NaN/Inf figures: recorded, flagged, never raised
        stats = resamples.stats(lambda rows: aggregate(scores[rows], how, axis=1))
        tail = (1 - confidence) / 2
        lower, upper = np.quantile(stats, [tail, 1 - tail])
        return float(aggregate(scores, how)), float(lower), float(upper)


def paired_delta(variant: np.ndarray, reference: np.ndarray, how: str = "mean", resamples: Resamples | None = None,
                 confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(delta, lower, upper) of aggregate(variant) − aggregate(reference), resampling both with the same indices."""
    variant, reference = np.asarray(variant, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if variant.shape != reference.shape:
        raise ValueError(f"paired scores differ in shape: {variant.shape} vs {reference.shape}")
    resamples = Resamples(variant.size) if resamples is None else resamples
    with np.errstate(all="ignore"):
        stats = resamples.stats(lambda rows: aggregate(variant[rows], how, axis=1) - aggregate(reference[rows], how,
                                                                                                 axis=1))
        tail = (1 - confidence) / 2
        lower, upper = np.quantile(stats, [tail, 1 - tail])
        return float(aggregate(variant, how) - aggregate(reference, how)), float(lower), float(upper)


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class MetricResult:
    """One metric of one variant: value, bootstrap interval, and the paired change vs fp32."""

    metric: str
    value: float
    lower: float
    upper: float
    samples: int
    higher_is_better: bool = True
    percent: bool = False
    delta: float | None = None  # variant − fp32 (same inputs), in the metric's unit
    delta_lower: float | None = None
    delta_upper: float | None = None
    interval: str = INTERVAL_METHOD
    nonfinite_scores: int = 0  # samples whose score is NaN/Inf (the outputs held NaN/Inf): value and interval too

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricResult:
        """Inverse of :meth:`to_dict`, from JSON (non-finite figures as their strings)."""
        names = {f.name for f in fields(cls)}
        floats = ("value", "lower", "upper", "delta", "delta_lower", "delta_upper")
        return cls(**restore_floats({k: v for k, v in data.items() if k in names}, floats))

    def problem(self) -> str | None:
        """``mae: 3 of 24 samples scored NaN/Inf``, or None when every score was finite."""
        if not self.nonfinite_scores:
            return None
        return f"{self.metric}: {self.nonfinite_scores} of {self.samples} samples scored NaN/Inf"

    def format_value(self) -> str:
        flag = f" ({self.nonfinite_scores} NaN/Inf scores)" if self.nonfinite_scores else ""
        if self.percent:
            return f"{100 * self.value:.1f}% [{100 * self.lower:.1f}, {100 * self.upper:.1f}]{flag}"
        return f"{self.value:.4g} [{self.lower:.4g}, {self.upper:.4g}]{flag}"

    def format_delta(self) -> str:
        if self.delta is None or self.delta_lower is None or self.delta_upper is None:
            return "-"
        scale, unit = (100.0, " pt") if self.percent else (1.0, "")
        return f"{scale * self.delta:+.2f}{unit} [{scale * self.delta_lower:+.2f}, {scale * self.delta_upper:+.2f}]"


@dataclass(frozen=True)
class Scores:
    """Per-sample scores of one metric on one set of outputs (kept to pair them later)."""

    spec: MetricSpec
    values: np.ndarray


def score_outputs(specs: Sequence[MetricSpec], outputs: list[np.ndarray], truth: np.ndarray | None,
                  reference: list[np.ndarray] | None) -> tuple[list[Scores], list[str]]:
    """Per-sample scores of every metric that applies; a metric that cannot be computed is a problem line."""
    found, problems = [], []
    for spec in specs:
        if spec.needs == "reference" and reference is None:
            problems.append(f"{spec.name}: no fp32 outputs to compare with")
            continue
        try:
            found.append(Scores(spec, np.asarray(spec.score(outputs, truth, reference), dtype=np.float64)))
        except ConfigError as error:
            problems.append(str(error))
    return found, problems


def summarise(scores: Scores, reference: Scores | None, resamples: Resamples | None = None) -> MetricResult:
    """The metric's value and interval, plus the paired delta vs ``reference`` (fp32) when given."""
    spec = scores.spec
    n = scores.values.size
    resamples = Resamples(n) if resamples is None else resamples
    value, lower, upper = bootstrap_interval(scores.values, spec.aggregate, resamples)
    delta: tuple[float | None, float | None, float | None] = (None, None, None)
    if reference is not None and reference.values.shape == scores.values.shape:
        delta = paired_delta(scores.values, reference.values, spec.aggregate, resamples)
    return MetricResult(metric=spec.name, value=value, lower=lower, upper=upper, samples=int(n),
                        higher_is_better=spec.higher_is_better, percent=spec.percent,
                        delta=delta[0], delta_lower=delta[1], delta_upper=delta[2],
                        nonfinite_scores=int(np.count_nonzero(~np.isfinite(scores.values))))


def evaluate(specs: Sequence[MetricSpec], outputs: list[np.ndarray], truth: np.ndarray | None,
             reference: list[np.ndarray] | None) -> tuple[list[MetricResult], list[str]]:
    """Every metric of ``outputs`` with its interval and (given fp32's ``reference`` outputs) its paired delta."""
    mine, problems = score_outputs(specs, outputs, truth, reference)
    theirs: dict[str, Scores] = {}
    if reference is not None:
        theirs = {s.spec.name: s for s in score_outputs(specs, reference, truth, reference)[0]}
    if not mine:
        return [], problems
    resamples = Resamples(mine[0].values.size)
    return [summarise(s, theirs.get(s.spec.name), resamples) for s in mine], problems


def load_output_list(path: Path) -> list[np.ndarray]:
    """A worker's ``*.outputs.npz`` as a list indexed by output (only the leading stackable outputs)."""
    from edgeopt.evaluate.fidelity import load_outputs

    by_index = load_outputs(path)
    result = []
    for index in range(len(by_index)):
        if index not in by_index:
            break
        result.append(by_index[index])
    return result


def short_cell(value: float, percent: bool, delta: float | None = None, lower: float | None = None,
               upper: float | None = None) -> str:
    """``95.3% Δ-0.3 pt [-0.8, +0.3]``: a value and its paired change, compact for a table cell."""
    scale = 100.0 if percent else 1.0
    text = f"{scale * value:.1f}%" if percent else f"{value:.4g}"
    if delta is not None and lower is not None and upper is not None:
        digits = ".1f" if percent else ".3g"
        text += (f" Δ{scale * delta:+{digits}}{' pt' if percent else ''} "
                 f"[{scale * lower:+{digits}}, {scale * upper:+{digits}}]")
    return text
