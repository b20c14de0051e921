"""The interleaved A/B worker: ``python -m edgeopt.measure.ab_worker JOB.json``.

One process opens both runners (A = baseline, B = candidate), warms both up, then times the bare
backend calls (``perf_counter_ns`` around ``runner.timed_call(feeds)()`` only) in alternating blocks,
ABBA order: block pair ``i`` runs A then B when ``i`` is even, B then A when odd, and both blocks of a
pair carry block id ``i``.  A block is ``min(20, ceil(50 ms / t))`` calls (``t`` the slower model's
probe time).

Block pairs are grouped in **segments**.  Before each segment after the first, both runners are
closed and re-opened (in alternating order, with a seeded random-size allocation between the two
opens) and re-warmed: two sessions of one model in one process differ by up to ~1 % at p50 and ~5 %
at p95 on small models, from where their buffers landed, and a run with one session per arm carries
that luck into the ratio as if it were a real change.  Re-opening turns placement into a per-segment
random effect, and the bootstrap resamples whole segments (the segment id is the cluster id), so the
interval covers it.  A segment is long enough that re-opening costs at most ~20 % of the run.
With the job's ``progress`` set it prints a progress line (samples of both arms, segments) on stdout
between segments, untimed, at most 4 a second.

It stops when the segment-bootstrap intervals of the p50 and p95 ratios are tight (relative
half-width <= threshold / 3), or at the time cap, or at the iteration cap, never before ``min_segments``
segments, each arm has the samples a p95 interval needs, and ``min_blocks`` pairs.  It imports numpy,
psutil, the backend's runtime and edgeopt's numpy-only modules, never torch, and writes one JSON
result atomically.  Like the measurement worker it runs under its job's lifeline (``edgeopt.core.lifeline``,
started by ``worker.run_job``): it dies with its parent, keeps its own deadline and its memory cap.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.backends import runner_for
from edgeopt.backends.base import Feeds, Runner
from edgeopt.core.ratio_stats import bootstrap_ratio
from edgeopt.measure.jobs import AbJob
from edgeopt.measure.worker import PROGRESS_INTERVAL_NS, load_feeds, read_job, report_progress, run_job

REWARM_CALLS = 5  # calls per arm after a re-open, before timing resumes (the process is already warm) ...
REWARM_MS = 10.0  # ... and at least this long per arm
REOPEN_SHARE = 0.2  # re-opening may take at most this share of the run
MIN_SEGMENT_PAIRS = 2
SPACER_MAX_BYTES = 1 << 20


def _tight(samples: list[list[int]], clusters: list[list[int]], targets: dict[str, float],
           confidence: float) -> bool:
    for statistic, target in targets.items():
        estimate = bootstrap_ratio(samples[0], samples[1], statistic, baseline_blocks=clusters[0],
                                   candidate_blocks=clusters[1], confidence=confidence, resamples=200, seed=1)
        if estimate.rel_halfwidth > target:
            return False
    return True


def _open(runners: list[Runner], feeds: list[Feeds], order: tuple[int, int],
          rng: np.random.Generator) -> tuple[list[Callable[[], Any]], list[float], list[float], np.ndarray]:
    """Activate both runners in ``order`` with a random-size allocation between them (kept alive by the
    caller), and make one first call each; returns the calls, load and first-call times (ms), the spacer."""
    calls: list[Callable[[], Any]] = [lambda: None, lambda: None]
    load_ms, first_ms = [0.0, 0.0], [0.0, 0.0]
    spacer = np.ones(0, np.uint8)
    for position, arm in enumerate(order):
        if position:
            spacer = np.ones(int(rng.integers(1, SPACER_MAX_BYTES)), np.uint8)
        t0 = time.perf_counter_ns()
        runners[arm].activate()
        load_ms[arm] = (time.perf_counter_ns() - t0) / 1e6
        runners[arm].check_feeds(feeds[arm])
        call = runners[arm].timed_call(feeds[arm])
        t0 = time.perf_counter_ns()
        call()
        first_ms[arm] = (time.perf_counter_ns() - t0) / 1e6
        calls[arm] = call
    return calls, load_ms, first_ms, spacer


def _rewarm(calls: list[Callable[[], Any]], count: int, first: int) -> None:
    for _ in range(count):
        calls[first]()
        calls[1 - first]()


def _reopen(runners: list[Runner], feeds: list[Feeds], order: tuple[int, int], rng: np.random.Generator,
            rewarm: int) -> tuple[list[Callable[[], Any]], np.ndarray]:
    """Close both runners, open them again in ``order`` and re-warm them; returns the calls and the spacer."""
    for runner in runners:
        runner.deactivate()
    calls, _, _, spacer = _open(runners, feeds, order, rng)
    _rewarm(calls, rewarm, order[0])
    return calls, spacer


def run(job: AbJob) -> dict[str, Any]:
    runners = [runner_for(arm.session["backend"], arm.model_path, arm.session) for arm in job.arms]
    feeds = [load_feeds(arm.inputs_path) for arm in job.arms]
    rng = np.random.default_rng(job.seed)
    clock = time.perf_counter_ns
    try:
        # ``spacer`` is held (never read) while its sessions live: it separates their allocations
        calls, load_ms, first_ms, spacer = _open(runners, feeds, (0, 1), rng)
        details = [dict(runner.details) for runner in runners]
        _rewarm(calls, job.warmup_iterations, 0)
        probe = []
        for call in calls:
            times = []
            for _ in range(5):
                t0 = clock()
                call()
                times.append(clock() - t0)
            probe.append(float(np.median(times)))
        per_call_ns = max(max(probe), 1.0)
        block = max(1, min(job.block_iterations, math.ceil(job.min_block_ms * 1e6 / per_call_ns)))
        min_segments = job.min_segments
        min_pairs = max(job.min_blocks, math.ceil(job.min_samples / block))
        max_pairs = max(min_pairs, job.max_iterations // block)
        cap_ns = int(job.max_seconds * 1e9)
        # one re-open, timed: it sets the segment length so that re-opening stays within REOPEN_SHARE
        rewarm = max(REWARM_CALLS, math.ceil(REWARM_MS * 1e6 / per_call_ns))
        t0 = clock()
        calls, spacer = _reopen(runners, feeds, (1, 0), rng, rewarm)
        reopen_ns = clock() - t0
        pair_ns = 2 * block * per_call_ns
        by_share = math.ceil(reopen_ns * (1 - REOPEN_SHARE) / REOPEN_SHARE / pair_ns)
        by_cap = math.floor(max(cap_ns - min_segments * reopen_ns, 0) / (min_segments * pair_ns))
        segment_pairs = max(MIN_SEGMENT_PAIRS, min(by_share, by_cap), math.ceil(min_pairs / min_segments))
        segment_pairs += segment_pairs % 2  # even: each segment is balanced ABBA
        targets = {k: float(v) for k, v in job.ci_targets.items()}
        confidence = job.confidence
        samples: list[list[int]] = [[], []]
        blocks: list[list[int]] = [[], []]
        segments: list[list[int]] = [[], []]
        stop_reason = "max_iterations"
        started = clock()
        reopen_total_ns = 0
        pair = segment = 0
        report = report_progress if job.progress else None
        reported = started - PROGRESS_INTERVAL_NS
        while pair < max_pairs:
            if segment:
                t0 = clock()
                calls, spacer = _reopen(runners, feeds, (0, 1) if segment % 2 == 0 else (1, 0), rng, rewarm)
                reopen_total_ns += clock() - t0
            for local in range(min(segment_pairs, max_pairs - pair)):
                # ABBA inside a segment, and the arm that opens a segment alternates between segments
                for arm in ((0, 1) if (local + segment) % 2 == 0 else (1, 0)):
                    call, append = calls[arm], samples[arm].append
                    for _ in range(block):
                        t0 = clock()
                        call()
                        t1 = clock()
                        append(t1 - t0)
                    blocks[arm].extend([pair] * block)
                    segments[arm].extend([segment] * block)
                pair += 1
            segment += 1
            if report is not None and clock() - reported >= PROGRESS_INTERVAL_NS:  # between segments, untimed
                report(len(samples[0]) + len(samples[1]), None, segments=segment)
                reported = clock()
            if segment < min_segments or pair < min_pairs:
                continue
            if _tight(samples, segments, targets, confidence):
                stop_reason = "ci_target"
                break
            if clock() - started >= cap_ns:
                stop_reason = "time_cap"
                break
        loop_wall_ns = clock() - started
    finally:
        for runner in runners:
            runner.deactivate()
    from edgeopt.core.host import host_fingerprint

    versions = {**details[0].get("versions", {}), "numpy": np.__version__, "python": sys.version.split()[0]}
    return {
        "status": "ok", "samples_ns": samples, "blocks": blocks, "segments": segments, "block_size": block,
        "pairs": pair, "segment_count": segment, "segment_pairs": segment_pairs, "order": "ABBA",
        "stop_reason": stop_reason, "loop_wall_ns": loop_wall_ns, "reopen_ms": reopen_total_ns / 1e6,
        "load_ms": load_ms, "first_inference_ms": first_ms, "probe_ns": probe,
        "providers_active": [d.get("providers_active", []) for d in details], "versions": versions,
        "host": host_fingerprint().to_dict(), "torch_imported": "torch" in sys.modules, "pid": os.getpid(),
    }


def main(argv: list[str]) -> int:
    return run_job(AbJob.from_dict(read_job(Path(argv[0]))), run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
