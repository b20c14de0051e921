"""A profile's stability policy applied to a run's diagnosis: which rules a measurement breaks.

A measurement that breaks its profile's policy (too noisy, drifting, bursty, loaded, wrong governor,
throttled) gets the INVALID verdict wherever budgets are judged (:func:`edgeopt.evaluate.gate.gate_measurement`).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeopt.core.stability import NOT_EXPOSED, StabilityReport
from edgeopt.profiles.schema import Stability

__all__ = ["PolicyViolation", "check_policy"]


@dataclass(frozen=True)
class PolicyViolation:
    """One broken stability rule: the profile key, its limit, the value seen and a sentence."""

    rule: str
    limit: float | str | bool
    value: float | str | None
    sentence: str


def check_policy(report: StabilityReport, policy: Stability, *, on_target: bool = True) -> list[PolicyViolation]:
    """The rules of ``policy`` that ``report`` breaks (empty: the measurement is valid).

    A drift counts only when Kendall's test finds a trend (p < 0.05).  Rules on the machine's state
    (governor) that cannot be checked because the OS does not expose it break the policy on the
    profile's own hardware (``on_target``), and are skipped on a proxy host.
    """
    found: list[PolicyViolation] = []
    s, system = report.samples, report.system

    def broken(rule: str, limit: float | str | bool, value: float | str | None, text: str) -> None:
        found.append(PolicyViolation(rule, limit, value, f"invalid measurement: {text}"))

    if policy.max_cv is not None and s.cv > policy.max_cv:
        broken("max_cv", policy.max_cv, s.cv, f"cv {s.cv:.1%} of {s.n} samples > max_cv {policy.max_cv:.1%}")
    if (policy.max_drift_rel is not None and s.drift_rel is not None and s.drift_significant
            and abs(s.drift_rel) > policy.max_drift_rel):
        broken("max_drift_rel", policy.max_drift_rel, s.drift_rel,
               f"drift {s.drift_rel:+.1%} across the run (Kendall p={s.drift_p_value:.2g}) > max_drift_rel "
               f"{policy.max_drift_rel:.1%}")
    if policy.max_outlier_fraction is not None and s.outlier_fraction > policy.max_outlier_fraction:
        broken("max_outlier_fraction", policy.max_outlier_fraction, s.outlier_fraction,
               f"outliers {s.outlier_fraction:.1%} of samples above {s.outlier_threshold_ms:.4g} ms (Q3 + 3 IQR; "
               f"longest burst {s.longest_outlier_run}) > max_outlier_fraction {policy.max_outlier_fraction:.1%}")
    limit = policy.max_load_avg_per_core
    if limit is not None and isinstance(system.load_avg_per_core, float) and system.load_avg_per_core > limit:
        broken("max_load_avg_per_core", limit, system.load_avg_per_core,
               f"load average {system.load_avg_1m:.2f} before the run = {system.load_avg_per_core:.2f} per core "
               f"({system.logical_cores} cores) > max_load_avg_per_core {limit:g}; wait for a quiet host with "
               "'edgeopt run --wait-for-quiet SECONDS', or compare two variants with 'edgeopt ab', which interleaves "
               "them and tolerates load")
    if (want := policy.required_governor) is not None:
        if isinstance(system.governors, dict):
            off = sorted(f"{cpu} {g}" for cpu, g in system.governors.items() if g != want)
            if off:
                broken("required_governor", want, ", ".join(off),
                       f"cpufreq governor {', '.join(off)} != required_governor {want}")
        elif on_target:
            broken("required_governor", want, NOT_EXPOSED,
                   f"required_governor {want} cannot be verified: the cpufreq governor is {NOT_EXPOSED}")
    if policy.fail_on_throttling and isinstance(system.throttle_events, dict):
        hot = {cpu: d for cpu, d in system.throttle_events.items() if d > 0}
        if hot:
            where = ", ".join(f"{cpu} +{d}" for cpu, d in sorted(hot.items()))
            broken("fail_on_throttling", True, sum(hot.values()),
                   f"thermal throttling during the run ({where}) with fail_on_throttling true")
    return found
