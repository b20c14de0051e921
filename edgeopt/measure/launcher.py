"""Parent side of a measurement: prepare inputs, launch the isolated worker, turn its output into a value.

Each (variant, profile) runs in a fresh ``python -m edgeopt.measure.worker`` process with a timeout.
A crash (segfault, OOM kill), a timeout, a memory cap or a backend error becomes a failed ``Measurement``
carrying its stderr tail; the caller decides whether to go on.  The worker's job and result live in a
private scratch folder, never in the output folder; the worker's process group is killed when the
parent is interrupted (SIGINT, SIGTERM) or fails, and the job's lifeline (``edgeopt.core.lifeline``)
makes the worker follow its parent when the parent is killed outright.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, get_args

import numpy as np
import onnx
import psutil

from edgeopt import __version__
from edgeopt.backends import availability, cache_folder, is_available, settings_for
from edgeopt.core.fileio import read_json, sha256_json, write_json_atomic, write_npz_atomic
from edgeopt.core.host import host_fingerprint
from edgeopt.core.lifeline import read_no_room, remove_worker_files
from edgeopt.core.run_lock import held_locks
from edgeopt.core.stability import stability_report
from edgeopt.measure.results import Failure, FailureKind, Latency, Measurement, git_commit, now_iso
from edgeopt.measure.run_folder import result_stem
from edgeopt.models.calibration import CalibrationSet, InputSpec
from edgeopt.models.graph import input_specs
from edgeopt.models.inputs import resolve_shapes, synthetic_feeds
from edgeopt.models.quantize import Variant
from edgeopt.profiles.schema import HardwareProfile, budget_sample_floor, match_identity

STDERR_TAIL_CHARS = 2000
DEADLINE_GRACE_S = 2.0  # the worker's own deadline comes this long after the parent's timeout: the parent's first
DEFAULT_RSS_SHARE = 0.75  # bench.worker_max_rss_mb unset: this share of the host's physical memory


def prepare_timing_inputs(model_path: Path, profile: HardwareProfile, calibration: CalibrationSet | None,
                          target: Path, specs: list[InputSpec] | None = None,
                          given: Sequence[InputSpec] = ()) -> Path:
    """One feed dict for the timed loop, at the concrete shapes :func:`edgeopt.models.inputs.resolve_shapes`
    decides (``specs``: the model's inputs, ``given``: ``--input`` shapes; then the profile's
    ``bench.input_shapes``, the calibration samples' shape, ``bench.batch_size`` for the batch dim).

    The first calibration sample when it has those shapes, else seeded random data inside each input's
    domain.  An unresolved symbolic dimension raises ConfigError (exit 2): a guessed shape is never timed.
    """
    model = onnx.load(str(model_path), load_external_data=False)
    specs = specs or input_specs(model)
    samples = calibration.samples if calibration is not None else ()
    resolved = resolve_shapes(specs, given=given, profile_shapes=profile.bench.input_shapes, samples=samples,
                              batch_size=profile.bench.batch_size, where=str(model_path),
                              max_input_mb=profile.bench.max_input_mb)
    shapes = {r.name: r.shape for r in resolved}
    feeds: dict[str, np.ndarray] | None = None
    if samples:
        sample = samples[0]
        if set(sample) == set(shapes) and all(tuple(sample[n].shape) == shapes[n] for n in shapes):
            feeds = {name: np.require(value, requirements="C") for name, value in sample.items()}  # keeps rank 0
    if feeds is None:
        feeds = synthetic_feeds([r.spec() for r in resolved], model, seed=0, max_input_mb=profile.bench.max_input_mb,
                                where=str(model_path))
    return write_npz_atomic(target, feeds)


def measurement_key(variant: Variant, profile: HardwareProfile, reference_sha: str | None,
                    session: dict[str, Any] | None = None) -> str:
    """What a stored measurement must match to be reused: the variant's bytes, the profile's identity,
    runtime and bench settings (not its budgets: changing a budget re-judges, it does not re-measure),
    the reference inputs and the edgeopt version."""
    settings = profile.model_dump(mode="json", include={"name", "identity", "runtime", "bench"})
    runtime = {k: v for k, v in (session or {}).items() if k not in ("cache_dir",)}
    return sha256_json({"variant": variant.sha256, "profile": settings, "reference": reference_sha,
                        "runtime": runtime, "edgeopt": __version__})


def session_settings(profile: HardwareProfile, backend: str | None = None, precision: str | None = None,
                     input_shapes: dict[str, list[int]] | None = None, cache_dir: Path | None = None,
                     variant_kind: str | None = None) -> dict[str, Any]:
    """The runner settings the worker's job carries for one (profile, backend, precision) row: the backend's
    own typed settings (``edgeopt.backends.settings_for``) as the job's ``session`` dict."""
    return settings_for(profile, backend, precision, input_shapes=input_shapes, cache_dir=cache_dir,
                        variant_kind=variant_kind).to_dict()


def planned_session(profile: HardwareProfile, timing_inputs: Path, work_dir: Path, backend: str | None = None,
                    precision: str | None = None, variant_kind: str | None = None) -> dict[str, Any]:
    """The runner settings a measurement of these timing inputs in ``work_dir`` will use."""
    with np.load(timing_inputs, allow_pickle=False) as feeds:
        shapes = {name: list(feeds[name].shape) for name in feeds.files}
    cache = cache_folder(backend or profile.runtime.backend)
    return session_settings(profile, backend, precision, shapes, Path(work_dir) / cache, variant_kind)


@dataclass(frozen=True)
class WorkerRun:
    """What came back from one worker process."""

    returncode: int
    stderr_tail: str
    timed_out: bool
    result: dict[str, Any] | None  # its result document, None when there is none or it does not parse


def worker_memory_cap(profile: HardwareProfile) -> tuple[float, str]:
    """The worker's resident-memory cap in MiB and where it comes from (``bench.worker_max_rss_mb``, else a
    share of this host's physical memory)."""
    if profile.bench.worker_max_rss_mb is not None:
        return float(profile.bench.worker_max_rss_mb), "bench.worker_max_rss_mb"
    total = psutil.virtual_memory().total / 2**20
    return DEFAULT_RSS_SHARE * total, f"bench.worker_max_rss_mb unset: {DEFAULT_RSS_SHARE:.0%} of {total:.0f} MiB"


#: Called with each ``{"n": ..., "ci_rel": ...}`` progress record of a worker (from its reader thread).
OnProgress = Callable[[dict[str, Any]], None]
PROGRESS_PREFIX = '{"progress"'  # a worker's progress line (edgeopt.measure.worker.report_progress)


def run_worker(module: str, job: dict[str, Any], timeout_s: float, *, memory_cap: tuple[float, str] | None = None,
               outputs: Sequence[Path] = (), owned: Sequence[Path] = (),
               on_progress: OnProgress | None = None) -> WorkerRun:
    """Run ``python -m module JOB`` in its own process group with the package importable; kill the group
    after ``timeout_s``, or when this process is interrupted or fails while it waits.

    The job (with ``result_path`` and the ``lifeline`` added) and the result live in a private scratch
    folder that is removed afterwards, with the temporaries of interrupted atomic writes of ``outputs``.
    The lifeline tells the worker this process's pid, its deadline, its memory cap (MiB, source) and what to
    remove if this process dies first: the scratch folder, ``owned`` paths, the write temporaries and this
    process's run-folder locks.  A worker that had no room to write a file (a full disk) makes this raise
    that OSError, naming the file.  Two reader threads drain stdout and stderr while the worker runs; with
    ``on_progress`` the job gets ``"progress": true`` and each progress line of stdout goes to it (an error in
    the callback is ignored: a display never stops a measurement), the other lines stay for ``read_no_room``."""
    scratch = Path(tempfile.mkdtemp(prefix="edgeopt-worker-"))
    result_path = scratch / "result.json"
    cap, cap_source = memory_cap or (None, None)
    job = {**job, "result_path": str(result_path), "lifeline": {
        "parent_pid": os.getpid(), "deadline": time.time() + timeout_s + DEADLINE_GRACE_S, "timeout_s": timeout_s,
        "max_rss_mb": cap, "max_rss_source": cap_source, "remove": [str(scratch), *map(str, owned)],
        "atomic_targets": [str(p) for p in outputs], "locks": [str(p) for p in held_locks()]}}
    if on_progress is not None:
        job["progress"] = True
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    process: subprocess.Popen[str] | None = None
    readers: list[threading.Thread] = []
    try:
        write_json_atomic(scratch / "job.json", job)
        process = subprocess.Popen([sys.executable, "-m", module, str(scratch / "job.json")],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                   start_new_session=True)
        stdout: list[str] = []
        stderr: list[str] = []
        assert process.stdout is not None and process.stderr is not None
        readers = [threading.Thread(target=_read_stdout, args=(process.stdout, stdout, on_progress), daemon=True),
                   threading.Thread(target=_read_all, args=(process.stderr, stderr), daemon=True)]
        for reader in readers:
            reader.start()
        try:
            process.wait(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.wait()
            timed_out = True
        for reader in readers:  # the pipes close when the worker's group is gone
            reader.join()
        result: dict[str, Any] | None = None
        with contextlib.suppress(OSError, ValueError):
            document = read_json(result_path)
            result = document if isinstance(document, dict) else None
        unwritable = read_no_room("".join(stdout)) if result is None else None
        if unwritable is not None:  # a full disk is no failure of the variant: the command stops, naming the file
            raise unwritable
        return WorkerRun(process.returncode, "".join(stderr)[-STDERR_TAIL_CHARS:], timed_out, result)
    except BaseException:  # SIGINT, SIGTERM (the CLI raises it as an exception) or our own error: the worker goes
        if process is not None and process.returncode is None:
            _kill_group(process)
            with contextlib.suppress(Exception):
                process.wait(timeout=10)
        for reader in readers:
            reader.join(timeout=10)
        raise
    finally:
        if process is not None:
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
        remove_worker_files([scratch], outputs)


def _read_stdout(stream: IO[str], lines: list[str], on_progress: OnProgress | None) -> None:
    """Keep the worker's stdout lines, except its progress lines, which go to ``on_progress``."""
    for line in stream:
        if on_progress is not None and line.startswith(PROGRESS_PREFIX):
            with contextlib.suppress(Exception):
                on_progress(json.loads(line)["progress"])
            continue
        lines.append(line)


def _read_all(stream: IO[str], chunks: list[str]) -> None:
    chunks.append(stream.read())


def _kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL the worker's process group (it leads its own session), or the worker alone where there are none."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()


def _failure_kind(recorded: Any) -> FailureKind:
    """A worker's recorded failure kind, or ``backend`` for one this version does not know."""
    return recorded if recorded in get_args(FailureKind) else "backend"  # type: ignore[no-any-return]


def _signal_name(returncode: int) -> str:
    with contextlib.suppress(ValueError):
        return signal.Signals(-returncode).name
    return f"signal {-returncode}"


def measure_variant(
    variant: Variant,
    profile: HardwareProfile,
    work_dir: Path,
    *,
    timing_inputs: Path,
    reference_inputs: Path | None = None,
    reference_sha: str | None = None,
    proxy: bool = False,
    stem: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
    extra_references: dict[str, Path] | None = None,
    model_reference: str | None = None,
    on_progress: OnProgress | None = None,
) -> Measurement:
    """Measure ``variant`` on ``profile`` in a fresh worker process; failures come back as values.

    ``backend`` (default: the profile's) and, for OpenVINO, ``precision`` choose the runtime row.
    ``extra_references`` (name → inputs .npz, e.g. shifted eval sets) are run after the reference
    inputs; their outputs go to ``<stem>.<name>.outputs.npz`` beside the measurement
    (:func:`extra_outputs_file`).  ``on_progress`` gets the worker's live sample count and CI width
    (:func:`run_worker`).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or result_stem(variant.name, profile.name)
    host = host_fingerprint()
    identity = match_identity(profile, host)
    session = planned_session(profile, Path(timing_inputs), work_dir, backend, precision, variant.kind)
    bench = profile.bench.model_dump(mode="json")
    bench["min_iterations"] = max(bench["min_iterations"], budget_sample_floor(profile))
    outputs_file = f"{stem}.outputs.npz"
    # a torch row runs the PyTorch model itself: the worker builds it from the factory reference
    model_path = model_reference if model_reference else str(variant.path.resolve())
    extra = [(Path(p).resolve(), (work_dir / extra_outputs_file(stem, name)).resolve())
             for name, p in (extra_references or {}).items()]
    outputs = [(work_dir / outputs_file).resolve(), *(target for _, target in extra)]
    job = {"model_path": model_path, "session": session, "bench": bench,
           "inputs_path": str(Path(timing_inputs).resolve()),
           "reference_path": str(Path(reference_inputs).resolve()) if reference_inputs else None,
           "outputs_path": str(outputs[0]),
           "extra_references": [{"path": str(source), "outputs_path": str(target)} for source, target in extra]}
    base: dict[str, Any] = {
        "key": measurement_key(variant, profile, reference_sha, session),
        "variant": {"name": variant.name, "path": str(variant.path), "precision": variant.precision,
                    "sha256": variant.sha256, "size_bytes": variant.size_bytes, "provenance": variant.provenance},
        "profile": {"name": profile.name, "digest": profile.digest(), "settings": profile.model_dump(mode="json")},
        "host": host.to_dict(), "host_matches": identity.matches, "mismatch_reasons": list(identity.reasons),
        "proxy": proxy, "expected_fast": profile.expects_fast(precision or variant.precision, host), "session": session,
        "bench": bench, "created_at": now_iso(), "commit": git_commit(Path(__file__).parent),
        "input_shapes": _feed_shapes(Path(timing_inputs)),
    }
    if not is_available(session["backend"]):
        failure = Failure(kind="unavailable", message=f"{session['backend']}: {availability()[session['backend']]}")
        return Measurement(status="failed", failure=failure, **base)
    run = run_worker("edgeopt.measure.worker", job, profile.bench.worker_timeout_s,
                     memory_cap=worker_memory_cap(profile), outputs=outputs, on_progress=on_progress)
    returncode, tail, result = run.returncode, run.stderr_tail, run.result
    if run.timed_out:
        failure = Failure(kind="timeout", message=f"worker exceeded worker_timeout_s={profile.bench.worker_timeout_s:g}"
                          f" on {variant.name}", returncode=returncode, stderr_tail=tail)
        return Measurement(status="failed", failure=failure, **base)
    if returncode < 0:
        failure = Failure(kind="crash", message=f"worker crashed ({_signal_name(returncode)}) on "
                          f"{variant.name}", returncode=returncode, stderr_tail=tail)
        return Measurement(status="failed", failure=failure, **base)
    if result is None or result.get("status") != "ok":
        message = (result or {}).get("message") or f"worker exited {returncode} without a result"
        # the worker records the kind the backend's exception declares (edgeopt.errors.failure_kind)
        kind = _failure_kind(result.get("failure_kind")) if result else "no-result"
        failure = Failure(kind=kind, message=f"{variant.name} on {profile.name}: {message}",
                          returncode=returncode, stderr_tail=tail or (result or {}).get("traceback", ""))
        return Measurement(status="failed", failure=failure, **base)
    latency = Latency.from_samples(result["samples_ns"], result["stop_reason"], result["loop_wall_ns"],
                                   profile.bench.confidence)
    versions = {"edgeopt": __version__, **result["versions"]}
    stability = stability_report(result["samples_ns"], result.get("system")) if len(result["samples_ns"]) > 1 else None
    return Measurement(
        status="ok", latency=latency, load_ms=result["load_ms"], first_inference_ms=result["first_inference_ms"],
        memory=result["memory"], providers_active=result["providers_active"], versions=versions,
        runtime_details=result.get("runtime_details", {}),
        providers_requested=result["providers_requested"], warmup_iterations=result["warmup_iterations"],
        reference_count=result["reference_count"],
        outputs_file=outputs_file if reference_inputs else None, output_names=result["output_names"],
        torch_imported=result["torch_imported"], stability=stability.to_dict() if stability else None,
        **{**base, "host": result["host"]},
    )


def _feed_shapes(path: Path) -> dict[str, list[int]]:
    with np.load(path, allow_pickle=False) as feeds:
        return {name: list(feeds[name].shape) for name in feeds.files}


def extra_outputs_file(stem: str, name: str) -> str:
    """File name (in the measurement folder) of the outputs of the extra reference set ``name``."""
    return f"{stem}.{name}.outputs.npz"
