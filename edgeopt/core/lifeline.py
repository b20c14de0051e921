"""A worker process's lifeline to its parent: parent death, deadline, memory cap, and the files to remove.

The launcher (``edgeopt.measure.launcher.run_worker``) writes a ``lifeline`` into every worker job; the
worker starts :class:`Lifeline` from it before it does anything else.  A watchdog thread, which runs while
the main thread sits in a native call that released the GIL (onnxruntime's ``run`` does), wakes every
:data:`POLL_S` (:data:`NEAR_CAP_POLL_S` near the memory cap) and at once on a signal: SIGTERM, SIGXCPU
(RLIMIT_CPU, the backstop for a watchdog that cannot run) and, on Linux, the parent-death signal
(``PR_SET_PDEATHSIG``).  Elsewhere the change of ``os.getppid()`` is seen at the next wake-up.

- Parent gone: remove what the parent would have removed (the scratch folder with the job and the result,
  the temporaries of atomic writes, the parent's run-folder locks) and exit.
- Peak resident set (``VmHWM``) past the cap: a ``memory`` failure naming the cap.
- Deadline passed or CPU time used up: a ``timeout`` failure.  SIGTERM: a ``crash`` failure.

A failure is written as the worker's result for the parent; then ``os._exit``, so no other thread runs
another line.  Every file the worker writes is written under :data:`WRITE_LOCK`, which the watchdog takes
first: it neither leaves nor removes a half-written file.  A worker with no room to write (a full disk,
:data:`NO_ROOM`) says so on stdout (:func:`no_room`), and the parent raises that OSError
(:func:`read_no_room`).  Standard library and psutil only.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import select
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

from edgeopt.core.fileio import atomic_temporaries, dumps_json, write_text_atomic
from edgeopt.core.run_lock import remove_if_abandoned

__all__ = ["EXIT_ABANDONED", "EXIT_ERROR", "NO_ROOM", "WRITE_LOCK", "Lifeline", "no_room",
           "out_of_memory", "read_no_room", "remove_worker_files", "resident_set"]

EXIT_ERROR = 3  # an error result was written: a caught exception, the memory cap, the deadline, a SIGTERM
EXIT_ABANDONED = 125  # the parent is gone: the worker removed its files and left (nobody reads this code)
LOCK_RELEASE_WAIT_S = 2.0  # how long an orphaned worker waits for its dead parent's run lock to come free
POLL_S = 0.25  # the watchdog looks at the parent, the clock and the memory this often ...
NEAR_CAP_POLL_S = 0.02  # ... and this often while the resident set is above NEAR_CAP of the cap
NEAR_CAP = 0.5
WRITE_WAIT_S = 5.0  # the watchdog waits this long for a file write in progress before it cleans up anyway
CPU_GRACE_S = 10  # RLIMIT_CPU: SIGXCPU (the watchdog's cue) at the soft limit, SIGKILL this much later
PDEATH_SIGNAL = getattr(signal, "SIGUSR1", None)  # not SIGTERM: the exit of the parent *thread* sends it too
_PR_SET_PDEATHSIG = 1
_OUT_OF_MEMORY = ("bad_alloc", "bad allocation", "Failed to allocate memory", "Unable to allocate")
WRITE_LOCK = threading.Lock()  # held while the worker writes a file
NO_ROOM = frozenset({errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)})  # a full file system


def _proc_status(*fields: str) -> list[int] | None:
    """``fields`` of /proc/self/status in bytes (Linux), else None."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            found = {k: int(v.split()[0]) * 1024 for k, _, v in (line.partition(":") for line in status)
                     if k in fields}
    except OSError:
        return None
    return [found[f] for f in fields] if len(found) == len(fields) else None


def resident_set(process: psutil.Process) -> tuple[int, int]:
    """(peak, current) resident set of this process in bytes.

    On Linux the peak is ``VmHWM`` from /proc/self/status: the high-water mark of this process's own
    address space.  (``ru_maxrss`` is not used there: Linux carries it across ``exec``, so a worker
    started from a large parent would report the parent's size.)  Elsewhere ``ru_maxrss`` (macOS, Unix)
    or psutil's peak working set (Windows).
    """
    status = _proc_status("VmHWM", "VmRSS")
    if status is not None:
        return status[0], status[1]
    current = process.memory_info()
    try:
        import resource

        scale = 1 if sys.platform == "darwin" else 1024
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale, int(current.rss)
    except ImportError:
        return int(getattr(current, "peak_wset", current.rss)), int(current.rss)


def remove_worker_files(remove: Iterable[str | Path], atomic_targets: Iterable[str | Path]) -> None:
    """Remove a worker's scratch files and folders (``remove``) and the temporaries of its atomic writes."""
    for path in map(Path, remove):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    for target in atomic_targets:
        for temporary in atomic_temporaries(target):
            with contextlib.suppress(OSError):
                temporary.unlink()


def no_room(error: OSError, path: Path | str) -> str:
    """A worker that cannot write a file (``path`` unless the error names one) says so on stdout, a pipe that
    needs no disk, as one JSON line for :func:`read_no_room`; the parent raises it as that OSError."""
    return json.dumps({"status": "unwritable", "path": str(error.filename or path), "errno": error.errno,
                       "strerror": error.strerror or str(error)})


def read_no_room(stdout: str) -> OSError | None:
    """The OSError a worker reported with :func:`no_room` (its last line of stdout), else None."""
    lines = stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    if not isinstance(report, dict) or report.get("status") != "unwritable":
        return None
    return OSError(report.get("errno"), report.get("strerror"), report.get("path"))


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a failed allocation (Python's MemoryError, the runtimes' bad_alloc messages)."""
    return isinstance(error, MemoryError) or any(text in str(error) for text in _OUT_OF_MEMORY)


def _ignore(signum: int, frame: Any) -> None:
    """Python's part of a lifeline signal: nothing (its C handler has already woken the watchdog)."""


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"status": "error", "error_type": "Lifeline", "message": message, "failure_kind": kind, "traceback": ""}


class Lifeline:
    """The worker's side of the job's ``lifeline``: ``parent_pid``, ``deadline`` (epoch seconds),
    ``timeout_s``, ``max_rss_mb`` and ``max_rss_source`` (what set the cap), and the files the parent would
    remove: ``remove`` (its scratch folder), ``atomic_targets`` (files whose atomic-write temporaries may be
    left) and ``locks`` (its run-folder locks)."""

    def __init__(self, spec: dict[str, Any], result_path: Path) -> None:
        self.parent_pid = int(spec["parent_pid"])
        self.deadline = time.monotonic() + float(spec["deadline"]) - time.time()
        self.timeout_s = float(spec.get("timeout_s") or 0)
        self.cap_bytes = int(float(spec["max_rss_mb"]) * 2**20) if spec.get("max_rss_mb") else None
        self.cap_source = str(spec.get("max_rss_source") or "bench.worker_max_rss_mb")
        self.remove = [str(p) for p in spec.get("remove", [])]
        self.atomic_targets = [str(p) for p in spec.get("atomic_targets", [])]
        self.locks = [str(p) for p in spec.get("locks", [])]
        self.result_path = result_path
        self.finished = False  # set under WRITE_LOCK once the worker's own result is written
        self.cpu_limit_s: int | None = None
        self._process = psutil.Process()
        self._wake: int | None = None

    @classmethod
    def start(cls, spec: dict[str, Any], result_path: Path) -> Lifeline:
        """Arm the signals and limits (from the main thread, before the runtime starts) and start the watchdog."""
        lifeline = cls(spec, result_path)
        lifeline._arm()
        threading.Thread(target=lifeline._watch, name="edgeopt-lifeline", daemon=True).start()
        return lifeline

    def _arm(self) -> None:
        signals = [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGXCPU", None), PDEATH_SIGNAL)
                   if s is not None]
        if os.name != "nt" and threading.current_thread() is threading.main_thread():
            self._wake, write_end = os.pipe()
            os.set_blocking(write_end, False)
            for number in signals:
                signal.signal(number, _ignore)
            signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)  # whichever thread gets one, we wake
        if sys.platform.startswith("linux") and PDEATH_SIGNAL is not None:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(PDEATH_SIGNAL), 0, 0, 0)
        self.cpu_limit_s = _limit_cpu(self.deadline - time.monotonic())
        if os.getppid() != self.parent_pid:  # the parent died before the signal was armed
            self._abandon()

    def _wait(self, seconds: float) -> set[int]:
        """Sleep up to ``seconds``; the signals that arrived meanwhile."""
        if self._wake is None:
            time.sleep(seconds)
            return set()
        ready, _, _ = select.select([self._wake], [], [], seconds)
        return set(os.read(self._wake, 512)) if ready else set()

    def _watch(self) -> None:
        interval = POLL_S
        while not self.finished:
            received = self._wait(interval)
            if os.getppid() != self.parent_pid:
                self._abandon()
            if getattr(signal, "SIGTERM", None) in received:
                self._fail("crash", "worker stopped by SIGTERM")
            peak, current = resident_set(self._process)
            if self.cap_bytes is not None and peak > self.cap_bytes:
                self._fail("memory", self.memory_message(peak))
            if getattr(signal, "SIGXCPU", None) in received:
                self._fail("timeout", f"worker used its CPU-time limit (RLIMIT_CPU {self.cpu_limit_s} s, from "
                                      f"worker_timeout_s={self.timeout_s:g}) and stopped itself")
            if time.monotonic() >= self.deadline:
                self._fail("timeout", f"worker ran past worker_timeout_s={self.timeout_s:g} and stopped itself")
            near = self.cap_bytes is not None and current > NEAR_CAP * self.cap_bytes
            interval = NEAR_CAP_POLL_S if near else POLL_S

    def cap_text(self) -> str:
        """The memory cap and where it comes from, e.g. ``300 MiB (bench.worker_max_rss_mb)``."""
        return f"{self.cap_bytes / 2**20:.0f} MiB ({self.cap_source})" if self.cap_bytes else "none"

    def memory_message(self, peak: int) -> str:
        return f"worker peak resident memory {peak / 2**20:.0f} MiB exceeded its memory cap of {self.cap_text()}"

    def over_cap(self) -> dict[str, Any] | None:
        """The ``memory`` failure result when the peak resident set passed the cap (checked before an ok result:
        a spike between two wake-ups counts too)."""
        peak, _ = resident_set(self._process)
        if self.cap_bytes is None or peak <= self.cap_bytes:
            return None
        return _error("memory", self.memory_message(peak))

    def _fail(self, kind: str, message: str) -> None:
        """Write ``message`` as a ``kind`` failure for the parent, remove write temporaries, exit."""
        taken = WRITE_LOCK.acquire(timeout=WRITE_WAIT_S)  # held for good: the process ends below
        if self.finished:  # the worker's own result is written: it exits on its own
            if taken:
                WRITE_LOCK.release()
            return
        with contextlib.suppress(OSError):
            write_text_atomic(self.result_path, dumps_json(_error(kind, message), indent=None))
        remove_worker_files([], self.atomic_targets)
        os._exit(EXIT_ERROR)

    def _abandon(self) -> None:
        """The parent is gone: remove what it would have removed, and its run-folder locks; exit."""
        WRITE_LOCK.acquire(timeout=WRITE_WAIT_S)
        remove_worker_files([*self.remove, self.result_path], [*self.atomic_targets, self.result_path])
        for lock in self.locks:
            # the dead parent's flock can still be held for a moment after the worker sees it gone (seen once in a
            # full test run; e.g. a child forked but not yet exec'd shares the open file): look again for up to
            # LOCK_RELEASE_WAIT_S; a lock another command has taken is never removed
            patience = time.monotonic() + LOCK_RELEASE_WAIT_S
            with contextlib.suppress(OSError):
                while not remove_if_abandoned(lock, self.parent_pid) and os.path.exists(lock) \
                        and time.monotonic() < patience:
                    time.sleep(0.05)
        os._exit(EXIT_ABANDONED)


def _limit_cpu(seconds: float) -> int | None:
    """RLIMIT_CPU as a backstop for a watchdog that cannot run: the CPU time every usable core could spend in
    ``seconds`` more; returns the soft limit in seconds (None where there are no rlimits)."""
    try:
        import resource
    except ImportError:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime + max(seconds, 1.0) * cores) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    limit = soft + CPU_GRACE_S if hard == resource.RLIM_INFINITY else min(hard, soft + CPU_GRACE_S)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (min(soft, limit), limit))
    except (ValueError, OSError):
        return None
    return min(soft, limit)
