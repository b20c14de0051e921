"""Tests for edgeopt.core.stability: the diagnosis on sequences with known properties, the policy, the probe,
and an impossible policy reported as an invalid measurement end to end (exit 5)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeopt.core.stability import (
    NOT_EXPOSED,
    NOT_RECORDED,
    StabilityReport,
    diagnose_samples,
    kendall_trend,
    probe_system,
    snapshot,
    stability_report,
    summarize_system,
    theil_sen,
)
from edgeopt.evaluate.stability_policy import check_policy
from edgeopt.profiles.schema import Stability
from tests import zoo

OFF = Stability(max_cv=None, max_drift_rel=None, max_outlier_fraction=None, max_load_avg_per_core=None,
                fail_on_throttling=False)


def ns(ms: np.ndarray) -> list[int]:
    return [int(round(v * 1e6)) for v in ms]


def flat(n: int = 2000, seed: int = 0) -> np.ndarray:
    return 10.0 + np.random.default_rng(seed).normal(0.0, 0.1, n)


# --------------------------------------------------------------------------------------------- samples


def test_cv_is_hand_computed() -> None:
    d = diagnose_samples(ns(np.array([1.0, 2.0, 3.0, 4.0])))
    mean, std = 2.5, math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3)
    assert d.mean_ms == pytest.approx(mean)
    assert d.cv == pytest.approx(std / mean)  # 0.5164
    assert d.blocks == 0 and d.drift_rel is None  # too short for a drift estimate


def test_flat_noise_has_no_drift() -> None:
    d = diagnose_samples(ns(flat()))
    assert d.blocks == 10
    assert d.drift_rel is not None and abs(d.drift_rel) < 0.01
    assert not d.drift_significant
    assert d.cv == pytest.approx(0.01, rel=0.1)
    assert d.outlier_count == 0 and d.bimodality is None
    assert check_policy(stability_report(ns(flat()), None), Stability()) == []


@pytest.mark.parametrize("sign", [1, -1])
def test_linear_trend_gives_drift_of_the_right_sign_and_size(sign: int) -> None:
    n = 1000
    x = 10.0 * (1 + sign * 0.10 * np.arange(n) / (n - 1))  # +-10 % over the run
    d = diagnose_samples(ns(x))
    # block medians sit at sample 49.5, 149.5, ...: first -> last block spans 900 of 999 steps
    expected = sign * 0.10 * 900 / 999 / (1 + sign * 0.10 * 49.5 / 999)
    assert d.drift_rel == pytest.approx(expected, rel=1e-3)
    assert d.drift_tau == pytest.approx(sign * 1.0)
    assert d.drift_p_value == pytest.approx(2 / math.factorial(10))  # exact: only the two sorted orders
    noisy = x + np.random.default_rng(1).normal(0, 0.1, n)
    broken = check_policy(stability_report(ns(noisy), None), OFF.model_copy(update=dict(max_drift_rel=0.05)))
    assert [v.rule for v in broken] == ["max_drift_rel"]
    assert broken[0].sentence.startswith(f"invalid measurement: drift {'+' if sign > 0 else '-'}")
    assert "> max_drift_rel 5.0%" in broken[0].sentence


def test_injected_bursts_fraction_and_longest_run_are_exact() -> None:
    x = flat(1000)
    x[100:107] = 30.0  # a burst of 7
    x[500:503] = 25.0  # a burst of 3
    x[900] = 40.0  # a single hiccup
    d = diagnose_samples(ns(x))
    assert d.outlier_count == 11
    assert d.outlier_fraction == pytest.approx(0.011)
    assert d.longest_outlier_run == 7
    s = np.sort(x)
    q1, q3 = s[math.ceil(0.25 * 1000) - 1], s[math.ceil(0.75 * 1000) - 1]
    assert d.outlier_threshold_ms == pytest.approx(q3 + 3 * (q3 - q1), rel=1e-6)
    broken = check_policy(stability_report(ns(x), None), OFF.model_copy(update=dict(max_outlier_fraction=0.01)))
    assert [v.rule for v in broken] == ["max_outlier_fraction"] and "longest burst 7" in broken[0].sentence


def test_theil_sen_and_kendall_by_hand() -> None:
    slope, intercept = theil_sen([1.0, 3.0, 5.0, 7.0, 100.0])  # one wild point does not move the line
    assert (slope, intercept) == (2.0, 1.0)
    tau, p = kendall_trend([1, 2, 3, 4, 5])
    assert tau == 1.0 and p == pytest.approx(2 / 120)
    tau, p = kendall_trend([3, 1, 2, 5, 4])  # S = 4 (7 concordant, 3 discordant): P(|S| >= 4) = 2*29/120
    assert tau == pytest.approx(0.4) and p == pytest.approx(58 / 120)
    assert kendall_trend([2, 2, 2, 2, 2]) == (0.0, 1.0)


def test_bimodality_hint() -> None:
    rng = np.random.default_rng(2)
    modes = np.where(rng.random(1000) < 0.6, 12.6, 25.7) + rng.normal(0, 0.2, 1000)
    hint = diagnose_samples(ns(modes)).bimodality
    assert hint is not None
    assert hint.lower_ms == pytest.approx(12.6, abs=0.1) and hint.upper_ms == pytest.approx(25.7, abs=0.1)
    assert hint.upper_fraction == pytest.approx(0.4, abs=0.05)
    assert diagnose_samples(ns(flat())).bimodality is None


def test_cv_rule_and_report_round_trip() -> None:
    report = stability_report(ns(flat()), None)
    broken = check_policy(report, OFF.model_copy(update=dict(max_cv=0.001)))
    assert [v.rule for v in broken] == ["max_cv"]
    assert broken[0].sentence == "invalid measurement: cv 1.0% of 2000 samples > max_cv 0.1%"
    again = StabilityReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    assert report.system.load_avg_1m == NOT_RECORDED  # no probe: an old document


# ----------------------------------------------------------------------------------------- system state


def _probe(**before: object) -> dict[str, object]:
    start = {"time_ns": 0, "self_cpu_s": 0.0, "proc_stat": [0] * 8, "throttle": NOT_EXPOSED}
    end = {"time_ns": 2_000_000_000, "self_cpu_s": 1.5, "proc_stat": [200, 0, 100, 60, 0, 0, 0, 40],
           "throttle": NOT_EXPOSED}
    return {"before": {"load_avg": [3.0, 2.0, 1.0], "logical_cores": 2, "governors": NOT_EXPOSED,
                       "freq": NOT_EXPOSED, "throttle": NOT_EXPOSED, "jetson": None, **before},
            "loop_start": start, "loop_end": end}


def test_summarize_system_from_counters() -> None:
    state = summarize_system(_probe())
    assert state.load_avg_1m == 3.0 and state.load_avg_per_core == 1.5
    ticks = os.sysconf("SC_CLK_TCK")
    assert state.steal_fraction == pytest.approx(40 / 400)
    assert state.others_cpu_cores == pytest.approx(max(0.0, 300 / ticks - 1.5) / 2.0)
    assert state.worker_cpu_share == pytest.approx(0.75)
    assert state.governors == NOT_EXPOSED and state.throttle_events == NOT_EXPOSED


def test_system_rules() -> None:
    samples = ns(flat())
    load = check_policy(stability_report(samples, _probe()), OFF.model_copy(update=dict(max_load_avg_per_core=1.0)))
    assert [v.sentence for v in load] == [
        "invalid measurement: load average 3.00 before the run = 1.50 per core (2 cores) > max_load_avg_per_core 1; "
        "wait for a quiet host with 'edgeopt run --wait-for-quiet SECONDS', or compare two variants with 'edgeopt ab', "
        "which interleaves them and tolerates load"]
    governed = _probe(governors={"cpu0": "performance", "cpu1": "powersave"})
    want = OFF.model_copy(update=dict(required_governor="performance"))
    assert [v.value for v in check_policy(stability_report(samples, governed), want)] == ["cpu1 powersave"]
    unknown = stability_report(samples, _probe())
    assert "cannot be verified" in check_policy(unknown, want)[0].sentence
    assert check_policy(unknown, want, on_target=False) == []  # a proxy host: the target's governor is moot
    hot = _probe()
    hot["loop_start"]["throttle"] = {"cpu0": {"core_throttle_count": 4}}  # type: ignore[index]
    hot["loop_end"]["throttle"] = {"cpu0": {"core_throttle_count": 9}}  # type: ignore[index]
    broken = check_policy(stability_report(samples, hot), OFF.model_copy(update=dict(fail_on_throttling=True)))
    assert [(v.rule, v.value) for v in broken] == [("fail_on_throttling", 5)]
    assert "cpu0 +5" in broken[0].sentence


def test_probe_on_this_machine() -> None:
    state = probe_system()
    load = state["load_avg"]
    assert isinstance(load, list) and len(load) == 3 and all(isinstance(v, float) and v >= 0 for v in load)
    governors = state["governors"]
    assert governors == NOT_EXPOSED or (isinstance(governors, dict) and all(
        isinstance(g, str) and g for g in governors.values()))
    assert state["throttle"] == NOT_EXPOSED or isinstance(state["throttle"], dict)
    a, b = snapshot(), snapshot()
    assert b["time_ns"] >= a["time_ns"]


# ----------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_real_worker_records_system_state(tmp_path: Path) -> None:
    from edgeopt.evaluate.gate import gate_measurement
    from edgeopt.measure.cell import Cell, CellContext, measure_cell
    from edgeopt.measure.launcher import prepare_timing_inputs
    from edgeopt.models.variants import Variant
    from edgeopt.profiles.schema import load_profile

    profile = load_profile("host-cpu").model_copy(update={"bench": load_profile("host-cpu").bench.model_copy(
        update={"max_seconds": 0.3, "warmup_iterations": 2})})
    model = zoo.identity_add(tmp_path / "identity_add.onnx")
    inputs = prepare_timing_inputs(model, profile, None, tmp_path / "inputs.npz")
    measurement = measure_cell(Cell(Variant.from_file(model), profile, inputs), CellContext(tmp_path))
    assert measurement.ok and measurement.stability is not None
    probe = measurement.stability["probe"]
    assert set(probe) == {"before", "loop_start", "loop_end"}
    report = measurement.stability_report()
    assert report is not None
    assert isinstance(report.system.load_avg_1m, float)  # a real number on Linux
    assert report.system.governors == NOT_EXPOSED or isinstance(report.system.governors, dict)
    assert report.samples.n == measurement.latency.summary().n  # type: ignore[union-attr]
    impossible = profile.model_copy(update={"stability": Stability(max_cv=1e-6)})
    assert gate_measurement(measurement, impossible).verdict.value == "invalid"


IMPOSSIBLE = """\
name: impossible
description: any host, a stability policy no real run can meet
identity:
  any_host: true
runtime:
  intra_op_threads: 1
bench:
  warmup_iterations: 2
  max_seconds: 0.3
stability:
  max_cv: 0.000001  # no real run varies this little
budgets:
  p95_ms: 1000
"""


@pytest.mark.slow
def test_impossible_policy_is_invalid_end_to_end_exit_5(tmp_path: Path) -> None:
    model = zoo.tiny_conv_model(tmp_path / "tiny_conv.onnx")
    profile = tmp_path / "impossible.yaml"
    profile.write_text(IMPOSSIBLE)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "edgeopt", "run", str(model), "--profile", str(profile),
                             "--out", str(out), "--variant", "fp32"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 5, result.stderr + result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("fp32 "))
    assert row.split()[-1] == "invalid"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 5 and summary["gates"][0]["verdict"] == "invalid"
    assert summary["gates"][0]["invalid_reasons"][0].startswith("invalid measurement: cv ")
    assert "> max_cv 0.0%" in summary["gates"][0]["invalid_reasons"][0]
    markdown = (out / "summary.md").read_text()
    assert "invalid measurement: cv" in markdown and "fp32: stability: cv" in markdown
    gated = subprocess.run([sys.executable, "-m", "edgeopt", "gate", str(out / "measurements" /
                            "fp32__impossible.json")], capture_output=True, text=True, timeout=120)
    assert gated.returncode == 5 and "fp32 on impossible: invalid" in gated.stdout
    assert "not judged, invalid measurement: cv" in gated.stdout
