"""Change points of a stored series and the ``history --check`` alarm (edgeopt/history/changepoints.py), on synthetic
series: lognormal run-to-run noise around 10 ms, runs numbered from 1 as in the issue (run k is ``points[k - 1]``).
The false-alarm rate and detection delays over 100 seeds are measured by ``benchmarks/history_false_alarms.py``."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from edgeopt.history.changepoints import MIN_RUNS, check_newest, detect_changes
from edgeopt.history.series import Series, SeriesKey, SeriesPoint

KEY = SeriesKey("resnet18", "x86-avx512vnni-2core", "fp32", "onnxruntime")


def commit_of(run: int) -> str:
    return hashlib.sha1(f"run {run}".encode()).hexdigest()


def series(levels: Sequence[float | None] | np.ndarray, hosts: Sequence[str] | None = None) -> Series:
    """One point per level (None: a run without p50), runs 1..n, commit ``commit_of(run)``."""
    points = tuple(
        SeriesPoint(
            run_id=100 + run,
            recorded_at=f"2026-01-{1 + run // 24:02d}T{run % 24:02d}:00:00Z",
            commit=commit_of(run),
            branch="main",
            hostname="runner",
            host_fingerprint=hosts[run - 1] if hosts else "aaaa1111",
            p50_ms=None if level is None else float(level),
            p50_lower=None,
            p50_upper=None,
            p95_ms=None if level is None else 1.2 * float(level),
            p95_lower=None,
            p95_upper=None,
            samples=1000,
            peak_rss_mb=None,
            fidelity_cosine=None,
            verdict="pass",
            report=None,
        )
        for run, level in enumerate(levels, start=1)
    )
    return Series(KEY, points)


def noisy(seed: int, runs: int = 40, noise: float = 0.01) -> np.ndarray:
    return 10.0 * np.exp(np.random.default_rng(seed).normal(0.0, noise, runs))


def creep(seed: int, start: int = 25, step: float = 0.02) -> np.ndarray:
    """``noisy`` with a 2 %-per-run creep: run ``start`` is the first slower one (1.02x), then 1.04x..."""
    levels = noisy(seed)
    return levels * (1 + step) ** np.maximum(0, np.arange(1, len(levels) + 1) - start + 1)


def test_creep_flagged_by_run_30_while_each_step_is_small() -> None:
    for seed in (0, 1, 2):
        levels = creep(seed)
        assert np.all(levels[1:] / levels[:-1] < 1.05)  # no run is 5 % slower than the one before it (noise included)
        checks = {k: check_newest(series(levels[:k])) for k in range(1, 41)}
        assert not any(checks[k].alarm for k in range(1, 25)), seed
        first = min(k for k, check in checks.items() if check.alarm)
        assert first <= 30, seed
        alarm = checks[first]
        assert alarm.change is not None and alarm.newest is not None
        assert alarm.change.commit in {commit_of(run) for run in range(25, 29)}, seed
        assert alarm.change.direction == "slowdown" and alarm.change.lower > 1
        assert alarm.newest.commit == commit_of(first)
        assert f"slowdown since run {alarm.change.index + 1} (commit {alarm.change.commit[:10]})" in alarm.sentence
        whole = checks[40]
        assert whole.alarm and whole.runs == 40 and whole.change is not None
        assert whole.change.commit in {commit_of(run) for run in range(25, 29)}, seed
        assert whole.change.ratio > 1.2  # the newest segment's level against the baseline (run 40: 1.02 ** 16)


def test_flat_noisy_history_raises_no_alarm_at_any_run() -> None:
    for seed in range(100, 120):
        levels = noisy(seed)
        alarms = [k for k in range(1, 41) if check_newest(series(levels[:k])).alarm]
        assert alarms == [], f"seed {seed}: false alarm at runs {alarms}"


def test_sustained_step_is_one_change_point_with_its_size() -> None:
    levels = noisy(seed=5)
    levels[19:] *= 1.15  # run 20 on
    changes = detect_changes(series(levels))
    assert len(changes) == 1
    (change,) = changes
    assert abs(change.index - 19) <= 1
    assert change.direction == "slowdown" and change.statistic == "p50"
    assert change.lower <= 1.15 <= change.upper and change.lower > 1
    assert change.p_value <= 0.001
    assert change.before_ms < change.after_ms
    assert change.sentence().startswith(f"slowdown at run {change.index + 1} (id {change.run_id}, commit ")
    assert check_newest(series(levels)).alarm
    p95 = detect_changes(series(levels), statistic="p95")
    assert [c.index for c in p95] == [change.index] and p95[0].statistic == "p95"


def test_runs_without_the_statistic_are_skipped_and_indices_stay_those_of_the_series() -> None:
    levels: list[float | None] = list(noisy(seed=5))
    levels[19:] = [1.15 * level for level in levels[19:] if level is not None]
    levels[10] = None
    levels[30] = None
    (change,) = detect_changes(series(levels))
    assert abs(change.index - 19) <= 1 and change.commit == commit_of(change.index + 1)
    check = check_newest(series(levels))
    assert check.alarm and check.runs == 38


def test_single_outlier_run_is_neither_a_change_nor_an_alarm() -> None:
    for at in (20, 39):  # in the middle, then as the newest run
        levels = noisy(seed=7)
        levels[at] *= 1.30
        assert detect_changes(series(levels)) == []
        assert not check_newest(series(levels)).alarm
        assert not any(check_newest(series(levels[:k])).alarm for k in range(at + 1, 41))


def test_speedup_and_a_returned_slowdown_raise_no_alarm() -> None:
    faster = noisy(seed=9)
    faster[19:] /= 1.15
    (change,) = detect_changes(series(faster))
    assert change.direction == "speedup" and change.upper < 1
    check = check_newest(series(faster))
    assert not check.alarm and check.change is None
    assert "the last shift is a speedup at run" in check.sentence

    returned = noisy(seed=9)
    returned[14:25] *= 1.15  # runs 15..25 slow, fixed from run 26 on
    assert [c.direction for c in detect_changes(series(returned))] == ["slowdown", "speedup"]
    assert not check_newest(series(returned)).alarm
    assert check_newest(series(returned[:25])).alarm  # while it lasted, the check flagged it


def test_runner_change_is_noted_on_the_change_point() -> None:
    levels = noisy(seed=11)
    levels[19:] *= 1.15
    hosts = ["aaaa1111"] * 19 + ["bbbb2222"] * 21
    (change,) = detect_changes(series(levels, hosts))
    assert change.index == 19
    assert change.notes == (
        "the runner changed at this run: host fingerprint aaaa1111 -> bbbb2222; "
        "compare runs on one host before blaming the commit",
    )
    assert change.notes[0] in change.sentence()
    check = check_newest(series(levels, hosts))
    assert check.alarm and check.change is not None and check.change.notes == change.notes
    assert change.notes[0] in check.sentence


def test_too_few_runs_is_no_alarm_and_says_so() -> None:
    levels = [10.0, 10.1, 13.0, 13.1, 13.2, 13.0]
    assert len(levels) < MIN_RUNS
    check = check_newest(series(levels))
    assert not check.alarm and check.change is None and check.runs == 6
    assert check.newest is not None and check.newest.commit == commit_of(6)
    assert "too few runs to check: 6 with a p50 (at least 7 needed)" in check.sentence
    assert detect_changes(series(levels)) == []
    empty = check_newest(Series(KEY, ()))
    assert not empty.alarm and empty.newest is None and empty.runs == 0


def test_identical_values_are_no_change() -> None:
    assert detect_changes(series([10.0] * 30)) == []
    assert not check_newest(series([10.0] * 30)).alarm
