"""Stability diagnosis: is a latency run trustworthy enough to be judged at all?

Two halves, both light enough for the timing worker (standard library, numpy, psutil only):

* **Samples** (:func:`diagnose_samples`): coefficient of variation; drift across the run (the run is
  split into k >= 5 consecutive blocks, the Theil-Sen slope of the block medians gives the change
  from the first to the last block, relative to the first, and Kendall's rank correlation of block
  medians against block order says whether the trend is significant); outlier bursts (samples above
  Q3 + 3 IQR, their fraction and the longest consecutive run); a bimodality hint (a wide empty gap
  between two dense groups).
* **System state** (:func:`probe_system` before the run, :func:`snapshot` around the timed loop):
  load average, cpufreq governor and current/min/max frequency per CPU, thermal-throttle counters,
  CPU steal and other processes' CPU use during the loop, and on a Jetson the ``nvpmodel`` power
  mode and whether ``jetson_clocks`` pinned the clocks.  What the OS does not expose is recorded as
  :data:`NOT_EXPOSED`, never guessed.

:func:`edgeopt.evaluate.stability_policy.check_policy` judges a :class:`StabilityReport` against a
profile's ``stability`` section; a measurement that breaks a rule is *invalid* (see ``edgeopt.evaluate.gate``).
"""

from __future__ import annotations

import glob
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

NOT_EXPOSED = "not exposed by this OS"
NOT_RECORDED = "not recorded"  # a measurement stored before edgeopt probed the system
DRIFT_BLOCKS = 10  # blocks of the run for the drift estimate (fewer for short runs, never below 5)
MIN_BLOCKS = 5
MIN_BLOCK_SIZE = 10
DRIFT_ALPHA = 0.05  # a drift counts against max_drift_rel only when Kendall's test rejects "no trend" at 5 %
OUTLIER_IQR_FACTOR = 3.0
_CPU_DIRS = "/sys/devices/system/cpu/cpu[0-9]*"
_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


# ------------------------------------------------------------------------------------------------ samples


def theil_sen(y: Sequence[float]) -> tuple[float, float]:
    """Theil-Sen line through ``(i, y[i])``: (slope, intercept); the median of pairwise slopes."""
    values = np.asarray(y, dtype=np.float64)
    i, j = np.triu_indices(len(values), k=1)
    slope = float(np.median((values[j] - values[i]) / (j - i)))
    intercept = float(np.median(values - slope * np.arange(len(values))))
    return slope, intercept


def _mahonian(n: int) -> np.ndarray:
    """Number of permutations of n items with each count of inversions (0 .. n(n-1)/2)."""
    counts = np.array([1.0])
    for m in range(2, n + 1):
        counts = np.convolve(counts, np.ones(m))
    return counts


def kendall_trend(y: Sequence[float]) -> tuple[float, float]:
    """Kendall's tau between order and ``y`` and the two-sided p-value of "no trend".

    Exact (permutation distribution) without ties; with ties, the normal approximation with the
    tie-corrected variance of S.  A constant sequence gives (0, 1).
    """
    values = np.asarray(y, dtype=np.float64)
    n = len(values)
    i, j = np.triu_indices(n, k=1)
    signs = np.sign(values[j] - values[i])
    s = int(signs.sum())
    pairs = n * (n - 1) // 2
    _, tie_sizes = np.unique(values, return_counts=True)
    tied_pairs = int(sum(t * (t - 1) // 2 for t in tie_sizes))
    if tied_pairs == pairs:
        return 0.0, 1.0
    tau = s / math.sqrt(pairs * (pairs - tied_pairs))
    if tied_pairs == 0:
        counts = _mahonian(n)  # S = pairs - 2 * inversions
        s_values = pairs - 2 * np.arange(len(counts))
        p = float(counts[np.abs(s_values) >= abs(s)].sum() / counts.sum())
        return tau, min(1.0, p)
    var = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in tie_sizes)) / 18.0
    z = (abs(s) - 1) / math.sqrt(var)  # continuity correction
    return tau, min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2.0)))


def _quartile(sorted_x: np.ndarray, q: float) -> float:
    """Nearest-rank quantile of already sorted values (the estimator used everywhere in edgeopt)."""
    rank = min(max(math.ceil(round(q * len(sorted_x), 9)), 1), len(sorted_x))
    return float(sorted_x[rank - 1])


def longest_run(flags: np.ndarray) -> int:
    """Length of the longest run of consecutive True values."""
    best = run = 0
    for flag in flags.tolist():
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


@dataclass(frozen=True)
class Bimodality:
    """Two dense groups separated by an empty gap: the lower and upper mode (medians) and their shares."""

    lower_ms: float
    upper_ms: float
    upper_fraction: float
    gap_ms: float

    def describe(self) -> str:
        return (f"two modes: {self.lower_ms:.4g} ms ({1 - self.upper_fraction:.0%}) and {self.upper_ms:.4g} ms "
                f"({self.upper_fraction:.0%}), empty gap {self.gap_ms:.3g} ms")


def bimodality_hint(samples_ms: np.ndarray, *, min_share: float = 0.1) -> Bimodality | None:
    """A hint, not a test: the widest gap between sorted samples with at least ``min_share`` on each
    side counts when it is at least 3x the wider group's IQR and at least 5 % of the median."""
    x = np.sort(np.asarray(samples_ms, dtype=np.float64))
    n = len(x)
    lo, hi = max(2, math.ceil(min_share * n)), n - max(2, math.ceil(min_share * n))
    if n < 20 or hi <= lo:
        return None
    gaps = np.diff(x)[lo - 1:hi]  # gap before index lo .. hi
    k = int(np.argmax(gaps)) + lo
    gap = float(x[k] - x[k - 1])
    below, above = x[:k], x[k:]
    spread = max(_quartile(below, 0.75) - _quartile(below, 0.25), _quartile(above, 0.75) - _quartile(above, 0.25))
    if gap < 3.0 * spread or gap < 0.05 * _quartile(x, 0.5):
        return None
    return Bimodality(float(np.median(below)), float(np.median(above)), len(above) / n, gap)


@dataclass(frozen=True)
class SampleDiagnosis:
    """What the raw samples of one run say about its stability (milliseconds; fractions in 0..1)."""

    n: int
    mean_ms: float
    cv: float  # sample standard deviation / mean
    robust_cv: float  # (IQR / 1.349) / median: the spread of the bulk, insensitive to rare hiccups
    blocks: int  # 0 when the run is too short for a drift estimate
    block_medians_ms: tuple[float, ...]
    drift_rel: float | None  # Theil-Sen change from the first to the last block, relative to the first
    drift_tau: float | None  # Kendall's tau of block medians against block order
    drift_p_value: float | None
    outlier_threshold_ms: float
    outlier_count: int
    outlier_fraction: float
    longest_outlier_run: int
    bimodality: Bimodality | None

    @property
    def drift_significant(self) -> bool:
        return self.drift_p_value is not None and self.drift_p_value < DRIFT_ALPHA

    def drift_text(self) -> str:
        if self.drift_rel is None or self.drift_p_value is None:
            return f"drift n/a (n={self.n} < {MIN_BLOCKS * MIN_BLOCK_SIZE} samples)"
        trend = "significant" if self.drift_significant else "not significant"
        return (f"drift {self.drift_rel:+.1%} across the run ({self.blocks} blocks, Kendall tau "
                f"{self.drift_tau:+.2f}, p={self.drift_p_value:.2g}, {trend})")

    def describe(self) -> str:
        text = (f"cv {self.cv:.1%} (robust {self.robust_cv:.1%}), {self.drift_text()}, outliers "
                f"{self.outlier_fraction:.1%} > {self.outlier_threshold_ms:.4g} ms (longest run "
                f"{self.longest_outlier_run})")
        return text + (f", {self.bimodality.describe()}" if self.bimodality else "")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["block_medians_ms"] = list(self.block_medians_ms)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SampleDiagnosis:
        bimodality = data.get("bimodality")
        return cls(**{**data, "block_medians_ms": tuple(data["block_medians_ms"]),
                      "bimodality": Bimodality(**bimodality) if bimodality else None})


def diagnose_samples(samples_ns: Sequence[int] | np.ndarray, *, blocks: int = DRIFT_BLOCKS) -> SampleDiagnosis:
    """Diagnose a run from its raw samples in nanoseconds, in the order they were taken."""
    x = np.asarray(samples_ns, dtype=np.float64) / 1e6
    n = len(x)
    if n < 2:
        raise ValueError(f"need at least 2 samples to diagnose a run, got {n}")
    mean = float(x.mean())
    s = np.sort(x)
    q1, median, q3 = _quartile(s, 0.25), _quartile(s, 0.5), _quartile(s, 0.75)
    iqr = q3 - q1
    k = min(blocks, n // MIN_BLOCK_SIZE)
    medians: tuple[float, ...] = ()
    drift = tau = p = None
    if k >= MIN_BLOCKS:
        medians = tuple(float(np.median(b)) for b in np.array_split(x, k))
        slope, first = theil_sen(medians)
        drift = slope * (k - 1) / first if first > 0 else None
        tau, p = kendall_trend(medians)
    threshold = q3 + OUTLIER_IQR_FACTOR * iqr
    outliers = x > threshold
    count = int(outliers.sum())
    return SampleDiagnosis(
        n=n, mean_ms=mean, cv=float(x.std(ddof=1) / mean) if mean > 0 else 0.0,
        robust_cv=(iqr / 1.349) / median if median > 0 else 0.0, blocks=k if medians else 0,
        block_medians_ms=medians, drift_rel=drift, drift_tau=tau, drift_p_value=p, outlier_threshold_ms=threshold,
        outlier_count=count, outlier_fraction=count / n, longest_outlier_run=longest_run(outliers),
        bimodality=bimodality_hint(x),
    )


# ------------------------------------------------------------------------------------------- system state


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _cpu_dirs() -> list[str]:
    return sorted(glob.glob(_CPU_DIRS), key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0))


def _per_cpu(read: Any) -> dict[str, Any] | str:
    found = {os.path.basename(d): value for d in _cpu_dirs() if (value := read(d)) is not None}
    return found or NOT_EXPOSED


def _governor(cpu_dir: str) -> str | None:
    return _read(f"{cpu_dir}/cpufreq/scaling_governor")


def _frequencies(cpu_dir: str) -> dict[str, int] | None:
    found = {}
    for key, name in (("cur_khz", "scaling_cur_freq"), ("min_khz", "scaling_min_freq"),
                      ("max_khz", "cpuinfo_max_freq"), ("hw_min_khz", "cpuinfo_min_freq")):
        text = _read(f"{cpu_dir}/cpufreq/{name}")
        if text is not None and text.isdigit():
            found[key] = int(text)
    return found or None


def _throttle_counts(cpu_dir: str) -> dict[str, int] | None:
    found = {}
    for path in glob.glob(f"{cpu_dir}/thermal_throttle/*_throttle_count"):
        text = _read(path)
        if text is not None and text.isdigit():
            found[os.path.basename(path)] = int(text)
    return found or None


def _proc_stat() -> list[int] | str:
    text = _read("/proc/stat")
    if not text or not text.startswith("cpu "):
        return NOT_EXPOSED
    return [int(v) for v in text.splitlines()[0].split()[1:1 + len(_STAT_FIELDS)]]


def _load_average() -> list[float] | str:
    try:
        return [float(v) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return NOT_EXPOSED


def snapshot() -> dict[str, Any]:
    """Cheap counters taken right before and right after the timed loop (a few file reads)."""
    times = os.times()
    return {"time_ns": time.perf_counter_ns(), "self_cpu_s": times.user + times.system, "proc_stat": _proc_stat(),
            "throttle": _per_cpu(_throttle_counts), "freq": _per_cpu(_frequencies), "load_avg": _load_average()}


def is_jetson() -> bool:
    model = _read("/proc/device-tree/model") or ""
    return os.path.exists("/etc/nv_tegra_release") or "jetson" in model.lower()


def _power_mode() -> str:
    exe = shutil.which("nvpmodel")
    if exe is None:
        return "unknown (nvpmodel not found)"
    try:
        out = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=3)
    except (OSError, subprocess.SubprocessError) as error:
        return f"unknown (nvpmodel -q: {type(error).__name__})"
    match = re.search(r"NV Power Mode:\s*(\S+)", out.stdout)
    if match is None:
        return f"unknown (nvpmodel -q exited {out.returncode})"
    number = next((line.strip() for line in out.stdout.splitlines()[1:] if line.strip().isdigit()), None)
    return match.group(1) + (f" (mode {number})" if number else "")


def _clocks_state() -> str:
    """Whether the CPU and devfreq (GPU, ...) clocks are pinned at their maximum, as jetson_clocks does."""
    pinned: list[bool] = []
    for cpu_dir in _cpu_dirs():
        lo, hi = _read(f"{cpu_dir}/cpufreq/scaling_min_freq"), _read(f"{cpu_dir}/cpufreq/scaling_max_freq")
        if lo and hi and lo.isdigit() and hi.isdigit():
            pinned.append(int(lo) >= int(hi))
    for dev in glob.glob("/sys/class/devfreq/*"):
        lo, hi = _read(f"{dev}/min_freq"), _read(f"{dev}/max_freq")
        if lo and hi and lo.isdigit() and hi.isdigit():
            pinned.append(int(lo) >= int(hi))
    if not pinned:
        return "unknown (no readable cpufreq or devfreq limits)"
    state = "on" if all(pinned) else "off"
    return f"{state} ({sum(pinned)} of {len(pinned)} CPU/devfreq clocks have min = max)"


def probe_system() -> dict[str, Any]:
    """System state before the run: load average, governors, frequencies, throttle counters, Jetson mode."""
    state: dict[str, Any] = {"load_avg": _load_average(), "logical_cores": os.cpu_count() or 1,
                             "governors": _per_cpu(_governor), "freq": _per_cpu(_frequencies),
                             "throttle": _per_cpu(_throttle_counts), "jetson": None}
    if is_jetson():
        state["jetson"] = {"power_mode": _power_mode(), "clocks": _clocks_state()}
    return state


@dataclass(frozen=True)
class SystemState:
    """The system as the worker saw it; every field is a value or NOT_EXPOSED (never a guess)."""

    load_avg_1m: float | str
    logical_cores: int
    load_avg_per_core: float | str
    governors: dict[str, str] | str
    frequencies_khz: dict[str, dict[str, int]] | str
    throttle_events: dict[str, int] | str  # increase of each CPU's throttle counters over the timed loop
    steal_fraction: float | str  # share of CPU time stolen by the hypervisor during the loop
    others_cpu_cores: float | str  # CPU used by other processes during the loop, in cores
    worker_cpu_share: float | str  # the worker's CPU time / wall time in the loop (below ~1: it was preempted)
    jetson: dict[str, str] | None  # None: not a Jetson

    def describe(self) -> str:
        def num(v: float | str, fmt: str) -> str:
            return v if isinstance(v, str) else format(v, fmt)

        governors = (self.governors if isinstance(self.governors, str)
                     else ",".join(sorted(set(self.governors.values()))))
        throttle = (self.throttle_events if isinstance(self.throttle_events, str)
                    else str(sum(self.throttle_events.values())))
        parts = [f"load {num(self.load_avg_1m, '.2f')} ({num(self.load_avg_per_core, '.2f')}/core)",
                 f"governor {governors}", f"throttle events {throttle}", f"steal {num(self.steal_fraction, '.1%')}",
                 f"others' CPU {num(self.others_cpu_cores, '.2f')} cores",
                 f"worker on-CPU {num(self.worker_cpu_share, '.0%')}"]
        if self.jetson is not None:
            parts += [f"power mode {self.jetson.get('power_mode')}", f"jetson_clocks {self.jetson.get('clocks')}"]
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SystemState:
        return cls(**data)


def _throttle_delta(start: Any, end: Any) -> dict[str, int] | str:
    if not isinstance(start, dict) or not isinstance(end, dict):
        return NOT_EXPOSED
    return {cpu: sum(end.get(cpu, {}).get(k, v) - v for k, v in counters.items()) for cpu, counters in start.items()}


def summarize_system(probe: dict[str, Any] | None) -> SystemState:
    """Turn the worker's raw probe (``before``, ``loop_start``, ``loop_end``) into a :class:`SystemState`."""
    missing = NOT_RECORDED if probe is None else NOT_EXPOSED
    probe = probe or {}
    before, start, end = probe.get("before") or {}, probe.get("loop_start") or {}, probe.get("loop_end") or {}
    cores = int(before.get("logical_cores") or os.cpu_count() or 1)
    load = before.get("load_avg", missing)
    load_1m: float | str = float(load[0]) if isinstance(load, list) and load else missing
    steal: float | str = missing
    others: float | str = missing
    share: float | str = missing
    a, b = start.get("proc_stat"), end.get("proc_stat")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) == len(_STAT_FIELDS):
        delta = [y - x for x, y in zip(a, b, strict=True)]
        total = sum(delta)
        if total > 0:
            steal = delta[_STAT_FIELDS.index("steal")] / total
            ticks_per_s = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
            wall_s = (end["time_ns"] - start["time_ns"]) / 1e9
            busy_s = (total - delta[_STAT_FIELDS.index("idle")] - delta[_STAT_FIELDS.index("iowait")]
                      - delta[_STAT_FIELDS.index("steal")]) / ticks_per_s
            own_s = end["self_cpu_s"] - start["self_cpu_s"]
            if wall_s > 0:
                others, share = max(0.0, busy_s - own_s) / wall_s, own_s / wall_s
    throttle = _throttle_delta(start.get("throttle"), end.get("throttle"))
    return SystemState(
        load_avg_1m=load_1m, logical_cores=cores,
        load_avg_per_core=load_1m / cores if isinstance(load_1m, float) else missing,
        governors=before.get("governors", missing), frequencies_khz=before.get("freq", missing),
        throttle_events=missing if probe is None else throttle,
        steal_fraction=steal, others_cpu_cores=others, worker_cpu_share=share, jetson=before.get("jetson"),
    )


# ------------------------------------------------------------------------------------------ report, policy


@dataclass(frozen=True)
class StabilityReport:
    """Samples diagnosis plus system state of one measurement; stored in ``Measurement.stability``."""

    samples: SampleDiagnosis
    system: SystemState
    probe: dict[str, Any] | None = None  # the worker's raw readings, kept for the record

    def describe(self) -> str:
        return f"{self.samples.describe()}; {self.system.describe()}"

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples.to_dict(), "system": self.system.to_dict(), "probe": self.probe}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StabilityReport:
        return cls(SampleDiagnosis.from_dict(data["samples"]), SystemState.from_dict(data["system"]),
                   data.get("probe"))


def stability_report(samples_ns: Sequence[int], probe: dict[str, Any] | None) -> StabilityReport:
    """Diagnose a run: its raw samples (ns, in order) and the worker's system probe (None: not recorded)."""
    return StabilityReport(diagnose_samples(samples_ns), summarize_system(probe), probe)
