"""``edgeopt sweep``: a grid of int8-static recipes through ``run_pipeline``, and its Pareto front.

The grid is calibration method × per-channel/per-tensor weights × symmetric/asymmetric activations ×
calibration sample count × reduce_range, spelled as recipe names (``int8-static-entropy-pt-asym-n64``).
``fp32`` is always included as the reference.  The pipeline makes, measures and evaluates every
variant (resumable: variants and measurements whose keys match are reused), and each profile's rows
go through ``pareto_front``: minimise p50, p95 and size, maximise quality (top-1 accuracy with
``--eval``, else mean cosine vs fp32).  A variant is dominated when another is at least as good on
every objective and strictly better on one.  Point estimates decide dominance; the intervals are
shown beside them, so a dominance within noise is visible to the reader.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeopt.core.fileio import atomic_path, write_json_atomic
from edgeopt.core.run_lock import run_lock
from edgeopt.errors import EXIT_BACKEND_FAILURE, ConfigError
from edgeopt.evaluate.fidelity import worst
from edgeopt.models.input_spec import InputSpec

logger = logging.getLogger(__name__)


def sweep_recipes(methods: Sequence[str], per_channel: Sequence[bool] = (True,), symmetric: Sequence[bool] = (True,),
                  samples: Sequence[int | None] = (None,), reduce_range: Sequence[bool] = (False,)) -> list[str]:
    """Recipe names for the grid, in a stable order, without duplicates."""
    from edgeopt.models.ranges import CALIBRATION_METHODS
    from edgeopt.models.recipes import Recipe

    unknown = [m for m in methods if m not in CALIBRATION_METHODS]
    if unknown or not methods:
        raise ConfigError(f"--methods: unknown {unknown or 'empty'}; choose from {', '.join(CALIBRATION_METHODS)}")
    if any(n is not None and n < 1 for n in samples):
        raise ConfigError("--samples: counts must be ≥ 1")
    names: list[str] = []
    for method, channel, sym, count, rr in itertools.product(methods, per_channel, symmetric, samples, reduce_range):
        recipe = Recipe(kind="int8-static", calibration_method=method, per_channel=channel, activation_symmetric=sym,
                        calibration_samples=count, reduce_range=rr)
        if recipe.name not in names:
            names.append(recipe.name)
    return names


@dataclass(frozen=True)
class SweepPoint:
    variant: str
    profile: str
    p50_ms: float
    p95_ms: float
    size_mb: float
    quality: float
    quality_name: str
    dominated_by: tuple[str, ...] = ()
    p50_ci: tuple[float | None, float | None] = (None, None)
    p95_ci: tuple[float | None, float | None] = (None, None)
    quality_ci: tuple[float | None, float | None] = (None, None)

    @property
    def on_front(self) -> bool:
        return not self.dominated_by


def dominates(a: SweepPoint, b: SweepPoint) -> bool:
    """``a`` is no worse than ``b`` on every objective and better on at least one."""
    no_worse = a.p50_ms <= b.p50_ms and a.p95_ms <= b.p95_ms and a.size_mb <= b.size_mb and a.quality >= b.quality
    better = a.p50_ms < b.p50_ms or a.p95_ms < b.p95_ms or a.size_mb < b.size_mb or a.quality > b.quality
    return no_worse and better


def pareto_front(points: Sequence[SweepPoint]) -> list[SweepPoint]:
    """Every point, with ``dominated_by`` filled in (empty on the front)."""
    from dataclasses import replace

    return [replace(p, dominated_by=tuple(q.variant for q in points if q is not p and dominates(q, p)))
            for p in points]


@dataclass(frozen=True)
class SweepConfig:
    model: str
    profiles: tuple[str, ...]
    out_dir: Path
    calibration: str
    recipes: tuple[str, ...]
    eval_set: str | None = None
    proxy: bool = False
    force: bool = False
    inputs: tuple[InputSpec, ...] = ()  # --input: concrete shapes of symbolic dims


@dataclass(frozen=True)
class SweepResult:
    points: list[SweepPoint]
    failures: list[dict[str, Any]]
    tables: list[str]
    json_path: Path
    plot_paths: list[Path] = field(default_factory=list)
    exit_code: int = 0


def _points(rows: Sequence[Any]) -> tuple[list[SweepPoint], list[dict[str, Any]]]:
    points, failures = [], []
    for row in rows:
        if row.status != "ok" or row.p50_ms is None or row.p95_ms is None:
            failures.append({"variant": row.variant, "profile": row.profile, "failure": row.failure})
            continue
        if row.accuracy is not None:
            quality, name = row.accuracy.value, "top1"
            interval: tuple[float | None, float | None] = (row.accuracy.lower, row.accuracy.upper)
        elif row.variant == "fp32":
            quality, name, interval = 1.0, "cosine vs fp32", (None, None)
        elif figures := worst(row.fidelity):
            key = next(k for k in ("top1", "cosine", "decision") if k in figures)  # the worst output's figure
            quality, name, interval = figures[key], f"{key} vs fp32", (None, None)
        else:
            failures.append({"variant": row.variant, "profile": row.profile, "failure": "no fidelity"})
            continue
        points.append(SweepPoint(row.variant, row.profile, float(row.p50_ms["value"]), float(row.p95_ms["value"]),
                                 float(row.size_mb or 0.0), float(quality), name,
                                 p50_ci=(row.p50_ms.get("lower"), row.p50_ms.get("upper")),
                                 p95_ci=(row.p95_ms.get("lower"), row.p95_ms.get("upper")), quality_ci=interval))
    return points, failures


def _ci(value: float, ci: tuple[float | None, float | None], digits: int = 4) -> str:
    low, high = ci
    if low is None or high is None:
        return f"{value:.{digits}g}"
    return f"{value:.{digits}g} [{low:.{digits}g}, {high:.{digits}g}]"


def render_front(points: Sequence[SweepPoint]) -> str:
    from tabulate import tabulate

    ordered = sorted(points, key=lambda p: (not p.on_front, p.p50_ms))
    rows = [[p.variant, _ci(p.p50_ms, p.p50_ci), _ci(p.p95_ms, p.p95_ci), f"{p.size_mb:.3f}",
             _ci(p.quality, p.quality_ci), "front" if p.on_front else "dominated by " + ", ".join(p.dominated_by[:3])
             + (" ..." if len(p.dominated_by) > 3 else "")] for p in ordered]
    name = points[0].quality_name if points else "quality"
    return tabulate(rows, headers=["variant", "p50 ms [95% CI]", "p95 ms [95% CI]", "size MB", name, "pareto"],
                    disable_numparse=True)


def plot_front(points: Sequence[SweepPoint], path: Path, title: str) -> Path:
    """p50 vs quality, front highlighted; marker area follows model size."""
    try:
        import matplotlib
    except ImportError as error:
        from edgeopt.errors import BackendUnavailableError

        raise BackendUnavailableError("plots need matplotlib: pip install 'edgeopt[report]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    biggest = max((p.size_mb for p in points), default=1.0) or 1.0
    for group, colour in ((False, "#95a5a6"), (True, "#c0392b")):
        chosen = [p for p in points if p.on_front == group]
        axis.scatter([p.p50_ms for p in chosen], [p.quality for p in chosen], c=colour,
                     s=[30 + 200 * p.size_mb / biggest for p in chosen], label="front" if group else "dominated",
                     alpha=0.8)
    front = sorted([p for p in points if p.on_front], key=lambda p: p.p50_ms)
    axis.plot([p.p50_ms for p in front], [p.quality for p in front], color="#c0392b", linewidth=1)
    for p in points:
        axis.annotate(p.variant.replace("int8-static-", ""), (p.p50_ms, p.quality), fontsize=6,
                      xytext=(3, 3), textcoords="offset points")
    axis.set_xlabel("p50 latency ms (lower is better)")
    axis.set_ylabel(f"{points[0].quality_name if points else 'quality'} (higher is better)")
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return path


def run_sweep(config: SweepConfig) -> SweepResult:
    """Make and measure every recipe (plus fp32) with ``run_pipeline``; write ``sweep.json`` and a plot per profile,
    holding the output folder's lock throughout."""
    with run_lock(config.out_dir, "sweep"):
        return _sweep_locked(config)


def _sweep_locked(config: SweepConfig) -> SweepResult:
    from edgeopt.workflows.pipeline import RunConfig, run_pipeline

    variants = ("fp32", *[r for r in config.recipes if r != "fp32"])
    result = run_pipeline(RunConfig(model=config.model, profiles=config.profiles, out_dir=config.out_dir,
                                    calibration=config.calibration, variants=variants, eval_set=config.eval_set,
                                    proxy=config.proxy, force=config.force, inputs=config.inputs))
    all_points, failures = _points(result.rows)
    marked: list[SweepPoint] = []
    tables, plots = [], []
    out = Path(config.out_dir)
    for profile in dict.fromkeys(p.profile for p in all_points):
        front = pareto_front([p for p in all_points if p.profile == profile])
        marked += front
        on = sum(p.on_front for p in front)
        tables.append(f"profile {profile}: {on} of {len(front)} variants on the Pareto front (minimise p50, p95, "
                      f"size; maximise {front[0].quality_name}; point estimates decide)\n" + render_front(front))
        plots.append(plot_front(front, out / f"sweep-{profile}.png", f"edgeopt sweep on {profile}"))
    json_path = out / "sweep.json"
    write_json_atomic(json_path, {"schema_version": 1, "kind": "sweep", "model": config.model,
                                  "recipes": list(variants), "profiles": list(config.profiles),
                                  "points": [{**asdict(p), "on_front": p.on_front} for p in marked],
                                  "failures": failures, "run_summary": str(result.summary_path)})
    for failure in failures:
        logger.warning(f"sweep: {failure['variant']} on {failure['profile']}: {failure['failure']}")
    return SweepResult(marked, failures, tables, json_path, plots, EXIT_BACKEND_FAILURE if failures else 0)
