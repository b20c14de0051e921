"""``--wait-for-quiet``: the wait ends when the host's load is within the limit, or when its time is up, saying so."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeopt.core.quiet_host import load_per_core, wait_for_quiet
from tests import profiles, zoo


def test_load_per_core_is_the_load_average_over_the_cores() -> None:
    load = load_per_core()
    assert load is not None and load == pytest.approx(os.getloadavg()[0] / (os.cpu_count() or 1), abs=0.05)


def test_a_host_within_the_limit_is_not_waited_for() -> None:
    said: list[tuple[float, float]] = []
    started = time.monotonic()
    assert wait_for_quiet(10_000.0, 30.0, lambda load, left: said.append((load, left))) is not None
    assert not said and time.monotonic() - started < 1.0


def test_a_busy_host_is_waited_for_until_the_time_is_up_with_progress() -> None:
    busy = load_per_core()
    assert busy is not None
    if busy <= 1e-6:
        pytest.skip("the host's load average is 0.00: nothing to wait for")
    said: list[tuple[float, float]] = []
    started = time.monotonic()
    load = wait_for_quiet(1e-6, 0.6, lambda load, left: said.append((load, left)), poll_s=0.2)
    assert load is not None and load > 1e-6
    assert 0.55 <= time.monotonic() - started < 5.0
    assert len(said) >= 2 and all(0 < left <= 0.6 for _, left in said)
    assert [left for _, left in said] == sorted((left for _, left in said), reverse=True)


def test_run_waits_for_a_quiet_host_then_measures_saying_it_stayed_busy(tmp_path: Path) -> None:
    if (load_per_core() or 0.0) <= 1e-6:
        pytest.skip("the host's load average is 0.00: nothing to wait for")
    model = zoo.tiny_conv_model(tmp_path / "tiny_conv.onnx")
    stability = "max_cv: null, max_drift_rel: null, max_outlier_fraction: null, max_load_avg_per_core: 0.000001"
    profile = profiles.write_profile(tmp_path, "busy", stability=stability)
    done = subprocess.run([sys.executable, "-m", "edgeopt", "run", str(model), "--profile", str(profile), "--out",
                           str(tmp_path / "out"), "--variant", "fp32", "--wait-for-quiet", "0.5"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 5, done.stderr  # the row is invalid: the host stayed busy
    assert "measure fp32__busy: waiting for a quiet host: load " in done.stderr, done.stderr
    assert "s left of --wait-for-quiet)" in done.stderr
    assert "measure fp32__busy: the host stayed busy for 0.5 s" in done.stderr
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "--wait-for-quiet SECONDS" in summary and "edgeopt ab" in summary, summary
