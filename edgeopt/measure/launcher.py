"""Parent side of a worker process: the timing inputs, the runner settings and reuse key of a measurement, and
:func:`run_worker`, which runs one job in an isolated, killable process.

Each job runs in a fresh ``python -m <worker module>`` process with a timeout (``edgeopt.measure.cell`` turns its
result into a ``Measurement``).  The worker's job and result live in a private scratch folder, never in the
output folder; the worker's process group is killed when the parent is interrupted (SIGINT, SIGTERM) or fails,
and the job's lifeline (``edgeopt.core.lifeline``) makes the worker follow its parent when the parent is killed
outright.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from typing import IO, Any

import numpy as np
import onnx
import psutil

from edgeopt import __version__
from edgeopt.backends import cache_folder, settings_for
from edgeopt.core.fileio import read_json, sha256_json, write_json_atomic, write_npz_atomic
from edgeopt.core.lifeline import read_no_room, remove_worker_files
from edgeopt.core.run_lock import held_locks
from edgeopt.measure.jobs import AbJob, WorkerJob
from edgeopt.models.calibration import CalibrationSet
from edgeopt.models.graph import input_specs
from edgeopt.models.input_spec import InputSpec
from edgeopt.models.inputs import resolve_shapes, synthetic_feeds
from edgeopt.models.variants import Variant
from edgeopt.profiles.schema import HardwareProfile

STDERR_TAIL_CHARS = 2000
Job = WorkerJob | AbJob
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


def run_worker(module: str, job: Job, timeout_s: float, *, memory_cap: tuple[float, str] | None = None,
               outputs: Sequence[Path] = (), owned: Sequence[Path] = (),
               on_progress: OnProgress | None = None) -> WorkerRun:
    """Run ``python -m module JOB`` in its own process group with the package importable; kill the group
    after ``timeout_s``, or when this process is interrupted or fails while it waits.

    The job (with its ``result_path`` and ``lifeline`` set) and the result live in a private scratch
    folder that is removed afterwards, with the temporaries of interrupted atomic writes of ``outputs``.
    The lifeline tells the worker this process's pid, its deadline, its memory cap (MiB, source) and what to
    remove if this process dies first: the scratch folder, ``owned`` paths, the write temporaries and this
    process's run-folder locks.  A worker that had no room to write a file (a full disk) makes this raise
    that OSError, naming the file.  Two reader threads drain stdout and stderr while the worker runs; with
    ``on_progress`` the job gets ``progress`` set and each progress line of stdout goes to it (an error in
    the callback is ignored: a display never stops a measurement), the other lines stay for ``read_no_room``."""
    scratch = Path(tempfile.mkdtemp(prefix="edgeopt-worker-"))
    result_path = scratch / "result.json"
    cap, cap_source = memory_cap or (None, None)
    job = dataclasses.replace(job, result_path=str(result_path), progress=on_progress is not None, lifeline={
        "parent_pid": os.getpid(), "deadline": time.time() + timeout_s + DEADLINE_GRACE_S, "timeout_s": timeout_s,
        "max_rss_mb": cap, "max_rss_source": cap_source, "remove": [str(scratch), *map(str, owned)],
        "atomic_targets": [str(p) for p in outputs], "locks": [str(p) for p in held_locks()]})
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    process: subprocess.Popen[str] | None = None
    readers: list[threading.Thread] = []
    try:
        write_json_atomic(scratch / "job.json", job.to_dict())
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
