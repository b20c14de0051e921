"""Run length is the profile's: ``max_seconds`` bounds every row, a percentile short of samples says how many it needs
and is inconclusive, and the plan printed first says how long the timed loops take at most."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests import profiles, zoo


def test_a_row_cut_by_max_seconds_is_inconclusive_on_p95_saying_the_samples_it_needs(tmp_path: Path) -> None:
    model = zoo.tiny_conv_model(tmp_path / "tiny_conv.onnx")
    # 0.1 ms of timing: far fewer than the 72 samples a p95 interval needs (a session call takes microseconds)
    profile = profiles.write_profile(tmp_path, "short", max_seconds=0.0001, min_iterations=20, sample_floor=None,
                                     budgets="  p95_ms: 1000")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "edgeopt", "run", str(model), "--profile", str(profile), "--out",
                           str(out), "--variant", "fp32"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 5, done.stderr  # inconclusive
    assert "plan: timing 1 row(s), at most " in done.stderr, done.stderr
    measured = json.loads((out / "measurements" / "fp32__short.json").read_text())
    assert measured["latency"]["stop_reason"] == "time_cap"
    n = len(measured["latency"]["samples_ns"])
    assert n < 72
    (gate,) = json.loads((out / "summary.json").read_text())["gates"]
    (check,) = gate["checks"]
    assert check["verdict"] == "inconclusive" and check["samples_needed"] == 72
    assert (f"needs 72 samples for its p95 interval (95%); got {n} in max_seconds 0.0001 s (raise bench.max_seconds "
            "or set bench.sample_floor)") in check["sentence"], check["sentence"]
