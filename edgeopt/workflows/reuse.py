"""Reuse a finished measurement or make it: the one rule every workflow (run, tune) follows.

A stored measurement is reused when it succeeded, its reuse key (variant bytes, profile identity,
runtime and bench settings, the planned session, the reference inputs, edgeopt's version) equals the
key this run would give it, and every extra output file it should have left is there; ``force`` redoes it.
Whatever is measured is saved (atomically) before the next measurement starts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgeopt.core import progress
from edgeopt.measure.launcher import extra_outputs_file, measure_variant, measurement_key, planned_session
from edgeopt.measure.results import Measurement, row_name, try_load
from edgeopt.measure.run_folder import result_stem
from edgeopt.models.quantize import Variant
from edgeopt.profiles.schema import HardwareProfile

__all__ = ["ci_detail", "measure_or_reuse"]

logger = logging.getLogger(__name__)


def measure_or_reuse(variant: Variant, profile: HardwareProfile, directory: Path, *, timing_inputs: Path,
                     reference_inputs: Path | None = None, reference_sha: str | None = None, proxy: bool = False,
                     force: bool = False, backend: str | None = None,
                     precision: str | None = None, extra_references: dict[str, Path] | None = None,
                     model_reference: str | None = None) -> Measurement:
    """The measurement of ``variant`` on ``profile`` (and ``backend``/``precision``) in ``directory``:
    the stored one when it is still valid, else a fresh one from the isolated worker, saved."""
    label = row_name(variant.name, backend, precision) if backend else variant.name  # = Measurement.variant_name
    stem = result_stem(label, profile.name)
    path = Path(directory) / f"{stem}.json"
    session = planned_session(profile, timing_inputs, directory, backend, precision, variant.kind)
    key = measurement_key(variant, profile, reference_sha, session)
    previous = None if force else try_load(path)
    complete = all((Path(directory) / extra_outputs_file(stem, name)).exists() for name in extra_references or {})
    if previous is not None and previous.ok and previous.key == key and complete:
        logger.info(f"measure {stem}: done earlier, skipped (--force to redo)")
        return previous
    logger.info(f"measure {stem}: running ...")
    with progress.task(f"measure {stem}", unit="samples") as step:
        measurement = measure_variant(variant, profile, directory, timing_inputs=timing_inputs,
                                      reference_inputs=reference_inputs, reference_sha=reference_sha, proxy=proxy,
                                      stem=stem, backend=backend, precision=precision,
                                      extra_references=extra_references, model_reference=model_reference,
                                      on_progress=lambda live: step.update(done=live["n"], detail=ci_detail(live)))
    measurement.save(path)
    if measurement.ok and measurement.latency is not None:
        s = measurement.latency.summary()
        logger.info(f"measure {stem}: p50 {s.percentiles['p50'].value:.3f} ms, n={s.n} "
                    f"({measurement.latency.stop_reason})")
    elif measurement.unsupported and measurement.failure is not None:
        logger.info(f"measure {stem}: {measurement.failure.kind}: {measurement.failure.message}")
    else:
        logger.warning(f"measure {stem}: FAILED: {measurement.failure.message if measurement.failure else '?'}")
    return measurement


def ci_detail(live: dict[str, Any]) -> str:
    """A worker's progress record as a display's detail: the stop percentile's CI half-width so far."""
    rel = live.get("ci_rel")
    return "CI: too few samples yet" if rel is None else f"CI ±{100 * float(rel):.1f}%"
