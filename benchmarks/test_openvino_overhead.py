"""edgeopt's OpenVINO p50 against a bare OpenVINO ``infer`` loop on the same model, alternating in one run.

The bare arm is what a user would write: ``core.compile_model(model, "CPU", config)``, one infer
request, ``perf_counter_ns`` around ``request.infer(feeds)``.  The edgeopt arm is the OpenVINO runner
the worker uses (its own compiled model, same settings) driven by ``edgeopt.measure.worker.timed_loop``.
Target: edgeopt's p50 within 5 % of the bare loop's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.models import random_feeds
from benchmarks.test_overhead import alternate, fixed_count_bench
from edgeopt.core.stats import percentile
from edgeopt.measure.worker import timed_loop

ov = pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install edgeopt[openvino])")

MAX_RATIO = 1.05
BLOCKS = 10
ITERATIONS = 200


def test_openvino_runner_matches_a_bare_infer_loop(benchmark: Any, figures: Any, one_ms_model: Path) -> None:
    import openvino.properties as props
    import openvino.properties.hint as hints

    from edgeopt.backends.openvino import OpenVinoRunner

    feeds = random_feeds(one_ms_model)
    config = {hints.performance_mode(): hints.PerformanceMode.LATENCY, props.num_streams(): 1,
              props.inference_num_threads(): 1, hints.enable_cpu_pinning(): True,
              hints.inference_precision(): "f32"}
    request = ov.Core().compile_model(str(one_ms_model), "CPU", config).create_infer_request()
    runner = OpenVinoRunner(str(one_ms_model), {"intra_op_threads": 1, "precision": "fp32"})
    runner.activate()
    call = runner.timed_call(feeds)
    bench = fixed_count_bench(ITERATIONS)
    clock = time.perf_counter_ns

    def bare() -> list[int]:
        samples: list[int] = []
        for _ in range(ITERATIONS):
            t0 = clock()
            request.infer(feeds)
            samples.append(clock() - t0)
        return samples

    def edgeopt() -> list[int]:
        samples, _ = timed_loop(call, bench)
        return samples

    for _ in range(50):
        request.infer(feeds)
        call()
    blocks = benchmark.pedantic(alternate, args=(BLOCKS, {"bare": bare, "edgeopt": edgeopt}), rounds=1, iterations=1)
    runner.deactivate()
    bare_p50 = percentile([s for b in blocks["bare"] for s in b], 0.5) / 1e6
    edgeopt_p50 = percentile([s for b in blocks["edgeopt"] for s in b], 0.5) / 1e6
    ratio = edgeopt_p50 / bare_p50
    figures(f"OpenVINO p50 edgeopt {edgeopt_p50:.4f} ms / bare infer loop {bare_p50:.4f} ms = {ratio:.4f} "
            f"(target <= {MAX_RATIO})", bare_p50_ms=bare_p50, edgeopt_p50_ms=edgeopt_p50, p50_ratio=ratio)
    assert ratio <= MAX_RATIO, f"edgeopt's OpenVINO p50 is {ratio:.4f}x the bare loop's (> {MAX_RATIO})"
