"""The isolated measurement worker: ``python -m edgeopt.measure.worker JOB.json``.

It imports only what a deployed program would (numpy, psutil, the backend's runtime and
edgeopt's light stats/host modules; never torch, onnx, pydantic or yaml: ``tests/test_layers.py`` runs it on
every installed runner under ``python -X importtime``), activates one runner of the profile's
backend with the profile's settings (the ONNX Runtime runner checks that the execution
providers asked for are the ones active), warms up, and times the bare backend call alone
with ``perf_counter_ns`` until the confidence interval of the stop percentile is as tight as
asked (never below the sample count a CI needs) or the time cap is reached.  It records load
time, first-inference time, peak RSS and the RSS the model added over the empty worker, and writes
one JSON result atomically.  The reference inputs (fidelity, eval set, shifted sets) run right after the
first inference and count as warm-up calls: for a 100 ms model 16 references are 1.6 s of warm-up that
would otherwise be spent twice; the timed path still gets its own warm-up (``warmup_seconds``, >= 1 call).
The system state (load average, governors, throttle counters, Jetson power mode; ``edgeopt.core.stability``) is probed
before the model is loaded, and cheap counters are read right before and after the timed loop.

A job from the launcher carries a ``lifeline`` (``edgeopt.core.lifeline``): the worker dies with its parent,
stops itself at its deadline, and records a ``memory`` failure when its peak resident set passes its cap.
A job with ``progress`` set makes the timed loop print ``{"progress": {"n": ..., "ci_rel": ...}}`` lines on
stdout at its stop-rule checkpoints (outside the timed call, at most 4 a second) for the parent's display.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from edgeopt.backends import Runner, runner_for
from edgeopt.core.fileio import dumps_json, write_npz_atomic, write_text_atomic
from edgeopt.core.lifeline import EXIT_ERROR, NO_ROOM, WRITE_LOCK, Lifeline, no_room, out_of_memory, resident_set
from edgeopt.core.stability import probe_system, snapshot
from edgeopt.core.stats import PERCENTILES, ci_half_width_rel, min_samples_for_ci
from edgeopt.errors import failure_kind, first_line
from edgeopt.measure.jobs import AbJob, ReferenceSet, TimingRule, WorkerJob

PROGRESS_INTERVAL_NS = 250_000_000  # at most 4 progress lines a second (a job with progress set)


def _write_result(path: Path, document: dict[str, Any]) -> None:
    write_text_atomic(path, dumps_json(document, indent=None))


def load_feeds(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def warm_up(call: Callable[[], Any], iterations: int, seconds: float, cap_seconds: float) -> int:
    """Untimed calls until both ``iterations`` and ``seconds`` are reached, or, after one call, the later of
    ``cap_seconds`` (the profile's ``max_seconds``: a slow model's warm-up count does not outlast its timed loop) and
    ``seconds`` (a warm-up time asked for is kept); returns how many ran."""
    started = time.perf_counter_ns()
    deadline, cap = started + int(seconds * 1e9), started + int(max(cap_seconds, seconds) * 1e9)
    count = 0
    while count < iterations or time.perf_counter_ns() < deadline:
        call()
        count += 1
        if time.perf_counter_ns() >= cap:
            break
    return count


def report_progress(n: int, ci_rel: float | None, **more: int) -> None:
    """One progress line on stdout for the parent's display: ``{"progress": {"n": ..., "ci_rel": ..., **more}}``."""
    print(json.dumps({"progress": {"n": n, "ci_rel": ci_rel, **more}}), flush=True)


def timed_loop(call: Callable[[], Any], rule: TimingRule,
               report: Callable[[int, float | None], None] | None = None) -> tuple[list[int], str]:
    """Time ``call()`` until the stop rule holds; return raw samples (ns) and why it stopped: ``time_cap`` once
    ``max_seconds`` have passed and ``sample_floor`` samples are in (checked after every sample: the profile bounds
    every row), else, from ``max(min_iterations, the stop percentile's CI minimum)`` samples on, at checkpoints,
    ``max_iterations`` or ``ci_target``.

    ``report(n, ci_rel)`` (a job with ``progress`` set: :func:`report_progress`) is called only at the stop
    rule's checkpoints, outside the timed interval, at most every :data:`PROGRESS_INTERVAL_NS` (the first
    checkpoint always)."""
    q = PERCENTILES[rule.stop_percentile]
    confidence = float(rule.confidence)
    target = float(rule.target_ci_rel)
    needed = max(int(rule.min_iterations), min_samples_for_ci(q, confidence))
    max_iterations = max(int(rule.max_iterations), needed)
    cap_ns = int(float(rule.max_seconds) * 1e9)
    floor = max(1, int(rule.sample_floor))
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    next_check = needed
    started = clock()
    reported = started - PROGRESS_INTERVAL_NS
    while True:
        t0 = clock()
        call()
        t1 = clock()
        append(t1 - t0)
        if t1 - started >= cap_ns and len(samples) >= floor:
            return samples, "time_cap"
        if len(samples) < next_check:
            continue
        n = len(samples)
        if n >= max_iterations:
            return samples, "max_iterations"
        rel = ci_half_width_rel(np.sort(np.asarray(samples, dtype=np.float64)), q, confidence)
        if rel is not None and rel <= target:
            return samples, "ci_target"
        next_check = min(n + max(10, n // 10), max_iterations)
        if report is not None and t1 - reported >= PROGRESS_INTERVAL_NS:
            report(n, rel)
            reported = clock()


def left_out(values: list[np.ndarray]) -> str | None:
    """Why one output, over the reference samples, cannot be kept as one stacked numeric array (None: it can):
    ``string`` (text tensors), ``non-tensor`` (a sequence or map: ZipMap's class scores), ``shape varies``
    (a data-dependent shape, NonZero's).  What is left out is named in the outputs file (``why<i>``), never
    pickled."""
    if any(v.dtype.kind in "OUSV" for v in values):
        text = all(v.dtype.kind in "US" or (v.dtype.kind == "O" and v.ndim > 0
                                            and all(isinstance(x, str | bytes) for x in v.flat)) for v in values)
        return "string" if text else "non-tensor"
    if len({v.shape for v in values}) > 1:
        return "shape varies"
    return None


def _run_reference(runner: Runner, references: ReferenceSet) -> int:
    inputs = load_feeds(references.path)
    out_path = references.outputs_path
    count = len(next(iter(inputs.values())))
    collected: list[list[np.ndarray]] = []
    for index in range(count):
        outputs = runner.infer({name: np.asarray(value[index]) for name, value in inputs.items()})
        collected = collected or [[] for _ in outputs]
        for slot, value in zip(collected, outputs, strict=True):
            slot.append(value)
    arrays = {}
    for i, values in enumerate(collected):
        why = left_out(values)
        if why is None:
            arrays[f"out{i}"] = np.stack(values)
        else:  # the reason, as text (no object array: the file is read without pickle)
            arrays[f"why{i}"] = np.array(why)
    with WRITE_LOCK:
        try:
            write_npz_atomic(Path(out_path), arrays)
        except OSError as error:  # a write into an open file names none: name the one meant
            raise OSError(error.errno, error.strerror, error.filename or out_path) from error
    return count


def _run_references(runner: Runner, job: WorkerJob) -> tuple[int, int]:
    """Run the reference inputs and every extra set (e.g. shifted eval inputs), each to its outputs file;
    returns the count of the first and the calls made in all."""
    count = calls = 0
    if job.reference is not None:
        count = calls = _run_reference(runner, job.reference)
    for extra in job.extra_references:
        calls += _run_reference(runner, extra)
    return count, calls


def measure(job: WorkerJob) -> dict[str, Any]:
    assert job.inputs_path is not None and job.timing is not None
    process = psutil.Process()
    system_before = probe_system()  # before the model loads: the load average is the machine's, not ours
    runner = runner_for(job.session["backend"], job.model_path, job.session)
    baseline_rss = process.memory_info().rss
    t0 = time.perf_counter_ns()
    with runner:
        load_ns = time.perf_counter_ns() - t0
        feeds = load_feeds(job.inputs_path)
        runner.check_feeds(feeds)
        call = runner.timed_call(feeds)
        t0 = time.perf_counter_ns()
        call()
        first_ns = time.perf_counter_ns() - t0
        rule = job.timing
        reference_count, reference_calls = _run_references(runner, job)  # the first part of the warm-up
        warmup_iterations = reference_calls + warm_up(call, max(1, int(rule.warmup_iterations) - reference_calls),
                                                      float(rule.warmup_seconds), float(rule.max_seconds))
        loop_start = snapshot()
        wall0 = time.perf_counter_ns()
        samples, stop_reason = timed_loop(call, rule, report_progress if job.progress else None)
        loop_wall_ns = time.perf_counter_ns() - wall0
        loop_end = snapshot()
        peak, _ = resident_set(process)  # the high-water mark over everything above (VmHWM on Linux)
        output_names = list(getattr(runner, "output_names", []))
        details = dict(runner.details)
    from edgeopt.core.host import host_fingerprint

    return {
        "status": "ok",
        "samples_ns": samples,
        "stop_reason": stop_reason,
        "loop_wall_ns": loop_wall_ns,
        "load_ms": load_ns / 1e6,
        "first_inference_ms": first_ns / 1e6,
        "warmup_iterations": warmup_iterations,
        "memory": {
            "baseline_rss_mb": baseline_rss / 2**20,
            "peak_rss_mb": peak / 2**20,
            "model_added_mb": max(0, peak - baseline_rss) / 2**20,
            "method": "peak RSS of the worker (VmHWM) minus its RSS after imports",
        },
        "runtime_details": {k: v for k, v in details.items() if k != "versions"},
        "providers_requested": details.get("providers_requested", []),
        "providers_active": details.get("providers_active", []),
        "output_names": output_names,
        "reference_count": reference_count,
        "system": {"before": system_before, "loop_start": loop_start, "loop_end": loop_end},
        "versions": {**details.get("versions", {}), "numpy": np.__version__, "python": sys.version.split()[0]},
        "host": host_fingerprint().to_dict(),
        "torch_imported": "torch" in sys.modules,
        "pid": os.getpid(),
    }


def outputs_only(job: WorkerJob) -> dict[str, Any]:
    """Run the reference inputs (and the extra sets) and nothing else: no warm-up, no timed loop.  What an
    accuracy emulation (``edgeopt.measure.emulation``) asks for; its result carries no latency."""
    runner = runner_for(job.session["backend"], job.model_path, job.session)
    with runner:
        reference_count, _ = _run_references(runner, job)
        output_names = list(getattr(runner, "output_names", []))
        details = dict(runner.details)
    from edgeopt.core.host import host_fingerprint

    return {"status": "ok", "output_names": output_names, "reference_count": reference_count,
            "providers_active": details.get("providers_active", []),
            "versions": {**details.get("versions", {}), "numpy": np.__version__, "python": sys.version.split()[0]},
            "host": host_fingerprint().to_dict(), "torch_imported": "torch" in sys.modules}


def work_of(job: WorkerJob) -> dict[str, Any]:
    """The job's work: a measurement, or (mode ``outputs``) the reference outputs alone."""
    return outputs_only(job) if job.mode == "outputs" else measure(job)


Job = WorkerJob | AbJob


def run_job(job: Job, work: Callable[[Any], dict[str, Any]]) -> int:
    """Run ``work`` on the job, under its lifeline when it has one (``edgeopt.core.lifeline``), and write
    its result (or the error, as data) atomically; returns the exit code.  No room to write a file (its
    outputs, its result) is no measurement failure but the parent's error: reported on stdout
    (``lifeline.no_room``)."""
    result_path = Path(job.result_path)
    lifeline = Lifeline.start(job.lifeline, result_path) if job.lifeline else None
    code, unwritable = 0, None
    try:
        result = work(job)
        over = lifeline.over_cap() if lifeline is not None else None
        if over is not None:
            result, code = over, EXIT_ERROR
    except Exception as error:  # noqa: BLE001 - every failure is reported to the parent as data
        if isinstance(error, OSError) and error.errno in NO_ROOM:  # named by now, else the outputs' folder
            unwritable = error if error.filename else OSError(error.errno, error.strerror,
                                                              str(Path(job.outputs_path or result_path).parent))
        message, kind = first_line(error)[:2000], failure_kind(error)
        if out_of_memory(error):
            kind = "memory"
            message += f" (an allocation failed; the worker's memory cap: {lifeline.cap_text()})" if lifeline else ""
        result, code = {"status": "error", "error_type": type(error).__name__, "message": message,
                        "failure_kind": kind, "traceback": traceback.format_exc()[-4000:]}, EXIT_ERROR
    with WRITE_LOCK:
        try:
            if unwritable is None:
                _write_result(result_path, result)
        except OSError as error:
            unwritable = error
        if unwritable is not None:
            print(no_room(unwritable, result_path), flush=True)
            code = EXIT_ERROR
        if lifeline is not None:
            lifeline.finished = True
    return code


def read_job(path: Path) -> dict[str, Any]:
    """The job file the launcher wrote (JSON)."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def main(argv: list[str]) -> int:
    return run_job(WorkerJob.from_dict(read_job(Path(argv[0]))), work_of)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
