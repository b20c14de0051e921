"""Reproducibility check: measure a stored result's variant again under its stored settings and report
whether the reruns agree (``edgeopt rerun``)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeopt.core.run_lock import run_lock
from edgeopt.errors import EXIT_BACKEND_FAILURE, EXIT_INCONCLUSIVE, EXIT_OK, ConfigError, InputRejectedError

__all__ = ["RERUN_AGREEMENT", "RerunReport", "rerun_measurement"]

RERUN_AGREEMENT = 0.02  # a rerun agrees when its p50 and p95 are within +-2 % of the stored ones


@dataclass(frozen=True)
class RerunReport:
    """Agreement of re-measurements with a stored one: per rerun, the p50/p95 ratio with its interval."""

    source: Path
    rows: tuple[dict[str, Any], ...]
    failures: tuple[str, ...] = ()
    tolerance: float = RERUN_AGREEMENT
    sentences: tuple[str, ...] = field(default=())

    @property
    def agreed(self) -> int:
        """Reruns whose p50 and p95 both lie within the tolerance of the stored values."""
        return sum(all(abs(s["ratio"] - 1) <= self.tolerance for s in row["statistics"].values()) for row in self.rows)

    @property
    def exit_code(self) -> int:
        """0 when every rerun agrees, 4 when a re-measurement failed, else 5 (not reproducible)."""
        if self.failures:
            return EXIT_BACKEND_FAILURE
        return EXIT_OK if self.agreed == len(self.rows) else EXIT_INCONCLUSIVE

    def render(self) -> str:
        verdict = (f"rerun: {self.agreed}/{len(self.rows)} rerun(s) agree within +-{self.tolerance * 100:g}% on p50 "
                   f"and p95 (exit {self.exit_code})")
        return "\n".join([*self.sentences, *(f"FAILED: {f}" for f in self.failures), verdict])


def _resolve_model(stored: str, result_path: Path) -> Path:
    path = Path(stored)
    candidates = [path] if path.is_absolute() else [path, *(parent / path for parent in result_path.parents)]
    candidates += [parent / path.name for parent in list(result_path.parents)[:2]]
    candidates += [parent / "variants" / path.name for parent in list(result_path.parents)[:2]]
    return next((c for c in candidates if c.is_file()), path)


def rerun_measurement(result_path: Path | str, *, times: int = 1, out_dir: Path | str | None = None) -> RerunReport:
    """Measure the stored result's variant again under its stored profile settings, ``times`` times.

    The model file must still exist with the recorded sha256 (else InputRejectedError).  Timing inputs
    are regenerated with ``prepare_timing_inputs`` at the shapes the stored measurement records.  With
    ``out_dir`` the re-measurements are kept there, under the folder's lock.
    """
    import tempfile

    from pydantic import ValidationError

    from edgeopt.core.fileio import sha256_file
    from edgeopt.core.ratio_stats import bootstrap_ratio
    from edgeopt.evaluate.compare import load_sets
    from edgeopt.measure.cell import Cell, CellContext, measure_cell
    from edgeopt.measure.launcher import prepare_timing_inputs
    from edgeopt.measure.stored import load_measurement, result_stem
    from edgeopt.models.input_spec import InputSpec
    from edgeopt.models.variants import Variant
    from edgeopt.profiles.schema import HardwareProfile

    result_path = Path(result_path)
    if times < 1:
        raise ConfigError(f"--times must be >= 1, got {times}")
    stored_set = load_sets(result_path)[0]  # clear errors for corrupt, truncated or old-schema files
    if stored_set.profile == "pytest-benchmark" or not result_path.is_file():
        raise InputRejectedError(f"{result_path}: rerun takes one edgeopt measurement JSON file")
    stored = load_measurement(result_path)
    if not stored.ok or stored.latency is None:
        raise InputRejectedError(f"{result_path}: the stored measurement failed; there is nothing to reproduce")
    model = _resolve_model(stored.variant.path, result_path)
    if not model.is_file():
        raise InputRejectedError(f"{result_path}: the measured model {stored.variant.path} no longer exists")
    if sha256_file(model) != stored.variant.sha256:
        raise InputRejectedError(f"{result_path}: {model} changed since it was measured (sha256 differs from the "
                                 "recorded one); rerun needs the same file")
    try:
        profile = HardwareProfile.model_validate(stored.profile.settings)
    except (ValidationError, KeyError, TypeError) as error:
        raise InputRejectedError(f"{result_path}: stored profile settings are not a valid profile") from error
    variant = Variant(name=stored.variant_name, path=model, precision=stored.variant.precision,
                      provenance=dict(stored.variant.provenance))
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    sentences: list[str] = []
    lock = run_lock(out_dir, "rerun") if out_dir is not None else contextlib.nullcontext()
    with lock, tempfile.TemporaryDirectory(prefix="edgeopt-rerun-") as scratch:
        work = Path(out_dir) if out_dir is not None else Path(scratch)
        stem = result_stem(variant.name, profile.name)
        shapes = [InputSpec(name, tuple(shape), "float32") for name, shape in stored.input_shapes.items()]
        inputs = prepare_timing_inputs(model, profile, None, work / "inputs" / f"{stem}.npz", given=shapes)
        for index in range(times):
            rerun_stem = f"{stem}__rerun{index + 1}"
            fresh = measure_cell(Cell(variant, profile, inputs, file_stem=rerun_stem), CellContext(work, force=True),
                                 title=f"rerun {index + 1}/{times} {stem}")
            if not fresh.ok or fresh.latency is None:
                failures.append(f"rerun {index + 1}: {fresh.failure.message if fresh.failure else 'failed'}")
                continue
            stats: dict[str, dict[str, float]] = {}
            for statistic in ("p50", "p95"):
                est = bootstrap_ratio([s / 1e6 for s in stored.latency.samples_ns],
                                      [s / 1e6 for s in fresh.latency.samples_ns], statistic, seed=index)
                stats[statistic] = {"ratio": est.ratio, "lower": est.lower, "upper": est.upper,
                                    "stored_ms": est.baseline, "rerun_ms": est.candidate}
                within = "within" if abs(est.ratio - 1) <= RERUN_AGREEMENT else "OUTSIDE"
                sentences.append(f"rerun {index + 1}: {statistic} {est.candidate:.4g} ms vs stored {est.baseline:.4g}"
                                 f" ms: {est.ratio:.3f}x [{est.lower:.3f}, {est.upper:.3f}], {within} "
                                 f"+-{RERUN_AGREEMENT * 100:g}%")
            rows.append({"rerun": index + 1, "n": len(fresh.latency.samples_ns), "statistics": stats})
    return RerunReport(result_path, tuple(rows), tuple(failures), RERUN_AGREEMENT, tuple(sentences))
