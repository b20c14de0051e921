"""Change points of a latency series and the ``history --check`` alarm (docs/history.md, "Detection").

Method: the series is read as the logarithm of one statistic per run (p50 by default; runs without it are
skipped). ``ruptures.Pelt`` (``l2`` cost, ``min_size=3`` runs so that one odd run cannot form a segment, ``jump=1``)
proposes change points under a BIC penalty ``2 * sigma**2 * log(n)``, the run-to-run noise ``sigma`` being the MAD of
first differences / sqrt(2) (``scipy.stats.median_abs_deviation``, normal scale). Each proposed change is tested on
the union of its two neighbouring segments: the statistic is the smallest two-sided Mann-Whitney p-value over every
split of that union into parts of at least 3 runs, and its p-value comes from 9999 seeded permutations, so the search
for the split is part of the test; while the least significant change has p > ``ALPHA`` (0.001) it is dropped and its
segments merge (a creep cut into small steps becomes one longer shift). A change's size is the Hodges-Lehmann ratio
after / before (the median of all pairwise ratios) with its distribution-free 95 % interval (Moses). ``check_newest``
walks back from the newest segment over consecutive slowdowns to the segment before the first of them (the baseline)
and raises the alarm when the newest segment is slower than the baseline: one-sided Mann-Whitney p < ``ALPHA`` and the
interval's lower end above 1.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import ruptures
from scipy import stats

from edgeopt.history.series import Series, SeriesKey, SeriesPoint

MIN_SIZE = 3  # runs: the shortest segment, i.e. the shortest sustained shift
ALPHA = 0.001  # significance level of the tests (a change point's confirmation, the alarm)
PERMUTATIONS = 9999  # of the change-point test's null distribution (p-values from 1e-4)
EXACT_SIDE = 8  # Mann-Whitney p-values are exact when one side has at most this many runs
CONFIDENCE = 0.95  # of the ratio's interval
SIGMA_FLOOR = 1e-4  # lower bound of the noise estimate in log units (0.01 %): keeps the penalty positive
MIN_RUNS = 2 * MIN_SIZE + 1  # a baseline and a newest segment of MIN_SIZE runs, and one run more


@dataclass(frozen=True)
class ChangePoint:
    """A sustained shift of the series' level starting at ``points[index]``."""

    index: int  # position in Series.points of the first run at the new level
    run_id: int
    commit: str | None
    recorded_at: str
    statistic: str  # p50 | p95
    before_ms: float  # level of the segment before
    after_ms: float  # level of the segment from index on
    ratio: float  # after / before
    lower: float  # 95 % interval of the ratio
    upper: float
    p_value: float
    direction: str  # slowdown | speedup
    notes: tuple[str, ...] = ()  # e.g. the host fingerprint changed at this run

    def sentence(self) -> str:
        """One line: direction, run (1-based position in the series), id, commit, size with interval, p-value, notes."""
        commit = self.commit[:10] if self.commit else "no commit"
        text = (
            f"{self.direction} at run {self.index + 1} (id {self.run_id}, commit {commit}, {self.recorded_at}): "
            f"{self.statistic} {self.ratio:.3f}x [{self.lower:.3f}, {self.upper:.3f}], "
            f"{self.before_ms:.4g} -> {self.after_ms:.4g} ms, p = {self.p_value:.2g}"
        )
        return "; ".join((text, *self.notes))


@dataclass(frozen=True)
class HistoryCheck:
    """``history --check`` on one key: whether the newest run starts (or continues) a significant slowdown."""

    key: SeriesKey
    alarm: bool
    change: ChangePoint | None  # the shift the alarm is about (the first run of a creep), None without alarm
    newest: SeriesPoint | None
    runs: int
    sentence: str


@dataclass(frozen=True)
class _Shift:
    """Two segments compared: their levels (medians, ms), the Hodges-Lehmann ratio after / before, its interval."""

    before_ms: float
    after_ms: float
    ratio: float
    lower: float
    upper: float


def _usable(series: Series, statistic: str) -> tuple[list[int], np.ndarray]:
    """Positions in ``series.points`` of the runs with a positive, finite value, and the log of those values."""
    positions: list[int] = []
    logs: list[float] = []
    for position, point in enumerate(series.points):
        value = point.value(statistic)
        if value is not None and math.isfinite(value) and value > 0:
            positions.append(position)
            logs.append(math.log(value))
    return positions, np.asarray(logs, dtype=float)


def _compare(before: np.ndarray, after: np.ndarray) -> _Shift:
    """The Hodges-Lehmann ratio of ``after`` to ``before`` (log values) with its distribution-free interval: order
    statistics ``C`` and ``mn + 1 - C`` of the ``mn`` pairwise differences, ``C = floor(mn/2 - z sqrt(mn (m + n + 1)
    / 12))`` (Hollander & Wolfe, the Mann-Whitney critical value by the normal approximation), at least 1."""
    m, n = len(after), len(before)
    differences = np.sort(np.subtract.outer(after, before).ravel())
    z = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))
    rank = max(1, math.floor(m * n / 2 - z * math.sqrt(m * n * (m + n + 1) / 12)))
    return _Shift(
        before_ms=math.exp(float(np.median(before))),
        after_ms=math.exp(float(np.median(after))),
        ratio=math.exp(float(np.median(differences))),
        lower=math.exp(float(differences[rank - 1])),
        upper=math.exp(float(differences[m * n - rank])),
    )


@functools.cache
def _exact_upper_tail(m: int, n: int) -> np.ndarray:
    """``P(U >= u)``, u = 0..mn, for the Mann-Whitney U of m values against n under no change (no ties), from the
    counts' recurrence ``N(u; m, n) = N(u - n; m - 1, n) + N(u; m, n - 1)`` (sums only: exact in floats)."""
    size = m * n + 1
    counts = np.zeros((m + 1, size))
    counts[:, 0] = 1.0
    for others in range(1, n + 1):
        for own in range(1, m + 1):
            counts[own, others:] += counts[own - 1, : size - others]
    return np.cumsum(counts[m, ::-1])[::-1] / counts[m].sum()


def _split_p_values(ranks: np.ndarray) -> np.ndarray:
    """Two-sided Mann-Whitney p-values of every admissible split ``k`` (``MIN_SIZE <= k <= L - MIN_SIZE``: the first
    ``k`` ranks against the rest) of each row of ``ranks`` (..., L): exact when one side has at most ``EXACT_SIDE``
    values, else by the normal approximation with continuity correction (as scipy's ``mannwhitneyu``); a tied U
    (half-integer) is rounded towards its mean."""
    length = ranks.shape[-1]
    splits = np.arange(MIN_SIZE, length - MIN_SIZE + 1)
    pairs = splits * (length - splits)
    distance = np.abs(np.cumsum(ranks, axis=-1)[..., splits - 1] - splits * (splits + 1) / 2 - pairs / 2)
    p = 2 * stats.norm.sf((distance - 0.5) / np.sqrt(pairs * (length + 1) / 12))
    for column, split in enumerate(splits):
        small = min(int(split), length - int(split))
        if small <= EXACT_SIDE:
            farther = np.floor(pairs[column] / 2 + distance[..., column] + 1e-9).astype(int)
            p[..., column] = 2 * _exact_upper_tail(small, length - small)[farther]
    return np.minimum(p, 1.0)


@functools.cache
def _null_min_p(length: int) -> np.ndarray:
    """The smallest split p-value of ``PERMUTATIONS`` random orders of the ranks 1..length (seed 0), sorted."""
    rng = np.random.default_rng(0)
    ranks = np.arange(1.0, length + 1)
    chunks = [
        _split_p_values(rng.permuted(np.tile(ranks, (min(1000, PERMUTATIONS - done), 1)), axis=1)).min(axis=-1)
        for done in range(0, PERMUTATIONS, 1000)
    ]
    return np.sort(np.concatenate(chunks))


def _best_split(logs: np.ndarray) -> tuple[int, float]:
    """Where ``logs`` splits best (the index of the first value after the split with the smallest Mann-Whitney
    p-value) and the permutation p-value of "no change of level anywhere in ``logs``" by that smallest p-value: the
    search over split positions is part of the null distribution."""
    split_p = _split_p_values(stats.rankdata(logs))
    best = int(np.argmin(split_p))
    as_small = int(np.searchsorted(_null_min_p(len(logs)), split_p[best] * (1 + 1e-9), side="right"))
    return MIN_SIZE + best, (1 + as_small) / (PERMUTATIONS + 1)


def _segment(logs: np.ndarray) -> list[tuple[int, float]]:
    """The confirmed change points of ``logs`` (index of the first value of each new segment) and their p-values.

    PELT proposes; the least significant proposal is dropped while its p-value exceeds ``ALPHA``, and the changes on
    either side of a dropped one move to the best split of their new, longer neighbourhood."""
    n = len(logs)
    if n < 2 * MIN_SIZE:
        return []
    sigma = max(float(stats.median_abs_deviation(np.diff(logs), scale="normal")) / math.sqrt(2), SIGMA_FLOOR)
    breaks: list[int] = (
        ruptures.Pelt(model="l2", min_size=MIN_SIZE, jump=1).fit(logs).predict(pen=2 * sigma**2 * math.log(n))[:-1]
    )
    while breaks:
        edges = [0, *breaks, n]
        p_values = [_best_split(logs[edges[i] : edges[i + 2]])[1] for i in range(len(breaks))]
        weakest = int(np.argmax(p_values))
        if p_values[weakest] <= ALPHA:
            return list(zip(breaks, p_values, strict=True))
        del breaks[weakest]
        for i in (weakest - 1, weakest):  # the neighbours of the dropped change, now next to each other
            if 0 <= i < len(breaks):
                left = breaks[i - 1] if i > 0 else 0
                right = breaks[i + 1] if i + 1 < len(breaks) else n
                breaks[i] = left + _best_split(logs[left:right])[0]
    return []


def _change(
    series: Series, statistic: str, positions: list[int], at: int, shift: _Shift, p_value: float
) -> ChangePoint:
    """The change point at ``positions[at]`` (``at`` indexes the usable runs) with the figures of ``shift``."""
    point = series.points[positions[at]]
    notes: tuple[str, ...] = ()
    if at > 0:
        previous = series.points[positions[at - 1]].host_fingerprint
        current = point.host_fingerprint
        if previous and current and previous != current:
            notes = (
                f"the runner changed at this run: host fingerprint {previous} -> {current}; "
                "compare runs on one host before blaming the commit",
            )
    return ChangePoint(
        index=positions[at],
        run_id=point.run_id,
        commit=point.commit,
        recorded_at=point.recorded_at,
        statistic=statistic,
        **asdict(shift),
        p_value=p_value,
        direction="slowdown" if shift.ratio > 1 else "speedup",
        notes=notes,
    )


def _changes(
    series: Series, statistic: str, positions: list[int], logs: np.ndarray
) -> tuple[list[int], list[ChangePoint]]:
    """The segment edges (indices into ``logs``: 0, the confirmed change points, n) and the change points."""
    confirmed = _segment(logs)
    edges = [0, *(index for index, _ in confirmed), len(logs)]
    changes = [
        _change(
            series,
            statistic,
            positions,
            edges[i],
            _compare(logs[edges[i - 1] : edges[i]], logs[edges[i] : edges[i + 1]]),
            p_value,
        )
        for i, (_, p_value) in enumerate(confirmed, start=1)
    ]
    return edges, changes


def detect_changes(series: Series, statistic: str = "p50") -> list[ChangePoint]:
    """The sustained, significant shifts of ``statistic`` over the series, oldest first (module docstring)."""
    positions, logs = _usable(series, statistic)
    return _changes(series, statistic, positions, logs)[1]


def check_newest(series: Series, statistic: str = "p50") -> HistoryCheck:
    """Whether the newest run with ``statistic`` belongs to a slowdown that is still going on (module docstring)."""
    return analyse(series, statistic)[1]


def analyse(series: Series, statistic: str = "p50") -> tuple[list[ChangePoint], HistoryCheck]:
    """:func:`detect_changes` and :func:`check_newest` from one segmentation of the series."""
    positions, logs = _usable(series, statistic)
    edges, changes = _changes(series, statistic, positions, logs)
    return changes, _check(series, statistic, positions, logs, edges, changes)


def _check(series: Series, statistic: str, positions: list[int], logs: np.ndarray, edges: list[int],
           changes: list[ChangePoint]) -> HistoryCheck:
    runs = len(positions)
    label = series.key.label()
    if runs < MIN_RUNS:
        newest = series.points[positions[-1]] if positions else None
        sentence = f"{label}: too few runs to check: {runs} with a {statistic} (at least {MIN_RUNS} needed)"
        return HistoryCheck(series.key, False, None, newest, runs, sentence)
    newest = series.points[positions[-1]]
    newest_text = f"the newest run (run {positions[-1] + 1}, commit {newest.short_commit()})"
    first = len(changes)
    while first > 0 and changes[first - 1].direction == "slowdown":
        first -= 1
    if first == len(changes):
        if changes:
            sentence = f"{label}: no alarm: the last shift is a {changes[-1].sentence()}; {newest_text} is after it"
        else:
            sentence = f"{label}: no alarm: no sustained shift of {statistic} in the {runs} runs up to {newest_text}"
        return HistoryCheck(series.key, False, None, newest, runs, sentence)
    # changes[i] starts at edges[i + 1]: the baseline is the segment before the first slowdown of the chain
    baseline, start, newest_start = edges[first], edges[first + 1], edges[-2]
    shift = _compare(logs[baseline:start], logs[newest_start:])
    p_value = float(stats.mannwhitneyu(logs[newest_start:], logs[baseline:start], alternative="greater").pvalue)
    change = replace(changes[first], **asdict(shift), p_value=p_value)
    commit = change.commit[:10] if change.commit else "no commit"
    figures = (
        f"{statistic} {shift.ratio:.3f}x [{shift.lower:.3f}, {shift.upper:.3f}] of the {start - baseline} "
        f"runs before it, p = {p_value:.2g}"
    )
    alarm = p_value < ALPHA and shift.lower > 1
    if alarm:
        sentence = (
            f"{label}: slowdown since run {change.index + 1} (commit {commit}): {figures}; "
            f"{newest_text} continues it ({runs - start} runs so far)"
        )
    else:
        sentence = (
            f"{label}: no alarm: the newest level is not significantly above the level before run "
            f"{change.index + 1} (commit {commit}): {figures}"
        )
    sentence = "; ".join((sentence, *change.notes))
    return HistoryCheck(series.key, alarm, change if alarm else None, newest, runs, sentence)
