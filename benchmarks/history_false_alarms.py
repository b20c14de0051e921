"""False alarms and detection delays of ``history --check`` on synthetic series (docs/history.md, "Detection").

Series of 40 runs around 10 ms with lognormal run-to-run noise (sd 1 %, 2 %, 3 %), ``check_newest`` called after
every run, as CI checking after each run would, over N seeds per row (seeded, so the table is reproducible):

- false alarms, flat: no change at all; a seed counts when the check alarms after any of the 40 runs.
- false alarms, outliers: the same with 5 % of the runs (each independently) made 10-30 % slower (uniform).
- creep: 2 % per run from run 25 (run 25 is 1.02x, run 26 1.04x, ...): the first run from 25 on after which the
  check alarms (median, worst; "-" when a seed is not flagged by run 40), the share flagged by run 30, and the share
  whose alarm names a commit of runs 25 to 28 as the start.
- step: +10 % from run 25 on: first alarm (median, worst) and the share flagged by run 30.

    .venv/bin/python benchmarks/history_false_alarms.py [--seeds 100]

About a minute for 100 seeds on one core. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeopt.history.changepoints import check_newest  # noqa: E402
from edgeopt.history.series import Series, SeriesKey, SeriesPoint  # noqa: E402

RUNS = 40
START = 25  # 1-based: the first slower run of the creep and of the step
KEY = SeriesKey("synthetic", "synthetic", "fp32", "onnxruntime")


def series(levels: np.ndarray) -> Series:
    points = tuple(
        SeriesPoint(
            run,
            f"2026-01-01T00:{run:02d}:00Z",
            f"{run:040x}",
            None,
            None,
            "host",
            float(level),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            "pass",
            None,
        )
        for run, level in enumerate(levels, start=1)
    )
    return Series(KEY, points)


def noisy(rng: np.random.Generator, noise: float) -> np.ndarray:
    return 10.0 * np.exp(rng.normal(0.0, noise, RUNS))


def first_alarm(levels: np.ndarray, since: int = 1) -> tuple[int | None, int | None]:
    """The first run (1-based, from ``since``) after which the check alarms, and the run its change starts at."""
    for run in range(since, RUNS + 1):
        check = check_newest(series(levels[:run]))
        if check.alarm and check.change is not None:
            return run, check.change.index + 1
    return None, None


def delays(found: list[int | None]) -> str:
    runs = [run for run in found if run is not None]
    worst = str(max(runs)) if len(runs) == len(found) else "-"
    return f"{np.median(runs) if runs else float('nan'):g} / {worst}"


def share(count: int, total: int) -> str:
    return f"{count}/{total}"


def row(noise: float, seeds: int) -> str:
    flat = outliers = 0
    creep_runs: list[int | None] = []
    creep_named = 0
    step_runs: list[int | None] = []
    after = np.maximum(0, np.arange(1, RUNS + 1) - START + 1)  # 0 before run START, then 1, 2, ...
    for seed in range(seeds):
        scenario = [np.random.default_rng((seed, round(noise * 1000), kind)) for kind in range(4)]
        flat += first_alarm(noisy(scenario[0], noise))[0] is not None
        levels = noisy(scenario[1], noise)
        hit = scenario[1].random(RUNS) < 0.05
        outliers += first_alarm(np.where(hit, levels * scenario[1].uniform(1.1, 1.3, RUNS), levels))[0] is not None
        run, start = first_alarm(noisy(scenario[2], noise) * 1.02**after, since=START)
        creep_runs.append(run)
        creep_named += start is not None and START <= start <= START + 3
        step_runs.append(first_alarm(noisy(scenario[3], noise) * np.where(after > 0, 1.10, 1.0), since=START)[0])
    by_30 = sum(run is not None and run <= 30 for run in creep_runs)
    step_by_30 = sum(run is not None and run <= 30 for run in step_runs)
    return (
        f"| {100 * noise:g} % | {share(flat, seeds)} | {share(outliers, seeds)} | {delays(creep_runs)} "
        f"| {share(by_30, seeds)} | {share(creep_named, seeds)} | {delays(step_runs)} | {share(step_by_30, seeds)} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    args = parser.parse_args()
    print(f"{args.seeds} seeds per row, 40 runs per series, check after every run")
    print()
    print(
        "| noise (sd) | false alarms, flat | false alarms, 5 % outliers | creep 2 %/run from run 25: first alarm "
        "(median / worst) | creep flagged by run 30 | creep start named in runs 25-28 | +10 % step at run 25: "
        "first alarm (median / worst) | step flagged by run 30 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for noise in (0.01, 0.02, 0.03):
        print(row(noise, args.seeds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
