"""One measurement cell, measured one way: :func:`measure_cell` is the reuse rule and the one place that
builds the measurement worker's job.

A :class:`Cell` is one (variant, profile, backend, precision) row with its timing inputs; a :class:`CellContext`
is what the cells of one run share (the measurements folder, the reference inputs, the proxy and force switches).
Every measurement goes through :func:`measure_cell` — ``edgeopt run``, ``tune``, ``rerun``, ``profile``, a lab
node and the pytest plugin — so the reuse key, the worker job and the saved document are the same everywhere.

A stored measurement is reused when it succeeded, its key (variant bytes, profile identity, runtime and bench
settings, the planned session, the reference inputs, edgeopt's version) equals the one this cell would get, and
every extra output file it should have left is there; ``force`` redoes it.  Whatever is measured is saved
(atomically) before the function returns.  Each cell runs in a fresh ``python -m edgeopt.measure.worker``
process (:func:`edgeopt.measure.launcher.run_worker`); a crash, a timeout, a memory cap or a backend error comes
back as a failed :class:`~edgeopt.measure.results.Measurement`, never as an exception.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np

from edgeopt import __version__
from edgeopt.backends import availability, is_available
from edgeopt.core import progress
from edgeopt.core.host import host_fingerprint
from edgeopt.core.logs import FILE_ONLY
from edgeopt.core.quiet_host import wait_for_quiet
from edgeopt.core.stability import stability_report
from edgeopt.errors import brief
from edgeopt.measure.jobs import ReferenceSet, TimingRule, WorkerJob
from edgeopt.measure.launcher import measurement_key, planned_session, run_worker, worker_memory_cap
from edgeopt.measure.results import (
    Failure,
    FailureKind,
    Latency,
    Measurement,
    ProfileRecord,
    VariantRecord,
    git_commit,
    now_iso,
    row_name,
    try_load,
)
from edgeopt.measure.stored import extra_outputs_file, result_stem
from edgeopt.models.variants import Variant
from edgeopt.profiles.schema import HardwareProfile, budget_sample_floor, match_identity

__all__ = ["Cell", "CellContext", "MeasureCells", "ci_detail", "failed_measurement", "measure_cell",
           "measure_cells", "stored_measurement"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    """One measurement a run asks for: a variant on a profile (and one of its backends and precisions),
    timed on ``timing_inputs``."""

    variant: Variant
    profile: HardwareProfile
    timing_inputs: Path
    backend: str | None = None  # None: the profile's own backend
    precision: str | None = None  # OpenVINO's inference precision hint
    model_reference: str | None = None  # a torch row runs the factory itself
    file_stem: str | None = None  # the result's file stem when not the row's (a rerun: ``<stem>__rerun2``)

    @property
    def label(self) -> str:
        """The row's name (:attr:`Measurement.variant_name`): the variant, with its backend and precision."""
        return row_name(self.variant.name, self.backend, self.precision) if self.backend else self.variant.name

    @property
    def stem(self) -> str:
        """The stem of the result's files in the measurements folder: ``{label}__{profile}``."""
        return self.file_stem or result_stem(self.label, self.profile.name)


@dataclass(frozen=True)
class CellContext:
    """What every cell of one run shares."""

    directory: Path  # where measurements are saved (a run's measurements folder)
    reference_inputs: Path | None = None  # inputs every variant runs for fidelity (and the eval set's metrics)
    reference_sha: str | None = None  # their content hash (with the shifted sets'), part of the reuse key
    extra_references: dict[str, Path] = field(default_factory=dict)  # name -> inputs (the eval set under a shift)
    proxy: bool = False  # judged as a labelled proxy when the host is not the profile's device
    force: bool = False  # measure again even when a stored measurement is still valid
    quiet_wait_s: float = 0.0  # wait up to this long for the profile's load rule to hold before each measurement
    owned: tuple[Path, ...] = ()  # removed by the worker if this process dies first (a lab node's cell folder)


#: ``(cells, context) -> one Measurement per cell, in the cells' order``; each saved in ``context.directory``.
MeasureCells = Callable[[Sequence[Cell], CellContext], list[Measurement]]
#: Called with each ``{"n": ..., "ci_rel": ...}`` progress record of a worker.
OnProgress = Callable[[dict[str, Any]], None]


def measure_cells(cells: Sequence[Cell], context: CellContext) -> list[Measurement]:
    """Measure (or reuse) each cell on this host, in order (the default ``RunConfig.measure``)."""
    return [measure_cell(cell, context) for cell in cells]


def measure_cell(cell: Cell, context: CellContext, *, title: str | None = None) -> Measurement:
    """The measurement of ``cell``: the stored one in ``context.directory`` when it is still valid, else a fresh
    one from the isolated worker, saved there as ``<stem>.json``.  ``title``: what the progress display calls it
    (default ``measure <stem>``)."""
    previous = stored_measurement(cell, context)
    if previous is not None:
        logger.info(f"measure {cell.stem}: done earlier, skipped (--force to redo)")
        return previous
    if context.quiet_wait_s > 0:
        _wait_for_quiet(cell, context.quiet_wait_s)
    logger.info(f"measure {cell.stem}: running ...")
    with progress.task(title or f"measure {cell.stem}", unit="samples") as step:
        measurement = _measure(cell, context, lambda live: step.update(done=live["n"], detail=ci_detail(live)))
    measurement.save(Path(context.directory) / f"{cell.stem}.json")
    if measurement.ok and measurement.latency is not None:
        s = measurement.latency.summary()
        logger.info(f"measure {cell.stem}: p50 {s.percentiles['p50'].value:.3f} ms, n={s.n} "
                    f"({measurement.latency.stop_reason})")
    elif measurement.unsupported and measurement.failure is not None:
        logger.info(f"measure {cell.stem}: {measurement.failure.kind}: {measurement.failure.message}")
    else:
        logger.warning(f"measure {cell.stem}: FAILED: {measurement.failure.message if measurement.failure else '?'}")
    return measurement


def _wait_for_quiet(cell: Cell, seconds: float) -> None:
    """Wait (up to ``seconds``) until the load average per core is within the profile's ``max_load_avg_per_core``."""
    limit = cell.profile.stability.max_load_avg_per_core
    if limit is None:
        return

    def say(load: float, left: float) -> None:
        logger.info(f"measure {cell.stem}: waiting for a quiet host: load {load:.2f}/core > "
                    f"max_load_avg_per_core {limit:g} ({left:.0f} s left of --wait-for-quiet)")

    load = wait_for_quiet(limit, seconds, say)
    if load is not None and load > limit:
        logger.warning(f"measure {cell.stem}: the host stayed busy for {seconds:g} s (load {load:.2f}/core > "
                       f"{limit:g}): measuring anyway, the row will be invalid")


def stored_measurement(cell: Cell, context: CellContext) -> Measurement | None:
    """The stored measurement of ``cell`` when it may be reused (the one reuse rule), else None."""
    if context.force:
        return None
    directory = Path(context.directory)
    previous = try_load(directory / f"{cell.stem}.json")
    complete = all((directory / extra_outputs_file(cell.stem, name)).exists() for name in context.extra_references)
    key = cell_key(cell, context)
    return previous if previous is not None and previous.ok and previous.key == key and complete else None


def cell_session(cell: Cell, context: CellContext) -> dict[str, Any]:
    """The runner settings the worker's job carries for ``cell`` (its engine caches under the measurements
    folder)."""
    return planned_session(cell.profile, cell.timing_inputs, Path(context.directory), cell.backend, cell.precision,
                           cell.variant.kind)


def cell_key(cell: Cell, context: CellContext) -> str:
    """What a stored measurement of ``cell`` must match to be reused."""
    return measurement_key(cell.variant, cell.profile, context.reference_sha, cell_session(cell, context))


def ci_detail(live: dict[str, Any]) -> str:
    """A worker's progress record as a display's detail: the stop percentile's CI half-width so far."""
    rel = live.get("ci_rel")
    return "CI: too few samples yet" if rel is None else f"CI ±{100 * float(rel):.1f}%"


def _bench(profile: HardwareProfile) -> dict[str, Any]:
    """The profile's bench settings, ``min_iterations`` raised to the samples its budgeted percentiles need (the
    loop aims for them; ``max_seconds`` still bounds it: edgeopt.measure.jobs.TimingRule)."""
    bench = profile.bench.model_dump(mode="json")
    bench["min_iterations"] = max(bench["min_iterations"], budget_sample_floor(profile))
    return bench


def _document(cell: Cell, context: CellContext, session: dict[str, Any]) -> dict[str, Any]:
    """The fields every measurement document of ``cell`` carries, measured or not."""
    variant, profile = cell.variant, cell.profile
    host = host_fingerprint()
    identity = match_identity(profile, host)
    return {
        "key": measurement_key(variant, profile, context.reference_sha, session),
        "variant": VariantRecord.of(variant),
        "profile": ProfileRecord(name=profile.name, digest=profile.digest(), settings=profile.model_dump(mode="json")),
        "host": host.to_dict(), "host_matches": identity.matches, "mismatch_reasons": list(identity.reasons),
        "proxy": context.proxy, "expected_fast": profile.expects_fast(cell.precision or variant.precision, host),
        "session": session, "bench": _bench(profile), "created_at": now_iso(),
        "commit": git_commit(Path(__file__).parent), "input_shapes": _feed_shapes(Path(cell.timing_inputs)),
    }


def failed_measurement(cell: Cell, context: CellContext, failure: Failure, **fields: Any) -> Measurement:
    """The record of a cell that was not measured (``fields`` override the document's, e.g. a lab's
    ``host_matches=False``)."""
    return Measurement(status="failed", failure=failure,
                       **{**_document(cell, context, cell_session(cell, context)), **fields})


def worker_job(cell: Cell, context: CellContext, session: dict[str, Any]) -> WorkerJob:
    """The measurement worker's job for ``cell``: its outputs go beside the measurement."""
    directory = Path(context.directory)
    reference = None
    if context.reference_inputs is not None:
        reference = ReferenceSet(str(Path(context.reference_inputs).resolve()),
                                 str((directory / f"{cell.stem}.outputs.npz").resolve()))
    extra = tuple(ReferenceSet(str(Path(p).resolve()), str((directory / extra_outputs_file(cell.stem, name)).resolve()))
                  for name, p in context.extra_references.items())
    # a torch row runs the PyTorch model itself: the worker builds it from the factory reference
    model_path = cell.model_reference or str(cell.variant.path.resolve())
    return WorkerJob(model_path=model_path, session=session, inputs_path=str(Path(cell.timing_inputs).resolve()),
                     timing=TimingRule.from_bench(_bench(cell.profile)), reference=reference, extra_references=extra)


def _measure(cell: Cell, context: CellContext, on_progress: OnProgress | None) -> Measurement:
    """Measure ``cell`` in a fresh worker process; failures come back as values."""
    Path(context.directory).mkdir(parents=True, exist_ok=True)
    variant, profile = cell.variant, cell.profile
    session = cell_session(cell, context)
    base = _document(cell, context, session)
    if not is_available(session["backend"]):
        failure = Failure(kind="unavailable", message=f"{session['backend']}: {availability()[session['backend']]}")
        return Measurement(status="failed", failure=failure, **base)
    job = worker_job(cell, context, session)
    outputs = [Path(r.outputs_path) for r in (*filter(None, [job.reference]), *job.extra_references)]
    run = run_worker("edgeopt.measure.worker", job, profile.bench.worker_timeout_s,
                     memory_cap=worker_memory_cap(profile), outputs=outputs, owned=context.owned,
                     on_progress=on_progress)
    returncode, tail, result = run.returncode, run.stderr_tail, run.result
    if run.timed_out:
        samples = _reference_samples(job)
        before = (f" (before timing it runs the {samples} reference input(s) once each: the eval set's samples, when "
                  "--eval is given; fewer samples or a larger bench.worker_timeout_s)" if samples else "")
        failure = Failure(kind="timeout", message=f"worker exceeded worker_timeout_s={profile.bench.worker_timeout_s:g}"
                          f" on {variant.name}{before}", returncode=returncode, stderr_tail=tail)
        return Measurement(status="failed", failure=failure, **base)
    if returncode < 0:
        failure = Failure(kind="crash", message=f"worker crashed ({_signal_name(returncode)}) on "
                          f"{variant.name}", returncode=returncode, stderr_tail=tail)
        return Measurement(status="failed", failure=failure, **base)
    if result is None or result.get("status") != "ok":
        message = (result or {}).get("message") or f"worker exited {returncode} without a result"
        short = brief(message)
        if short != message:  # a runtime's long message: its first clause in the row, all of it in run.log
            logger.info(f"measure {cell.stem}: the runtime said: {message}", extra=FILE_ONLY)
            short += " (full text in run.log)"
        # the worker records the kind the backend's exception declares (edgeopt.errors.failure_kind)
        kind = _failure_kind(result.get("failure_kind")) if result else "no-result"
        failure = Failure(kind=kind, message=f"{variant.name} on {profile.name}: {short}",
                          returncode=returncode, stderr_tail=tail or (result or {}).get("traceback", ""))
        return Measurement(status="failed", failure=failure, **base)
    latency = Latency.from_samples(result["samples_ns"], result["stop_reason"], result["loop_wall_ns"],
                                   profile.bench.confidence)
    stability = stability_report(result["samples_ns"], result.get("system")) if len(result["samples_ns"]) > 1 else None
    return Measurement(
        status="ok", latency=latency, load_ms=result["load_ms"], first_inference_ms=result["first_inference_ms"],
        memory=result["memory"], providers_active=result["providers_active"],
        versions={"edgeopt": __version__, **result["versions"]}, runtime_details=result.get("runtime_details", {}),
        providers_requested=result["providers_requested"], warmup_iterations=result["warmup_iterations"],
        reference_count=result["reference_count"],
        outputs_file=f"{cell.stem}.outputs.npz" if job.reference is not None else None,
        output_names=result["output_names"], torch_imported=result["torch_imported"],
        stability=stability.to_dict() if stability else None, **{**base, "host": result["host"]},
    )


def _reference_samples(job: WorkerJob) -> int:
    """How many reference inputs the worker runs before timing (0 when none), read from the ``.npz`` headers."""
    sets = [*filter(None, [job.reference]), *job.extra_references]
    count = 0
    for reference in sets:
        with contextlib.suppress(OSError, ValueError, KeyError, zipfile.BadZipFile):
            with zipfile.ZipFile(reference.path) as archive:
                first = next(n for n in archive.namelist() if n.endswith(".npy"))
                with archive.open(first) as member:
                    version = np.lib.format.read_magic(member)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape = read(member)[0]  # the header only, not the data
                count += int(shape[0]) if shape else 1
    return count


def _feed_shapes(path: Path) -> dict[str, list[int]]:
    with np.load(path, allow_pickle=False) as feeds:
        return {name: list(feeds[name].shape) for name in feeds.files}


def _failure_kind(recorded: Any) -> FailureKind:
    """A worker's recorded failure kind, or ``backend`` for one this version does not know."""
    return recorded if recorded in get_args(FailureKind) else "backend"  # type: ignore[no-any-return]


def _signal_name(returncode: int) -> str:
    with contextlib.suppress(ValueError):
        return signal.Signals(-returncode).name
    return f"signal {-returncode}"
