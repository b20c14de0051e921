"""``edgeopt tune``: the fastest row whose task metric stays within a budget of fp32's: an int8 variant with the
most sensitive nodes kept in float, or fp32 itself, on any runtime of the profile.

Search: the quantized nodes are ranked by sensitivity (``edgeopt.evaluate.sensitivity``, on the calibration
set, never on the eval set that decides acceptance), and candidate k keeps the k worst nodes in float
(``Recipe(exclude_nodes=ranked[:k])``).  k = 0 is tried first, then k = K (every ranked node, or
``max_exclude``); if K misses the budget no int8 candidate passes.  Otherwise bisection over k between
the last failing and first passing k finds the smallest passing k in about log2(K) more candidates,
assuming the metric improves with k (each candidate's number is reported, so a violation is visible).
Every candidate is measured in the isolated worker on the profile's reference runtime (latency and the eval
outputs in one run); fp32 and the fastest passing candidate are then also measured on the profile's other runtimes
(OpenVINO's fp32, bf16, int8 rows), each judged by the same paired rule.  The chosen row is the passing one
with the lowest p50 (``select="fastest"``), fp32 included: when no int8 row is faster, the answer is to keep
fp32; ``select="fewest"`` takes the passing int8 candidate with the fewest nodes in float.  p50s from separate
worker sessions can differ by more than their intervals on a 2-vCPU VM (FIELD_NOTES: bimodal sessions), so
"fastest" among rows whose p50s are within a few percent is a coin toss; the table shows every interval.  The
eval file is any ``--eval`` file of ``run`` (``images``, or one array per input of a multi-input model);
``metric="cosine"`` needs no labels.

Acceptance rule (paired): every eval sample runs through fp32 and the candidate, giving a per-sample
difference d_i (top-1: correct_fp32 − correct_candidate, in {−1, 0, 1}; cosine: 1 − cosine(fp32
output, candidate output)).  The drop is their mean (×100 for top-1: points; ``relative``: % of fp32's
value), and its 95 % interval comes from a seeded paired bootstrap over samples (2000 resamples).  A
candidate passes when the interval's upper end is ≤ the budget (``rule="upper"``, the default: within
budget with 95 % confidence) or when the point estimate is (``rule="point"``).  Pairing cancels the
samples both get right or both get wrong, so the interval is far tighter than two Wilson intervals.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edgeopt.core import progress
from edgeopt.core.fileio import atomic_path, sha256_file, write_json_atomic, write_npz_atomic, write_text_atomic
from edgeopt.core.run_lock import run_lock
from edgeopt.errors import ConfigError, EdgeoptError
from edgeopt.models.input_spec import InputSpec

if TYPE_CHECKING:
    from edgeopt.models.recipes import Recipe

logger = logging.getLogger(__name__)

EXIT_BUDGET_NOT_MET = 1
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class TuneConfig:
    model: Path
    calibration: str
    eval_set: str
    profile: str
    out_dir: Path
    max_drop: float  # top-1: points (0.5 = half a percentage point); cosine: 1 − mean cosine; relative: % of fp32
    metric: Literal["top1", "cosine"] = "top1"
    relative: bool = False
    recipe: str = "int8-static-minmax"
    rule: Literal["upper", "point"] = "upper"
    max_exclude: int | None = None
    select: Literal["fastest", "fewest"] = "fastest"
    sensitivity_samples: int = 32
    proxy: bool = False
    force: bool = False
    inputs: tuple[InputSpec, ...] = ()  # --input: concrete shapes of symbolic dims (else the samples' shapes)


@dataclass(frozen=True)
class Drop:
    """Paired drop of a candidate vs fp32, in the budget's unit."""

    metric_value: float
    drop: float
    lower: float
    upper: float
    samples: int
    discordant: int | None = None  # top-1: samples where exactly one of the two is right

    def meets(self, budget: float, rule: str) -> bool:
        return (self.upper if rule == "upper" else self.drop) <= budget + 1e-12


@dataclass(frozen=True)
class Candidate:
    k: int
    variant: str
    excluded: tuple[str, ...]
    drop: Drop | None
    passes: bool | None
    p50_ms: dict[str, Any] | None
    p95_ms: dict[str, Any] | None
    size_mb: float
    failure: str | None = None
    runtime: str = ""  # the row's runtime when not the profile's reference one: "openvino-fp32", ...

    @property
    def label(self) -> str:
        """``variant``, or ``variant@runtime`` for a row on another runtime than the profile's reference one."""
        return f"{self.variant}@{self.runtime}" if self.runtime else self.variant

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["excluded"] = list(self.excluded)
        return data


@dataclass(frozen=True)
class TuneResult:
    config: dict[str, Any]
    baseline: Candidate  # fp32
    candidates: list[Candidate]  # in the order tried
    ranking: list[str]
    chosen: Candidate | None
    message: str
    exit_code: int
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": 1, "kind": "tune", "config": self.config, "baseline": self.baseline.to_dict(),
                "candidates": [c.to_dict() for c in self.candidates], "ranking": self.ranking,
                "chosen": self.chosen.to_dict() if self.chosen else None, "message": self.message,
                "exit_code": self.exit_code, "files": self.files}


def _per_sample_cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    ref = np.asarray(reference, dtype=np.float64).reshape(reference.shape[0], -1)
    var = np.asarray(candidate, dtype=np.float64).reshape(candidate.shape[0], -1)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(var, axis=1)
    return np.where(norms > 0, np.sum(ref * var, axis=1) / np.where(norms > 0, norms, 1.0), 1.0)


def paired_drop(reference: np.ndarray | Sequence[np.ndarray], candidate: np.ndarray | Sequence[np.ndarray], *,
                metric: str, labels: np.ndarray | None, relative: bool) -> Drop:
    """Drop of ``candidate`` vs ``reference`` (an output, or the model's float outputs in order; samples along axis
    0) with a paired bootstrap CI: top-1 on the first output, cosine per sample on the worst output (an output
    that merely echoes an input, a transformer's token ids, would pass any variant)."""
    references = [reference] if isinstance(reference, np.ndarray) else list(reference)
    candidates = [candidate] if isinstance(candidate, np.ndarray) else list(candidate)
    discordant = None
    if metric == "top1":
        if labels is None:
            raise ConfigError("metric top1 needs labels (an eval .npz with 'labels')")
        ref = np.asarray(references[0], dtype=np.float64).reshape(references[0].shape[0], -1)
        var = np.asarray(candidates[0], dtype=np.float64).reshape(candidates[0].shape[0], -1)
        truth = np.asarray(labels).reshape(-1)
        right0, right1 = ref.argmax(axis=1) == truth, var.argmax(axis=1) == truth
        base, value = float(right0.mean()), float(right1.mean())
        per_sample = right0.astype(np.float64) - right1.astype(np.float64)
        scale = 100.0 / base if relative else 100.0  # points, or % of fp32's accuracy
        discordant = int(np.sum(right0 != right1))
    else:
        cosines = np.min([_per_sample_cosines(r, c) for r, c in zip(references, candidates, strict=True)], axis=0)
        base, value = 1.0, float(cosines.mean())
        per_sample = 1.0 - cosines
        scale = 100.0 if relative else 1.0
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    n = per_sample.size
    means = per_sample[rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))].mean(axis=1)
    lower, upper = np.quantile(means, [0.025, 0.975])
    return Drop(metric_value=value, drop=float(per_sample.mean()) * scale, lower=float(lower) * scale,
                upper=float(upper) * scale, samples=int(n), discordant=discordant)


def _eval_arrays(eval_set: str, model: Path, target: Path, metric: str) -> tuple[Path, np.ndarray | None]:
    """The eval file as the reference inputs every candidate runs (any file ``run --eval`` takes: ``images``, or
    one array per model input for a multi-input model), and its labels (None without; ``cosine`` needs none)."""
    import onnx

    from edgeopt.evaluate.metrics import load_eval_set
    from edgeopt.models.graph import input_specs
    from edgeopt.workflows.plan import eval_arrays

    found = load_eval_set(eval_set)
    if metric == "top1" and found.labels is None:
        raise ConfigError(f"{eval_set}: --metric top1 needs 'labels' in the eval file; --metric cosine compares "
                          "each candidate's outputs with fp32's and needs none")
    specs = input_specs(onnx.load(str(model), load_external_data=False))
    return write_npz_atomic(target, eval_arrays(found, specs)), found.labels


class _TuneBench:
    """Makes and measures variants for one tune run (reusing stored variants and measurements)."""

    def __init__(self, config: TuneConfig) -> None:
        from edgeopt.measure.launcher import prepare_timing_inputs
        from edgeopt.models.calibration import load_calibration
        from edgeopt.models.graph import input_specs, load_model
        from edgeopt.models.quantize import RangeCache
        from edgeopt.profiles.schema import load_profile

        self.config = config
        self.profile = load_profile(config.profile)
        self.out = Path(config.out_dir)
        specs = input_specs(load_model(config.model))
        self.calibration = load_calibration(config.calibration, expected_inputs=specs)
        self.out.mkdir(parents=True, exist_ok=True)
        self.reference_inputs, self.labels = _eval_arrays(config.eval_set, config.model,
                                                          self.out / "reference_inputs.npz", config.metric)
        self.reference_sha = sha256_file(self.reference_inputs)
        self.timing = prepare_timing_inputs(config.model, self.profile, self.calibration,
                                            self.out / "inputs" / f"{self.profile.name}.npz", given=config.inputs)
        self.ranges = RangeCache()

    def make(self, recipe: Any) -> Any:
        from edgeopt.models.quantize import make_variant

        return make_variant(self.config.model, recipe, self.out / "variants", calibration=self.calibration,
                            ranges=self.ranges, force=self.config.force)

    def measure(self, variant: Any, backend: str | None = None, precision: str | None = None) -> Any:
        from edgeopt.measure.cell import Cell, CellContext, measure_cell

        return measure_cell(Cell(variant, self.profile, self.timing, backend, precision), CellContext(
            self.out / "measurements", self.reference_inputs, self.reference_sha, proxy=self.config.proxy,
            force=self.config.force))

    def other_rows(self, variant: Any) -> list[tuple[str, str | None]]:
        """(backend, precision) of every row the profile's other runtimes offer for ``variant`` (OpenVINO's fp32
        and, where the device has them, bf16/fp16 of the fp32 model; its int8-static rows), where installed."""
        from edgeopt.backends import cells_for
        from edgeopt.backends.availability import is_available

        reference = self.profile.runtime.runtimes[0]
        return [(backend, precision) for backend, _, precision in cells_for(self.profile, [variant])
                if backend != reference and is_available(backend)]

    def outputs(self, measurement: Any) -> list[np.ndarray]:
        """The measurement's floating-point outputs, in the model's order (integer outputs say nothing of int8)."""
        from edgeopt.evaluate.fidelity import load_outputs

        found = load_outputs(self.out / "measurements" / measurement.outputs_file)
        return [found[i] for i in sorted(found) if np.asarray(found[i]).dtype.kind == "f"]


def _latency(measurement: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if not measurement.ok or measurement.latency is None:
        return None, None
    summary = measurement.latency.summary()
    return summary.percentiles["p50"].to_dict(), summary.percentiles["p95"].to_dict()


def tune(config: TuneConfig) -> TuneResult:
    """Search, measure, write ``tune.json``, ``tune.md`` and ``tune.png`` under ``config.out_dir``, holding its lock."""
    from edgeopt.models.recipes import Recipe

    if config.metric not in ("top1", "cosine"):
        raise ConfigError(f"--metric {config.metric!r}: choose top1 or cosine")
    if config.max_drop < 0:
        raise ConfigError(f"--max-drop {config.max_drop}: must be ≥ 0")
    base_recipe = Recipe.parse(config.recipe)
    if base_recipe.kind != "int8-static":
        raise ConfigError(f"--recipe {config.recipe}: tune works on int8-static recipes")
    with run_lock(config.out_dir, "tune"):
        return _tune_locked(config, base_recipe)


def _tune_locked(config: TuneConfig, base_recipe: Recipe) -> TuneResult:
    """The search of :func:`tune`, in the output folder it holds the lock of."""
    from edgeopt.evaluate.sensitivity import analyse_sensitivity, reference_model_for
    from edgeopt.models.recipes import Recipe

    runner = _TuneBench(config)
    fp32 = runner.make(Recipe.parse("fp32"))
    fp32_measurement = runner.measure(fp32)
    if not fp32_measurement.ok:
        raise EdgeoptError(f"fp32 measurement failed: {fp32_measurement.failure.message}")
    reference = runner.outputs(fp32_measurement)
    p50, p95 = _latency(fp32_measurement)
    baseline = Candidate(k=0, variant="fp32", excluded=(), drop=paired_drop(
        reference, reference, metric=config.metric, labels=runner.labels, relative=config.relative),
        passes=True, p50_ms=p50, p95_ms=p95, size_mb=fp32.size_bytes / 2**20)
    base = runner.make(base_recipe)
    work = runner.out / ".work" / "sensitivity"
    float_model = reference_model_for(Path(config.model).resolve(), base.path, runner.out / "variants" / ".work")
    report = analyse_sensitivity(float_model, base.path, runner.calibration.take(
        min(config.sensitivity_samples, runner.calibration.count)).feeds(), work)
    ranking = report.ranked_nodes()
    logger.info(f"sensitivity: {len(ranking)} quantized nodes ranked; worst: " + ", ".join(ranking[:5]))
    tried: dict[int, Candidate] = {}

    def evaluate(k: int) -> Candidate:
        if k in tried:
            return tried[k]
        excluded = tuple(ranking[:k])
        with progress.task(f"tune: candidate k={k} ({k} of {len(ranking)} nodes in float)"):
            variant = runner.make(replace(base_recipe, exclude_nodes=excluded))
            measurement = runner.measure(variant)
        if not measurement.ok:
            candidate = Candidate(k, variant.name, excluded, None, None, None, None, variant.size_bytes / 2**20,
                                  failure=measurement.failure.message if measurement.failure else "failed")
        else:
            drop = paired_drop(reference, runner.outputs(measurement), metric=config.metric, labels=runner.labels,
                               relative=config.relative)
            p50, p95 = _latency(measurement)
            candidate = Candidate(k, variant.name, excluded, drop, drop.meets(config.max_drop, config.rule), p50,
                                  p95, variant.size_bytes / 2**20)
        tried[k] = candidate
        logger.info(f"candidate k={k}: {_describe(candidate, config)}")
        return candidate

    def elsewhere(k: int, variant: Any, excluded: tuple[str, ...]) -> list[Candidate]:
        """``variant`` on each other runtime of the profile, judged by the same paired rule against fp32."""
        rows = []
        for backend, precision in runner.other_rows(variant):
            runtime = f"{backend}-{precision}" if precision else backend
            with progress.task(f"tune: {variant.name} on {runtime}"):
                measurement = runner.measure(variant, backend, precision)
            if not measurement.ok:
                rows.append(Candidate(k, variant.name, excluded, None, None, None, None, variant.size_bytes / 2**20,
                                      failure=measurement.failure.message if measurement.failure else "failed",
                                      runtime=runtime))
                continue
            drop = paired_drop(reference, runner.outputs(measurement), metric=config.metric, labels=runner.labels,
                               relative=config.relative)
            p50, p95 = _latency(measurement)
            rows.append(Candidate(k, variant.name, excluded, drop, drop.meets(config.max_drop, config.rule), p50,
                                  p95, variant.size_bytes / 2**20, runtime=runtime))
            logger.info(f"{rows[-1].label}: {_describe(rows[-1], config)}")
        return rows

    limit = len(ranking) if config.max_exclude is None else min(config.max_exclude, len(ranking))
    first = evaluate(0)
    chosen: Candidate | None = None
    if first.passes:
        message = f"plain {base.name} already meets the budget"
    else:
        last = evaluate(limit)
        if not last.passes:
            drop = last.drop
            seen = "failed to measure" if drop is None else f"drop {_drop_text(drop, config)}"
            message = (f"budget not met: even with the {limit} most sensitive nodes kept in float, {seen} > budget "
                       f"{config.max_drop:g} {_unit(config)} (rule: {_rule_text(config)}); loosen --max-drop, raise "
                       "--max-exclude, or use another recipe")
        else:
            low, high = 0, limit
            while high - low > 1:
                middle = (low + high) // 2
                if evaluate(middle).passes:
                    high = middle
                else:
                    low = middle
            message = f"smallest passing k = {high} of {limit} (bisection, {len(tried)} candidates)"
    # the answer may be fp32, or a row on another runtime of the profile: fp32 and the fastest passing candidate
    # (and, with select="fewest", the one with the fewest nodes in float) are measured there too
    others = elsewhere(0, fp32, ())
    searched = [c for c in tried.values() if c.passes and c.p50_ms is not None]
    for candidate in {min(searched, key=_p50).k: None, min(searched, key=lambda c: c.k).k: None} if searched else {}:
        excluded = tried[candidate].excluded
        others += elsewhere(candidate, runner.make(replace(base_recipe, exclude_nodes=excluded)), excluded)
    quantized = [c for c in [*tried.values(), *others] if c.passes and c.p50_ms is not None and c.variant != "fp32"]
    floats = [c for c in [baseline, *others] if c.passes and c.p50_ms is not None and c.variant == "fp32"]
    if quantized and config.select == "fewest":
        chosen = min(quantized, key=lambda c: (c.k, _p50(c)))
    elif quantized or floats:
        chosen = min([*quantized, *floats], key=lambda c: (_p50(c), c.variant != "fp32", c.k))
        if chosen.variant == "fp32":
            fastest = min(quantized, key=_p50) if quantized else None
            message += (f"; fp32 ({chosen.label}) is the fastest row within the budget: " + (
                f"the fastest int8 one, {fastest.label}, has p50 {_ms(fastest.p50_ms)} ms vs {_ms(chosen.p50_ms)} ms"
                if fastest is not None else "no int8 candidate meets it") + "; keep fp32")
    exit_code = 0 if chosen is not None else EXIT_BUDGET_NOT_MET
    settings = {"model": str(config.model), "calibration": config.calibration, "eval_set": config.eval_set,
                "profile": config.profile, "max_drop": config.max_drop, "metric": config.metric,
                "relative": config.relative, "recipe": config.recipe, "rule": config.rule,
                "max_exclude": config.max_exclude, "select": config.select, "unit": _unit(config),
                "interval": f"paired bootstrap over eval samples, 95%, {BOOTSTRAP_RESAMPLES} resamples, "
                            f"seed {BOOTSTRAP_SEED}", "sensitivity_samples": report.samples}
    result = TuneResult(settings, baseline, [*tried.values(), *others], ranking, chosen, message, exit_code)
    return _write(result, runner.out, config)


def _p50(candidate: Candidate) -> float:
    return float(candidate.p50_ms["value"]) if candidate.p50_ms else float(np.inf)


def _unit(config: TuneConfig) -> str:
    if config.relative:
        return "% of fp32"
    return "points" if config.metric == "top1" else "(1 − cosine)"


def _rule_text(config: TuneConfig) -> str:
    return "upper end of the 95% paired interval" if config.rule == "upper" else "point estimate"


def _drop_text(drop: Drop, config: TuneConfig) -> str:
    digits = 2 if config.metric == "top1" or config.relative else 5
    return f"{drop.drop:.{digits}f} [{drop.lower:.{digits}f}, {drop.upper:.{digits}f}]"


def _ms(estimate: dict[str, Any] | None) -> str:
    if estimate is None:
        return "-"
    if estimate.get("lower") is None:
        return f"{estimate['value']:.4g}"
    return f"{estimate['value']:.4g} [{estimate['lower']:.4g}, {estimate['upper']:.4g}]"


def _describe(candidate: Candidate, config: TuneConfig) -> str:
    if candidate.drop is None:
        return f"FAILED: {candidate.failure}"
    verdict = "meets" if candidate.passes else "misses"
    return (f"{config.metric} {candidate.drop.metric_value:.4f}, drop {_drop_text(candidate.drop, config)} "
            f"{_unit(config)} ({verdict} {config.max_drop:g}), p50 {_ms(candidate.p50_ms)} ms")


def render_tune_table(result: TuneResult) -> str:
    from tabulate import tabulate

    config = result.config
    digits = 2 if config["metric"] == "top1" or config["relative"] else 5
    rows = []
    for c in [result.baseline, *sorted(result.candidates, key=lambda c: (c.variant != "fp32", c.k, c.runtime))]:
        drop = "-" if c.drop is None else (f"{c.drop.drop:.{digits}f} [{c.drop.lower:.{digits}f}, "
                                           f"{c.drop.upper:.{digits}f}]")
        metric = "-" if c.drop is None else f"{c.drop.metric_value:.4f}"
        mark = "chosen" if result.chosen is not None and c.label == result.chosen.label else (
            "reference" if c is result.baseline else ("pass" if c.passes else ("error" if c.drop is None else "fail")))
        rows.append([c.label, "-" if c.variant == "fp32" else c.k, metric, drop, _ms(c.p50_ms), _ms(c.p95_ms),
                     f"{c.size_mb:.3f}", mark])
    headers = ["variant", "k excluded", config["metric"], f"drop vs fp32 ({config['unit']}) [95% paired CI]",
               "p50 ms [95% CI]", "p95 ms [95% CI]", "size MB", "verdict"]
    return tabulate(rows, headers=headers, disable_numparse=True)


def summary_lines(result: TuneResult) -> list[str]:
    config = result.config
    lines = [f"budget: drop ≤ {config['max_drop']:g} {config['unit']} on {config['metric']}, rule: "
             f"{'upper end of the 95% paired interval' if config['rule'] == 'upper' else 'point estimate'} "
             f"({config['interval']})", result.message]
    chosen, base = result.chosen, result.baseline
    if chosen is not None and chosen.variant == "fp32":
        lines.append(f"chosen: {chosen.label}: keep fp32 (no int8 row within the budget is faster)")
    elif chosen is not None:
        lines.append(f"chosen: {chosen.label} (k={chosen.k}) excluding {list(chosen.excluded) or 'nothing'}")
        plain = next((c for c in result.candidates if c.k == 0), None)
        if chosen.p50_ms and base.p50_ms:
            speed = float(base.p50_ms["value"]) / float(chosen.p50_ms["value"])
            cost = ""
            if plain is not None and plain.p50_ms and chosen.k:
                cost = (f"; fallback cost vs plain int8: p50 {float(chosen.p50_ms['value']):.4g} vs "
                        f"{float(plain.p50_ms['value']):.4g} ms "
                        f"({float(chosen.p50_ms['value']) / float(plain.p50_ms['value']):.2f}x)")
            lines.append(f"latency: p50 {_ms(chosen.p50_ms)} ms vs fp32 {_ms(base.p50_ms)} ms ({speed:.2f}x)" + cost)
    else:
        lines.append("no candidate meets the budget (exit 1)")
    return lines


def plot_tune(result: TuneResult, path: Path) -> Path:
    """Trade-off curve: drop (with interval) and p50 (with interval) against k."""
    try:
        import matplotlib
    except ImportError as error:
        from edgeopt.errors import BackendUnavailableError

        raise BackendUnavailableError("plots need matplotlib: pip install 'edgeopt[report]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted([c for c in result.candidates if c.drop is not None and not c.runtime and c.variant != "fp32"],
                    key=lambda c: c.k)  # the search's own rows, on the profile's reference runtime
    ks = [c.k for c in points]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    drops = np.array([[c.drop.drop, c.drop.lower, c.drop.upper] for c in points if c.drop is not None])
    if len(points):
        top.errorbar(ks, drops[:, 0], yerr=[drops[:, 0] - drops[:, 1], drops[:, 2] - drops[:, 0]], fmt="o-",
                     capsize=3, label="drop vs fp32 (95% paired CI)")
    top.axhline(result.config["max_drop"], color="#c0392b", linestyle="--", label="budget")
    top.set_ylabel(f"{result.config['metric']} drop ({result.config['unit']})")
    top.legend(fontsize=8)
    timed = [c for c in points if c.p50_ms is not None]
    if timed:
        values = np.array([[float(c.p50_ms["value"]), float(c.p50_ms.get("lower") or c.p50_ms["value"]),
                            float(c.p50_ms.get("upper") or c.p50_ms["value"])] for c in timed if c.p50_ms])
        bottom.errorbar([c.k for c in timed], values[:, 0], yerr=[values[:, 0] - values[:, 1],
                        values[:, 2] - values[:, 0]], fmt="s-", capsize=3, label="candidate p50")
    if result.baseline.p50_ms:
        bottom.axhline(float(result.baseline.p50_ms["value"]), color="grey", linestyle=":", label="fp32 p50")
    if result.chosen is not None and result.chosen.p50_ms:
        bottom.plot([result.chosen.k], [float(result.chosen.p50_ms["value"])], "*", markersize=14, color="#27ae60",
                    label=f"chosen: {result.chosen.label}")
    bottom.set_xlabel("k = most sensitive nodes kept in float")
    bottom.set_ylabel("p50 latency ms")
    bottom.legend(fontsize=8)
    figure.suptitle(f"edgeopt tune: {Path(result.config['model']).name} on {result.config['profile']}", fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return path


def _write(result: TuneResult, out: Path, config: TuneConfig) -> TuneResult:
    files = {"json": str(out / "tune.json"), "markdown": str(out / "tune.md"), "plot": str(out / "tune.png")}
    result = replace(result, files=files)
    plot_tune(result, out / "tune.png")
    text = "\n".join(["# edgeopt tune", "", *[f"- {line}" for line in summary_lines(result)], "", "```",
                      render_tune_table(result), "```", ""])
    write_text_atomic(out / "tune.md", text)
    write_json_atomic(out / "tune.json", result.to_dict())
    return result
