"""Budgets -> verdicts: judge one measurement against a hardware profile's budgets.

A latency budget is judged by its percentile's confidence interval: pass when the whole interval is
at or under the limit, fail when it is wholly over, inconclusive when it straddles the limit (or
there is no interval yet).  Memory and size budgets are judged on the value itself.  Output budgets
(``min_cosine``, ``min_top1_agreement``, ``min_decision_agreement``, ``max_metric_drop``) are judged by
:func:`judge_outputs` once the variant's outputs are compared with fp32's, by the same rule.  A host that is
not the profile's hardware gets not-applicable, unless the caller asked for a labelled proxy run.
A measurement that breaks its profile's stability policy (``edgeopt.core.stability``) is *invalid*: it
gets neither pass nor fail, whatever its numbers.
Pass/fail is a value (:class:`GateResult`, truthy when it passed); :func:`exit_code_for` maps
results to the CLI's exit code.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from edgeopt.core.host import HostFingerprint
from edgeopt.core.stats import PERCENTILES, SampleSummary, min_samples_for_ci, samples_needed, wilson_interval
from edgeopt.errors import (
    EXIT_BACKEND_FAILURE,
    EXIT_BUDGET_FAILED,
    EXIT_INCONCLUSIVE,
    EXIT_OK,
    ConfigError,
)
from edgeopt.evaluate.fidelity import OutputFidelity, SliceFidelity, nonfinite_problems, worst
from edgeopt.evaluate.metrics import MetricResult
from edgeopt.evaluate.stability_policy import check_policy
from edgeopt.measure.results import Measurement
from edgeopt.profiles.schema import HardwareProfile, match_identity


class Verdict(str, Enum):
    """The verdict of one budget check, or of a gate (the worst of its checks)."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NOT_APPLICABLE = "not-applicable"
    INVALID = "invalid"  # the measurement broke its profile's stability policy: not judged


# Budget metric -> (label used in sentences, unit).  Latency metrics are judged by their CI.
_LATENCY_METRICS: dict[str, str] = {"p50_ms": "p50", "p90_ms": "p90", "p95_ms": "p95", "p99_ms": "p99"}
_DIRECT_METRICS: dict[str, str] = {"peak_rss_mb": "peak RSS", "model_size_mb": "model size"}
# Output budgets, judged once the variant's outputs are compared with fp32's (:func:`judge_outputs`):
# a floor on the worst output's figure; agreements by their Wilson interval, the cosine on its value.
_OUTPUT_METRICS: dict[str, str] = {"min_cosine": "cosine vs fp32", "min_top1_agreement": "top-1 agreement with fp32",
                                   "min_decision_agreement": "decision agreement with fp32"}
_DROP_METRIC = "max_metric_drop"  # the eval metric's drop vs fp32 (paired interval); points for percent metrics
_FINITE_CHECK = "finite_outputs"  # the check a NaN/Inf-producing variant fails when no output budget is set
_SLICE_CHECK = "output_slices"  # the check a variant that lost a slice of an output fails when no floor is set
BUDGET_METRICS: tuple[str, ...] = (*_LATENCY_METRICS, *_DIRECT_METRICS, *_OUTPUT_METRICS, _DROP_METRIC)
OUTPUT_BUDGETS: tuple[str, ...] = (*_OUTPUT_METRICS, _DROP_METRIC)
_UNITS: dict[str, str] = {**dict.fromkeys(_LATENCY_METRICS, "ms"), **dict.fromkeys(_DIRECT_METRICS, "MB"),
                          **dict.fromkeys(_OUTPUT_METRICS, "(a share, 0..1)"), _DROP_METRIC: "(metric units)"}


def _fmt(v: float) -> str:
    return f"{v:.2f}" if v == 0 or abs(v) >= 0.1 else f"{v:.3g}"


@dataclass(frozen=True)
class BudgetCheck:
    """The verdict on one budget, with the numbers and a sentence a human understands."""

    metric: str
    limit: float
    value: float | None
    lower: float | None
    upper: float | None
    verdict: Verdict
    sentence: str
    samples_needed: int | None = None
    proxy: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric, "limit": self.limit, "value": self.value, "lower": self.lower,
            "upper": self.upper, "verdict": self.verdict.value, "sentence": self.sentence,
            "samples_needed": self.samples_needed, "proxy": self.proxy,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BudgetCheck:
        def opt(v: Any) -> float | None:
            return None if v is None else float(v)

        needed = data.get("samples_needed")
        return cls(
            metric=str(data["metric"]), limit=float(data["limit"]), value=opt(data.get("value")),
            lower=opt(data.get("lower")), upper=opt(data.get("upper")), verdict=Verdict(data["verdict"]),
            sentence=str(data["sentence"]), samples_needed=None if needed is None else int(needed),
            proxy=bool(data.get("proxy", False)),
        )


@dataclass(frozen=True)
class GateResult:
    """All budget checks of one variant on one profile; truthy only when the overall verdict is PASS."""

    variant: str
    profile: str
    checks: tuple[BudgetCheck, ...]
    host_matches: bool
    proxy: bool
    mismatch_reasons: tuple[str, ...] = ()
    invalid_reasons: tuple[str, ...] = ()  # broken stability rules, one sentence each

    @property
    def verdict(self) -> Verdict:
        """INVALID if the measurement broke its stability policy (never pass or fail), else FAIL if any
        check failed, else INCONCLUSIVE, else NOT_APPLICABLE, else PASS.

        With no budgets (``checks`` empty) the verdict is PASS (or INVALID).
        """
        if self.invalid_reasons:
            return Verdict.INVALID
        verdicts = {c.verdict for c in self.checks}
        for v in (Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.NOT_APPLICABLE):
            if v in verdicts:
                return v
        return Verdict.PASS

    def __bool__(self) -> bool:
        return self.verdict is Verdict.PASS

    @property
    def violations(self) -> list[str]:
        """Sentences of the failed checks."""
        return [c.sentence for c in self.checks if c.verdict is Verdict.FAIL]

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant, "profile": self.profile, "verdict": self.verdict.value,
            "host_matches": self.host_matches, "proxy": self.proxy,
            "mismatch_reasons": list(self.mismatch_reasons), "invalid_reasons": list(self.invalid_reasons),
            "checks": [c.to_dict() for c in self.checks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        """Inverse of :meth:`to_dict` (the stored overall verdict is recomputed, not read)."""
        return cls(
            variant=str(data["variant"]), profile=str(data["profile"]),
            checks=tuple(BudgetCheck.from_dict(c) for c in data.get("checks", ())),
            host_matches=bool(data["host_matches"]), proxy=bool(data.get("proxy", False)),
            mismatch_reasons=tuple(str(r) for r in data.get("mismatch_reasons", ())),
            invalid_reasons=tuple(str(r) for r in data.get("invalid_reasons", ())),
        )


@dataclass(frozen=True)
class _Context:
    profile: str
    host: str
    host_matches: bool
    proxy: bool
    mismatch_reasons: tuple[str, ...]
    time_cap_s: float | None = None  # the loop stopped at bench.max_seconds (None: it stopped otherwise)

    def where(self) -> str:
        if self.proxy:
            return f", measured on {self.host}, not on {self.profile}"
        return f" on {self.profile}"

    def finish(self, sentence: str) -> str:
        return f"PROXY {sentence}" if self.proxy else sentence


def _not_applicable(metric: str, limit: float, value: float | None, lower: float | None,
                    upper: float | None, numbers: str, ctx: _Context) -> BudgetCheck:
    why = f" ({'; '.join(ctx.mismatch_reasons)})" if ctx.mismatch_reasons else ""
    sentence = f"{numbers} on {ctx.host}: not applicable, this host is not {ctx.profile}{why}"
    return BudgetCheck(metric, limit, value, lower, upper, Verdict.NOT_APPLICABLE, sentence)


def _missing(metric: str, limit: float, label: str, unit: str, ctx: _Context) -> BudgetCheck:
    if not ctx.host_matches and not ctx.proxy:
        return _not_applicable(metric, limit, None, None, None, f"{label} (not measured)", ctx)
    sentence = ctx.finish(
        f"{label}: value missing (not measured), cannot judge budget {_fmt(limit)} {unit}"
        f"{ctx.where()}: inconclusive"
    )
    return BudgetCheck(metric, limit, None, None, None, Verdict.INCONCLUSIVE, sentence, proxy=ctx.proxy)


def _check_latency(metric: str, limit: float, latency: SampleSummary | None, ctx: _Context) -> BudgetCheck:
    label = _LATENCY_METRICS[metric]
    est = None if latency is None else latency.percentiles.get(label)
    if latency is None or est is None:
        return _missing(metric, limit, label, "ms", ctx)
    value, lower, upper = est.value, est.lower, est.upper
    if not all(math.isfinite(v) for v in (value, lower, upper) if v is not None):
        return _not_a_number(metric, limit, value, lower, upper, f"{label} {value} ms [{lower}, {upper}]", "ms", ctx)
    if lower is None or upper is None:
        numbers = f"{label} {_fmt(value)} ms (no CI)"
        if not ctx.host_matches and not ctx.proxy:
            return _not_applicable(metric, limit, value, None, None, numbers, ctx)
        need = min_samples_for_ci(PERCENTILES[label], est.confidence)
        got = (f"got {latency.n} in max_seconds {ctx.time_cap_s:g} s (raise bench.max_seconds or set "
               "bench.sample_floor)" if ctx.time_cap_s is not None else f"got {latency.n}")
        sentence = ctx.finish(
            f"{label} {_fmt(value)} ms vs budget {_fmt(limit)} ms{ctx.where()}: inconclusive, needs {need} samples "
            f"for its {label} interval ({est.confidence:.0%}); {got}"
        )
        return BudgetCheck(metric, limit, value, None, None, Verdict.INCONCLUSIVE, sentence, need, ctx.proxy)
    numbers = f"{label} {_fmt(value)} ms [{_fmt(lower)}, {_fmt(upper)}]"
    if not ctx.host_matches and not ctx.proxy:
        return _not_applicable(metric, limit, value, lower, upper, numbers, ctx)
    needed: int | None = None
    if upper <= limit:
        verdict, text = Verdict.PASS, f"{numbers} <= budget {_fmt(limit)} ms{ctx.where()}"
    elif lower > limit:
        verdict, text = Verdict.FAIL, f"{numbers} > budget {_fmt(limit)} ms{ctx.where()}"
    else:
        verdict = Verdict.INCONCLUSIVE
        needed = samples_needed(latency.n, est, limit)
        decide = (
            f"about {needed} samples in total would decide" if needed is not None
            else "the estimate equals the budget, more samples will not decide"
        )
        text = f"{numbers} straddles budget {_fmt(limit)} ms{ctx.where()}: inconclusive, {decide}"
    return BudgetCheck(metric, limit, value, lower, upper, verdict, ctx.finish(text), needed, ctx.proxy)


def _not_a_number(metric: str, limit: float, value: float | None, lower: float | None, upper: float | None,
                  numbers: str, unit: str, ctx: _Context) -> BudgetCheck:
    """A latency, memory or size figure that is NaN/Inf: never compared with its budget (NaN is neither under
    nor over it); inconclusive.  (Stored measurements never get here: their loader refuses such a file.)"""
    if not ctx.host_matches and not ctx.proxy:
        return _not_applicable(metric, limit, value, lower, upper, numbers, ctx)
    sentence = ctx.finish(f"{numbers} is not a finite number, cannot judge budget {_fmt(limit)} {unit}"
                          f"{ctx.where()}: inconclusive")
    return BudgetCheck(metric, limit, value, lower, upper, Verdict.INCONCLUSIVE, sentence, None, ctx.proxy)


def _check_direct(metric: str, limit: float, value: float | None, ctx: _Context) -> BudgetCheck:
    label = _DIRECT_METRICS[metric]
    if value is None:
        return _missing(metric, limit, label, "MB", ctx)
    if not math.isfinite(value):
        return _not_a_number(metric, limit, value, None, None, f"{label} {value} MB", "MB", ctx)
    numbers = f"{label} {_fmt(value)} MB"
    if not ctx.host_matches and not ctx.proxy:
        return _not_applicable(metric, limit, value, None, None, numbers, ctx)
    if value <= limit:
        verdict, text = Verdict.PASS, f"{numbers} <= budget {_fmt(limit)} MB{ctx.where()}"
    else:
        verdict, text = Verdict.FAIL, f"{numbers} > budget {_fmt(limit)} MB{ctx.where()}"
    return BudgetCheck(metric, limit, value, None, None, verdict, ctx.finish(text), None, ctx.proxy)


def _not_judged(check: BudgetCheck, reason: str, ctx: _Context) -> BudgetCheck:
    """A budget check of an invalid measurement: the numbers are kept, the verdict is INVALID."""
    label = _LATENCY_METRICS.get(check.metric) or _DIRECT_METRICS[check.metric]
    unit = _UNITS[check.metric]
    numbers = f"{label} (not measured)" if check.value is None else f"{label} {_fmt(check.value)} {unit}"
    if check.lower is not None and check.upper is not None:
        numbers += f" [{_fmt(check.lower)}, {_fmt(check.upper)}]"
    sentence = ctx.finish(f"{numbers} vs budget {_fmt(check.limit)} {unit}{ctx.where()}: not judged, {reason}")
    return dataclasses.replace(check, verdict=Verdict.INVALID, sentence=sentence, samples_needed=None)


def evaluate_budgets(
    budgets: Mapping[str, float],
    *,
    latency: SampleSummary | None,
    peak_rss_mb: float | None,
    model_size_mb: float | None,
    host_matches: bool,
    mismatch_reasons: Sequence[str] = (),
    proxy: bool,
    profile: str,
    variant: str,
    host: str | None = None,
    invalid_reasons: Sequence[str] = (),
    time_cap_s: float | None = None,
) -> GateResult:
    """Judge one measurement of ``variant`` against ``profile``'s ``budgets``.

    ``latency`` must be in milliseconds (``summarize(ns_samples).scaled(1e-6)``).  ``host`` names the
    machine in sentences ("this host" when None).  When the host does not match the profile and
    ``proxy`` is False every check is NOT_APPLICABLE (values are still recorded); with ``proxy`` the
    checks are judged normally and labelled.  A proxy flag on a matching host is dropped: that run
    is on the real hardware.  ``invalid_reasons`` (broken stability rules from
    ``edgeopt.evaluate.stability_policy.check_policy``) make the result INVALID wherever budgets are judged: every
    check keeps its numbers but gets INVALID ("not judged"); on a non-matching host without proxy
    they are dropped (everything is not-applicable there anyway).  ``time_cap_s``: the timed loop stopped at
    the profile's ``max_seconds`` (a percentile short of samples says so).  Raises ConfigError for an unknown
    metric or a non-finite/negative limit.
    """
    for metric, limit in budgets.items():
        if metric not in BUDGET_METRICS:
            raise ConfigError(
                f"unknown budget metric {metric!r}; expected one of {', '.join(BUDGET_METRICS)}"
            )
        valid = isinstance(limit, (int, float)) and not isinstance(limit, bool)
        if not valid or not math.isfinite(limit) or limit < 0 or (metric in _OUTPUT_METRICS and limit > 1):
            raise ConfigError(
                f"budget {metric!r} must be a finite number >= 0 {_UNITS[metric]}, got {limit!r}"
            )
    effective_proxy = bool(proxy) and not host_matches
    ctx = _Context(profile, host or "this host", host_matches, effective_proxy, tuple(mismatch_reasons), time_cap_s)
    checks: list[BudgetCheck] = []
    for metric in BUDGET_METRICS:  # stable, documented order
        if metric not in budgets or metric in OUTPUT_BUDGETS:  # output budgets: judge_outputs
            continue
        limit = float(budgets[metric])
        if metric in _LATENCY_METRICS:
            checks.append(_check_latency(metric, limit, latency, ctx))
        else:
            value = peak_rss_mb if metric == "peak_rss_mb" else model_size_mb
            checks.append(_check_direct(metric, limit, value, ctx))
    invalid: tuple[str, ...] = ()
    if invalid_reasons and (host_matches or effective_proxy):
        invalid = tuple(ctx.finish(r) for r in invalid_reasons)
        checks = [_not_judged(c, invalid_reasons[0], ctx) for c in checks]
    return GateResult(
        variant=variant, profile=profile, checks=tuple(checks), host_matches=host_matches,
        proxy=effective_proxy, mismatch_reasons=tuple(mismatch_reasons), invalid_reasons=invalid,
    )


def _check_floor(metric: str, limit: float, value: float, interval: tuple[float, float] | None, detail: str,
                 ctx: _Context) -> BudgetCheck:
    label = _OUTPUT_METRICS[metric]
    if not math.isfinite(value):  # never compared: a NaN is neither under nor over a floor
        return _undecidable(metric, limit, value, f"{label} {value}{detail} is not a finite number, cannot judge "
                            f"floor {limit:g}", ctx)
    numbers = f"{label} {value:.4f}" + (f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "") + detail
    lower, upper = interval if interval else (value, value)
    if not ctx.host_matches and not ctx.proxy:
        return _not_applicable(metric, limit, value, lower, upper, numbers, ctx)
    if lower >= limit:
        verdict, text = Verdict.PASS, f"{numbers} >= floor {limit:g}{ctx.where()}"
    elif upper < limit:
        verdict, text = Verdict.FAIL, f"{numbers} < floor {limit:g}{ctx.where()}"
    else:
        verdict, text = Verdict.INCONCLUSIVE, (f"{numbers} straddles floor {limit:g}{ctx.where()}: inconclusive, "
                                               "more reference samples would decide")
    return BudgetCheck(metric, limit, value, lower, upper, verdict, ctx.finish(text), None, ctx.proxy)


FIDELITY_REFERENCE = "fidelity_reference"  # the check a variant without an fp32 reference gets (never pass)


def _undecidable(metric: str, limit: float, value: float | None, numbers: str, ctx: _Context) -> BudgetCheck:
    """An output budget whose figure is not a number for a reason that is not the variant's (fp32's own
    outputs hold NaN/Inf): inconclusive, never pass."""
    if not ctx.host_matches and not ctx.proxy:
        return _not_applicable(metric, limit, value, None, None, numbers, ctx)
    return BudgetCheck(metric, limit, value, None, None, Verdict.INCONCLUSIVE,
                       ctx.finish(f"{numbers}{ctx.where()}: inconclusive"), None, ctx.proxy)


def _nonfinite_failure(metric: str, limit: float, value: float | None, broken: Sequence[OutputFidelity],
                       ctx: _Context) -> BudgetCheck:
    """An output budget of a variant whose outputs hold NaN/Inf where fp32's do not: FAIL, saying where."""
    label = _OUTPUT_METRICS.get(metric, "outputs" if metric == _FINITE_CHECK else "task metric drop vs fp32")
    problems = nonfinite_problems(broken)
    more = f" (and {len(problems) - 1} more output(s))" if len(problems) > 1 else ""
    bound = (f"budget {limit:g}" if metric == _DROP_METRIC else "the rule that outputs are finite (no output "
             "budget is set)" if metric == _FINITE_CHECK else f"floor {limit:g}")
    numbers = f"{label}: outputs contain NaN/Inf: {problems[0]}{more}"
    if not ctx.host_matches and not ctx.proxy:
        return _not_applicable(metric, limit, value, None, None, numbers, ctx)
    return BudgetCheck(metric, limit, value, None, None, Verdict.FAIL,
                       ctx.finish(f"{numbers}; fails {bound}{ctx.where()}"), None, ctx.proxy)


def _agreement(share: float, count: int) -> tuple[float, tuple[float, float]]:
    lower, upper = wilson_interval(round(share * count), count, 0.95)
    return share, (lower, upper)


def judge_outputs(gate: GateResult, budgets: Mapping[str, float], found: Sequence[OutputFidelity],
                  metric: MetricResult | None = None, missing_reference: str | None = None) -> GateResult:
    """``gate`` with the profile's output budgets judged: the floors on the worst output's (or judged slice's:
    ``edgeopt.evaluate.fidelity.SliceFidelity``) cosine, top-1 and decision agreement with fp32, and the
    ceiling on the eval metric's paired drop vs fp32.

    A budget whose figure no output has (a cosine on a 1-element output, a metric without --eval) is
    not checked; with no fidelity at all (the fp32 reference itself) nothing is added.  NaN and infinity
    never pass: a variant whose outputs hold NaN/Inf (or whose metric scored NaN/Inf) FAILS every output
    budget set that has a figure (the first floor set when none has; a ``finite_outputs`` check when no
    output budget is set at all), the sentence naming the output and
    the counts, fp32's included (NaN outputs are never what a model should deliver, whoever else produces
    them too); where only fp32's outputs hold them, the comparison cannot be judged (inconclusive).

    A lost slice (a detector's class scores all rounded to 0 beside coordinates that keep the whole-tensor
    cosine near 1) FAILS the ``min_cosine`` and ``min_decision_agreement`` floors set (the first floor set when
    neither is; an ``output_slices`` check when no output budget is set), whatever the whole-tensor figures:
    ``slice 4:84 of output0 (range 0–0.83) lost: max 0.0``.

    ``missing_reference`` (why the variant's outputs were not compared with fp32's: the fp32 row failed or
    was not measured, its outputs file is missing) makes the gate inconclusive, whatever budgets are set:
    ``no fp32 reference: <why>``; a variant whose outputs nobody compared never passes."""
    ctx = _Context(gate.profile, "this host", gate.host_matches, gate.proxy, gate.mismatch_reasons)
    checks: list[BudgetCheck] = []
    introduced = [f for f in found if f.nonfinite]  # this variant's outputs are not all finite
    inherited = [f for f in found if f.reference_nonfinite and not f.nonfinite]  # only fp32's are not
    lost = [(f, s) for f in found for s in f.lost_slices]
    figures = worst(found)
    keys = {"min_cosine": "cosine", "min_top1_agreement": "top1", "min_decision_agreement": "decision"}
    floors = [name for name in _OUTPUT_METRICS if budgets.get(name) is not None]
    # with NaN/Inf outputs every floor whose figure exists fails; when none has one (a 1-element output),
    # the first floor set fails anyway: a NaN never passes unjudged
    failing = [name for name in floors if keys[name] in figures] or floors[:1]
    # a lost slice fails the floors on values; the first floor set when neither is
    slice_failing = [name for name in floors if name != "min_top1_agreement"] or floors[:1]
    for name in floors:
        floor = float(budgets[name])
        key = keys[name]
        if introduced:
            if name in failing:
                checks.append(_nonfinite_failure(name, floor, figures.get(key), introduced, ctx))
            continue
        if lost and name in slice_failing:
            checks.append(_lost_slice_failure(name, floor, figures.get(key), lost, ctx))
            continue
        if inherited and key in figures:
            problem = inherited[0].problem()
            checks.append(_undecidable(name, floor, figures.get(key),
                                       f"{_OUTPUT_METRICS[name]}: {problem}, cannot judge floor {floor:g}", ctx))
            continue
        check = _check_output_floor(name, floor, found, ctx)
        if check is not None:
            checks.append(check)
    limit = budgets.get(_DROP_METRIC)
    if limit is not None and metric is not None and metric.delta is not None:
        checks.append(_check_drop(float(limit), metric, introduced, inherited, ctx))
    if introduced and not checks:  # no output budget is set: NaN/Inf outputs still never pass
        checks.append(_nonfinite_failure(_FINITE_CHECK, 0.0, None, introduced, ctx))
    if lost and not floors:  # no output floor is set: a lost slice still never passes
        checks.append(_lost_slice_failure(_SLICE_CHECK, 0.0, None, lost, ctx))
    if missing_reference is not None:
        checks.insert(0, _undecidable(FIDELITY_REFERENCE, 0.0, None, f"no fp32 reference: {missing_reference}; a "
                                      "variant whose outputs were not compared with fp32's cannot pass", ctx))
    return dataclasses.replace(gate, checks=gate.checks + tuple(checks)) if checks else gate


def _check_output_floor(name: str, floor: float, found: Sequence[OutputFidelity], ctx: _Context) -> BudgetCheck | None:
    """One floor on the worst figure across the outputs and their judged slices (None when none has it): the
    cosine on its value, an agreement by its Wilson interval over the decisions counted."""
    where = [(f, None) for f in found] + [(f, s) for f in found for s in f.judged_slices]
    if name == "min_cosine":
        scored = [(value, f, s) for f, s in where if (value := (f if s is None else s).cosine) is not None]
        if not scored:
            return None
        value, item, part = min(scored, key=lambda c: (not math.isnan(c[0]), c[0]))  # NaN first
        return _check_floor(name, floor, value, None, f" ({_place(item, part)})", ctx)
    counted: list[tuple[float | None, int, OutputFidelity, SliceFidelity | None]]
    if name == "min_top1_agreement":
        counted = [(f.top1_agreement, f.top1_positions, f, None) for f in found]
    else:
        counted = [(f.decision_agreement, f.samples * f.elements_per_sample, f, None) for f in found]
        counted += [(s.decision_agreement, f.samples * s.elements_per_sample, f, s) for f, s in where if s is not None]
    present = [(float(share), count, f, s) for share, count, f, s in counted if share is not None and count > 0]
    if not present:
        return None
    share, count, item, part = min(present, key=lambda c: (not math.isnan(c[0]), c[0]))
    detail = f" over {count} decisions ({_place(item, part)})"
    if name == "min_top1_agreement" and item.top1_margin is not None:
        detail = (f" over {count} positions fp32 decided (top-1 probability ahead of top-2 by > "
                  f"{item.top1_margin:.3g}; {item.top1_undecided} undecided left out) ({_place(item, part)})")
    if not math.isfinite(share):
        return _check_floor(name, floor, share, None, detail, ctx)
    value, interval = _agreement(share, count)
    return _check_floor(name, floor, value, interval, detail, ctx)


def _place(item: OutputFidelity, part: SliceFidelity | None) -> str:
    """``output logits``, or ``slice 4:84 of output output0``."""
    return f"output {item.output}" if part is None else f"slice {part.start}:{part.stop} of output {item.output}"


def _lost_slice_failure(metric: str, limit: float, value: float | None,
                        lost: Sequence[tuple[OutputFidelity, SliceFidelity]], ctx: _Context) -> BudgetCheck:
    """An output budget of a variant that lost a slice of an output: FAIL, naming the slice and what was kept."""
    label = _OUTPUT_METRICS.get(metric, "outputs")
    item, part = lost[0]
    more = f" (and {len(lost) - 1} more slice(s))" if len(lost) > 1 else ""
    bound = ("the rule that no slice of an output is lost (no output floor is set)" if metric == _SLICE_CHECK
             else f"floor {limit:g}")
    numbers = f"{label}: {part.loss(item.output)}{more}"
    if not ctx.host_matches and not ctx.proxy:
        return _not_applicable(metric, limit, value, None, None, numbers, ctx)
    return BudgetCheck(metric, limit, value, None, None, Verdict.FAIL,
                       ctx.finish(f"{numbers}; fails {bound}{ctx.where()}"), None, ctx.proxy)


def _check_drop(limit: float, metric: MetricResult, introduced: Sequence[OutputFidelity],
                inherited: Sequence[OutputFidelity], ctx: _Context) -> BudgetCheck:
    """The eval metric's paired drop vs fp32 against ``max_metric_drop`` (NaN/Inf: see :func:`judge_outputs`)."""
    assert metric.delta is not None
    sign = 1 if metric.higher_is_better else -1
    scale = 100.0 if metric.percent else 1.0
    drop = -sign * metric.delta * scale
    ends = [-sign * d * scale for d in (metric.delta_lower, metric.delta_upper) if d is not None]
    lower, upper = (min(ends), max(ends)) if len(ends) == 2 else (drop, drop)
    unit = " points" if metric.percent else ""
    variant_broken = metric.nonfinite_scores > 0 or not math.isfinite(metric.value)
    if introduced or variant_broken:
        if introduced:
            return _nonfinite_failure(_DROP_METRIC, limit, drop, introduced, ctx)
        numbers = f"{metric.metric}: {metric.problem() or 'value ' + str(metric.value)}"
        if not ctx.host_matches and not ctx.proxy:
            return _not_applicable(_DROP_METRIC, limit, drop, None, None, numbers, ctx)
        return BudgetCheck(_DROP_METRIC, limit, drop, None, None, Verdict.FAIL,
                           ctx.finish(f"{numbers}; fails budget {limit:g}{unit}{ctx.where()}"), None, ctx.proxy)
    if not all(math.isfinite(v) for v in (drop, lower, upper)):  # fp32's own metric is NaN/Inf
        why = inherited[0].problem() if inherited else f"fp32's {metric.metric} is not a finite number"
        return _undecidable(_DROP_METRIC, limit, drop, f"{metric.metric} drop vs fp32: {why}, cannot judge budget "
                            f"{limit:g}{unit}", ctx)
    numbers = f"{metric.metric} drop vs fp32 {drop:.3g}{unit} [{lower:.3g}, {upper:.3g}] (paired)"
    if not ctx.host_matches and not ctx.proxy:
        return _not_applicable(_DROP_METRIC, limit, drop, lower, upper, numbers, ctx)
    if upper <= limit:
        verdict, text = Verdict.PASS, f"{numbers} <= budget {limit:g}{unit}{ctx.where()}"
    elif lower > limit:
        verdict, text = Verdict.FAIL, f"{numbers} > budget {limit:g}{unit}{ctx.where()}"
    else:
        verdict, text = Verdict.INCONCLUSIVE, f"{numbers} straddles budget {limit:g}{unit}{ctx.where()}"
    return BudgetCheck(_DROP_METRIC, limit, drop, lower, upper, verdict, ctx.finish(text), None, ctx.proxy)


def exit_code_for(results: Sequence[GateResult], *, failures: int = 0) -> int:
    """The CLI exit code for a set of gate results and a count of failed measurements.

    Precedence: any FAIL -> EXIT_BUDGET_FAILED (1); else any measurement/backend failure ->
    EXIT_BACKEND_FAILURE (4); else any INCONCLUSIVE or INVALID (a measurement that broke its
    stability policy) -> EXIT_INCONCLUSIVE (5); else EXIT_OK (0), which covers all pass, all
    not-applicable and no results at all.  An invalid result has no FAIL verdict, so another
    variant's budget failure still wins over it.
    """
    verdicts = {r.verdict for r in results}
    if Verdict.FAIL in verdicts:
        return EXIT_BUDGET_FAILED
    if failures > 0:
        return EXIT_BACKEND_FAILURE
    if Verdict.INCONCLUSIVE in verdicts or Verdict.INVALID in verdicts:
        return EXIT_INCONCLUSIVE
    return EXIT_OK


def gate_measurement(measurement: Measurement, profile: HardwareProfile, *, proxy: bool | None = None) -> GateResult:
    """Judge one measurement against ``profile``'s budgets and stability policy (``proxy`` overrides the
    stored flag); a measurement that breaks the policy gets the INVALID verdict."""
    budgets = {k: v for k, v in profile.budgets.model_dump().items() if v is not None}
    latency = measurement.latency.summary() if measurement.latency is not None else None
    peak = measurement.memory.peak_rss_mb if measurement.memory else None
    size_mb = measurement.variant.size_bytes / 2**20
    identity = match_identity(profile, HostFingerprint.from_dict(measurement.host))  # the host it ran on
    report = measurement.stability_report()
    broken = [] if report is None else check_policy(report, profile.stability, on_target=identity.matches)
    return evaluate_budgets(
        budgets, latency=latency, peak_rss_mb=peak, model_size_mb=size_mb, host_matches=identity.matches,
        mismatch_reasons=list(identity.reasons), proxy=measurement.proxy if proxy is None else proxy,
        profile=profile.name,
        variant=measurement.variant_name, host=measurement.host.get("cpu_model"),
        invalid_reasons=[v.sentence for v in broken], time_cap_s=_time_cap(measurement),
    )


def _time_cap(measurement: Measurement) -> float | None:
    """The profile's ``max_seconds`` when that is what stopped the measurement's timed loop."""
    if measurement.latency is None or measurement.latency.stop_reason != "time_cap":
        return None
    cap = measurement.bench.get("max_seconds")
    return float(cap) if isinstance(cap, (int, float)) else None
