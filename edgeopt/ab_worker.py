"""The interleaved A/B worker: ``python -m edgeopt.ab_worker JOB.json``.

One process opens both runners (A = baseline, B = candidate), warms both up, then times the bare
backend calls (``perf_counter_ns`` around ``runner.timed_call(feeds)()`` only) in alternating blocks,
ABBA order: block pair ``i`` runs A then B when ``i`` is even, B then A when odd, and both blocks of a
pair carry block id ``i``.  A block is ``min(20, ceil(50 ms / t))`` calls (``t`` the slower model's
probe time): at least ~50 ms or 20 calls.  It stops when the paired-block bootstrap intervals of the
p50 and p95 ratios are tight (relative half-width <= threshold / 3), or at the time cap, or at the
iteration cap, never before each arm has the samples a p95 interval needs and ``min_blocks`` pairs.
It imports numpy, psutil, the backend's runtime and edgeopt's numpy-only modules, never torch, and
writes one JSON result atomically.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.backends import runner_for
from edgeopt.compare import bootstrap_ratio
from edgeopt.worker import load_feeds, run_job


def _tight(samples: list[list[int]], blocks: list[list[int]], targets: dict[str, float], confidence: float) -> bool:
    for statistic, target in targets.items():
        estimate = bootstrap_ratio(samples[0], samples[1], statistic, baseline_blocks=blocks[0],
                                   candidate_blocks=blocks[1], confidence=confidence, resamples=200, seed=1)
        if estimate.rel_halfwidth > target:
            return False
    return True


def run(job: dict[str, Any]) -> dict[str, Any]:
    arms = job["arms"]
    runners = [runner_for(arm["session"]["backend"], arm["model_path"], arm["session"]) for arm in arms]
    calls, load_ms, first_ms, details = [], [], [], []
    for runner, arm in zip(runners, arms, strict=True):
        t0 = time.perf_counter_ns()
        runner.activate()
        load_ms.append((time.perf_counter_ns() - t0) / 1e6)
        feeds = load_feeds(arm["inputs_path"])
        runner.check_feeds(feeds)
        call = runner.timed_call(feeds)
        t0 = time.perf_counter_ns()
        call()
        first_ms.append((time.perf_counter_ns() - t0) / 1e6)
        calls.append(call)
        details.append(dict(runner.details))
    try:
        for _ in range(int(job["warmup_iterations"])):
            calls[0]()
            calls[1]()
        clock = time.perf_counter_ns
        probe = []
        for call in calls:
            times = []
            for _ in range(5):
                t0 = clock()
                call()
                times.append(clock() - t0)
            probe.append(float(np.median(times)))
        per_call_ns = max(max(probe), 1.0)
        block = max(1, min(int(job["block_iterations"]), math.ceil(float(job["min_block_ms"]) * 1e6 / per_call_ns)))
        min_samples = int(job["min_samples"])
        min_pairs = max(int(job["min_blocks"]), math.ceil(min_samples / block))
        max_pairs = max(min_pairs, int(job["max_iterations"]) // block)
        cap_ns = int(float(job["max_seconds"]) * 1e9)
        targets = {k: float(v) for k, v in job["ci_targets"].items()}
        confidence = float(job["confidence"])
        samples: list[list[int]] = [[], []]
        blocks: list[list[int]] = [[], []]
        next_check = min_pairs
        stop_reason = "max_iterations"
        started = clock()
        pair = 0
        while pair < max_pairs:
            for arm in ((0, 1) if pair % 2 == 0 else (1, 0)):
                call, append = calls[arm], samples[arm].append
                for _ in range(block):
                    t0 = clock()
                    call()
                    t1 = clock()
                    append(t1 - t0)
                blocks[arm].extend([pair] * block)
            pair += 1
            if pair < next_check:
                continue
            if _tight(samples, blocks, targets, confidence):
                stop_reason = "ci_target"
                break
            if clock() - started >= cap_ns:
                stop_reason = "time_cap"
                break
            next_check = pair + max(2, pair // 4)  # checks cost O(n): keep them to a few per run
        loop_wall_ns = clock() - started
    finally:
        for runner in runners:
            runner.deactivate()
    from edgeopt.host import host_fingerprint

    versions = {**details[0].get("versions", {}), "numpy": np.__version__, "python": sys.version.split()[0]}
    return {
        "status": "ok", "samples_ns": samples, "blocks": blocks, "block_size": block, "pairs": pair,
        "order": "ABBA", "stop_reason": stop_reason, "loop_wall_ns": loop_wall_ns, "load_ms": load_ms,
        "first_inference_ms": first_ms, "probe_ns": probe,
        "providers_active": [d.get("providers_active", []) for d in details], "versions": versions,
        "host": host_fingerprint().to_dict(), "torch_imported": "torch" in sys.modules, "pid": os.getpid(),
    }


def main(argv: list[str]) -> int:
    return run_job(Path(argv[0]), run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
