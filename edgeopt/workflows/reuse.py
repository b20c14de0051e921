"""Reuse a finished measurement or make it: the one rule every workflow (run, tune) follows.

A stored measurement is reused when it succeeded, its reuse key (variant bytes, profile identity,
runtime and bench settings, the planned session, the reference inputs, edgeopt's version) equals the
key this run would give it, and every extra output file it should have left is there; ``force`` redoes it.
Whatever is measured is saved (atomically) before the next measurement starts.
"""

from __future__ import annotations

from pathlib import Path

from edgeopt.core.logs import Log
from edgeopt.measure.launcher import extra_outputs_file, measure_variant, measurement_key, planned_session
from edgeopt.measure.results import Measurement, row_name, try_load
from edgeopt.measure.run_folder import result_stem
from edgeopt.models.quantize import Variant
from edgeopt.profiles.schema import HardwareProfile

__all__ = ["measure_or_reuse"]


def measure_or_reuse(variant: Variant, profile: HardwareProfile, directory: Path, *, timing_inputs: Path,
                     reference_inputs: Path | None = None, reference_sha: str | None = None, proxy: bool = False,
                     force: bool = False, log: Log = print, backend: str | None = None,
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
        log(f"measure {stem}: done earlier, skipped (--force to redo)")
        return previous
    log(f"measure {stem}: running ...")
    measurement = measure_variant(variant, profile, directory, timing_inputs=timing_inputs,
                                  reference_inputs=reference_inputs, reference_sha=reference_sha, proxy=proxy,
                                  stem=stem, backend=backend, precision=precision,
                                  extra_references=extra_references, model_reference=model_reference)
    measurement.save(path)
    if measurement.ok and measurement.latency is not None:
        s = measurement.latency.summary()
        log(f"measure {stem}: p50 {s.percentiles['p50'].value:.3f} ms, n={s.n} ({measurement.latency.stop_reason})")
    elif measurement.unsupported and measurement.failure is not None:
        log(f"measure {stem}: {measurement.failure.kind}: {measurement.failure.message}")
    else:
        log(f"measure {stem}: FAILED: {measurement.failure.message if measurement.failure else '?'}")
    return measurement
