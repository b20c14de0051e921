"""Tests for edgeopt.evaluate.gate: verdicts, sentences, exit codes and serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeopt.core.stats import PercentileEstimate, SampleSummary, percentile_ci_ranks, summarize
from edgeopt.errors import (
    EXIT_BACKEND_FAILURE,
    EXIT_BUDGET_FAILED,
    EXIT_INCONCLUSIVE,
    EXIT_OK,
    ConfigError,
)
from edgeopt.evaluate.gate import (
    BUDGET_METRICS,
    BudgetCheck,
    GateResult,
    Verdict,
    evaluate_budgets,
    exit_code_for,
)

ORIN = "jetson-orin-nano"
X86 = "x86-avx512vnni-2core"


def _summary_with_p95(value: float, lower: float | None, upper: float | None, n: int = 1000) -> SampleSummary:
    ranks = (None, None) if lower is None else (936, 963)
    est = PercentileEstimate("p95", 0.95, value, lower, upper, ranks[0], ranks[1], 0.95)
    return SampleSummary(
        n=n,
        mean=value,
        std=0.1,
        cv=0.1 / value,
        min=lower or value,
        max=upper or value,
        percentiles={"p95": est},
    )


def _gate(
    budgets: dict[str, float],
    latency: SampleSummary | None,
    *,
    profile: str = ORIN,
    host_matches: bool = True,
    proxy: bool = False,
    reasons: tuple[str, ...] = (),
    rss: float | None = 300.0,
    size: float | None = 4.0,
) -> GateResult:
    return evaluate_budgets(
        budgets,
        latency=latency,
        peak_rss_mb=rss,
        model_size_mb=size,
        host_matches=host_matches,
        mismatch_reasons=reasons,
        proxy=proxy,
        profile=profile,
        variant="int8-qdq",
        host="host-x",
    )


def test_fail_sentence() -> None:
    r = _gate({"p95_ms": 8.0}, _summary_with_p95(9.3, 9.1, 9.5))
    (check,) = r.checks
    assert check.verdict is Verdict.FAIL
    assert check.sentence == "p95 9.30 ms [9.10, 9.50] > budget 8.00 ms on jetson-orin-nano"
    assert r.verdict is Verdict.FAIL and not r
    assert r.violations == [check.sentence]


def test_pass_sentence() -> None:
    r = _gate({"p95_ms": 8.0}, _summary_with_p95(7.1, 6.9, 7.3), profile=X86)
    (check,) = r.checks
    assert check.verdict is Verdict.PASS
    assert check.sentence == "p95 7.10 ms [6.90, 7.30] <= budget 8.00 ms on x86-avx512vnni-2core"
    assert r and r.violations == []
    assert (check.value, check.lower, check.upper, check.proxy) == (7.1, 6.9, 7.3, False)


def test_upper_equal_to_limit_passes() -> None:
    assert _gate({"p95_ms": 8.0}, _summary_with_p95(7.5, 7.0, 8.0)).verdict is Verdict.PASS


def test_straddle_inconclusive_with_samples_needed() -> None:
    r = _gate({"p95_ms": 8.0}, _summary_with_p95(7.95, 7.8, 8.1, n=1000))
    (check,) = r.checks
    assert check.verdict is Verdict.INCONCLUSIVE
    # upper half-width 0.15 vs distance 0.05 -> 1000 * 9 = 9000
    assert check.samples_needed == 9000
    assert check.sentence == (
        "p95 7.95 ms [7.80, 8.10] straddles budget 8.00 ms on jetson-orin-nano: "
        "inconclusive, about 9000 samples in total would decide"
    )
    assert r.verdict is Verdict.INCONCLUSIVE and not r


def test_no_ci_inconclusive_says_samples_for_ci() -> None:
    latency = summarize(np.linspace(5.0, 6.0, 40))
    (check,) = _gate({"p95_ms": 8.0}, latency).checks
    assert check.verdict is Verdict.INCONCLUSIVE
    assert check.samples_needed == 72
    assert "inconclusive, needs 72 samples for its p95 interval (95%); got 40" in check.sentence, check.sentence


def test_a_time_capped_loop_short_of_samples_says_so_and_what_to_do() -> None:
    latency = summarize(np.linspace(500.0, 520.0, 4))  # a 500 ms model, max_seconds 2
    check, = evaluate_budgets({"p95_ms": 800.0}, latency=latency, peak_rss_mb=None, model_size_mb=None,
                              host_matches=True, proxy=False, profile=ORIN, variant="fp32", time_cap_s=2.0).checks
    assert check.verdict is Verdict.INCONCLUSIVE and check.samples_needed == 72
    assert ("needs 72 samples for its p95 interval (95%); got 4 in max_seconds 2 s (raise bench.max_seconds or "
            "set bench.sample_floor)") in check.sentence, check.sentence


@pytest.mark.aarch64
def test_real_samples_pass_fail_inconclusive() -> None:
    x = np.linspace(5.0, 10.0, 1000)  # value at rank r is 5 + 5*(r-1)/999
    latency = summarize(x)
    lo, hi = percentile_ci_ranks(1000, 0.95, 0.95) or (0, 0)
    p95 = latency.percentiles["p95"]
    assert p95.lower == pytest.approx(x[lo - 1]) and p95.upper == pytest.approx(x[hi - 1])
    assert _gate({"p95_ms": 12.0}, latency).verdict is Verdict.PASS
    assert _gate({"p95_ms": 8.0}, latency).verdict is Verdict.FAIL
    assert _gate({"p95_ms": p95.value}, latency).verdict is Verdict.INCONCLUSIVE
    assert _gate({"p50_ms": 8.0, "p99_ms": 12.0}, latency).verdict is Verdict.PASS


def test_not_applicable_records_values() -> None:
    r = _gate(
        {"p95_ms": 8.0, "peak_rss_mb": 100.0},
        _summary_with_p95(7.1, 6.9, 7.3),
        host_matches=False,
        reasons=("CPU flag avx512_vnni missing",),
    )
    assert r.verdict is Verdict.NOT_APPLICABLE and not r
    lat, rss = r.checks
    assert lat.verdict is Verdict.NOT_APPLICABLE and rss.verdict is Verdict.NOT_APPLICABLE
    assert lat.value == 7.1 and rss.value == 300.0
    assert lat.sentence == (
        "p95 7.10 ms [6.90, 7.30] on host-x: not applicable, this host is not jetson-orin-nano "
        "(CPU flag avx512_vnni missing)"
    )
    assert r.violations == []


def test_proxy_judged_and_labelled() -> None:
    r = _gate(
        {"p95_ms": 8.0, "model_size_mb": 2.0},
        _summary_with_p95(9.3, 9.1, 9.5),
        host_matches=False,
        proxy=True,
    )
    assert r.proxy and r.verdict is Verdict.FAIL
    lat, size = r.checks
    assert lat.proxy and size.proxy
    assert lat.sentence == (
        "PROXY p95 9.30 ms [9.10, 9.50] > budget 8.00 ms, measured on host-x, not on jetson-orin-nano"
    )
    assert size.sentence.startswith("PROXY model size 4.00 MB > budget 2.00 MB")


def test_proxy_flag_dropped_on_matching_host() -> None:
    r = _gate({"p95_ms": 8.0}, _summary_with_p95(7.1, 6.9, 7.3), proxy=True)
    assert not r.proxy and not r.checks[0].proxy
    assert not r.checks[0].sentence.startswith("PROXY")


def test_memory_and_size_direct() -> None:
    r = _gate({"peak_rss_mb": 300.0, "model_size_mb": 3.0}, None, rss=300.0, size=4.0)
    rss, size = r.checks
    assert rss.verdict is Verdict.PASS  # value <= limit
    assert rss.sentence == "peak RSS 300.00 MB <= budget 300.00 MB on jetson-orin-nano"
    assert size.verdict is Verdict.FAIL
    assert size.sentence == "model size 4.00 MB > budget 3.00 MB on jetson-orin-nano"
    assert r.verdict is Verdict.FAIL


def test_missing_value_inconclusive() -> None:
    r = _gate({"p95_ms": 8.0, "peak_rss_mb": 500.0}, None, rss=None)
    assert all(c.verdict is Verdict.INCONCLUSIVE for c in r.checks)
    assert all("missing" in c.sentence and c.value is None for c in r.checks)
    assert r.verdict is Verdict.INCONCLUSIVE


def test_no_budgets_pass() -> None:
    r = _gate({}, None)
    assert r.checks == () and r.verdict is Verdict.PASS and r


def test_unknown_metric_and_bad_limit() -> None:
    with pytest.raises(ConfigError, match="p95_s"):
        _gate({"p95_s": 8.0}, None)
    with pytest.raises(ConfigError):
        _gate({"p95_ms": float("nan")}, None)
    with pytest.raises(ConfigError):
        _gate({"p95_ms": -1.0}, None)
    assert set(BUDGET_METRICS) == {"p50_ms", "p90_ms", "p95_ms", "p99_ms", "peak_rss_mb", "model_size_mb",
                                   "min_cosine", "min_top1_agreement", "min_decision_agreement", "max_metric_drop"}
    with pytest.raises(ConfigError, match="min_cosine"):
        _gate({"min_cosine": 1.5}, None)  # a share: at most 1


@pytest.mark.aarch64
def test_overall_verdict_precedence() -> None:
    def res(*verdicts: Verdict) -> GateResult:
        checks = tuple(BudgetCheck("p95_ms", 8.0, 1.0, None, None, v, v.value) for v in verdicts)
        return GateResult("v", "p", checks, host_matches=True, proxy=False)

    assert res(Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE).verdict is Verdict.FAIL
    assert res(Verdict.PASS, Verdict.INCONCLUSIVE, Verdict.NOT_APPLICABLE).verdict is Verdict.INCONCLUSIVE
    assert res(Verdict.PASS, Verdict.NOT_APPLICABLE).verdict is Verdict.NOT_APPLICABLE
    assert res(Verdict.PASS).verdict is Verdict.PASS


def test_exit_code_precedence() -> None:
    passed = _gate({"p95_ms": 8.0}, _summary_with_p95(7.1, 6.9, 7.3))
    failed = _gate({"p95_ms": 8.0}, _summary_with_p95(9.3, 9.1, 9.5))
    unsure = _gate({"p95_ms": 8.0}, _summary_with_p95(7.95, 7.8, 8.1))
    na = _gate({"p95_ms": 8.0}, _summary_with_p95(7.1, 6.9, 7.3), host_matches=False)
    assert exit_code_for([passed, failed, unsure], failures=2) == EXIT_BUDGET_FAILED
    assert exit_code_for([passed, unsure], failures=1) == EXIT_BACKEND_FAILURE
    assert exit_code_for([passed, unsure]) == EXIT_INCONCLUSIVE
    assert exit_code_for([passed, na]) == EXIT_OK
    assert exit_code_for([na]) == EXIT_OK
    assert exit_code_for([]) == EXIT_OK
    assert exit_code_for([], failures=1) == EXIT_BACKEND_FAILURE


def test_round_trip() -> None:
    r = _gate(
        {"p95_ms": 8.0, "peak_rss_mb": 100.0, "model_size_mb": 10.0},
        summarize(np.linspace(5.0, 10.0, 500)),
        host_matches=False,
        proxy=True,
        reasons=("GPU missing",),
    )
    data = json.loads(json.dumps(r.to_dict()))
    assert data["verdict"] == r.verdict.value
    assert GateResult.from_dict(data) == r


# ----------------------------------------------------------------------------------- invalid measurements

DRIFT = "invalid measurement: drift +7.9% across the run (Kendall p=0.00028) > max_drift_rel 5.0%"


def _invalid(host_matches: bool = True, proxy: bool = False, value: float = 9.3) -> GateResult:
    return evaluate_budgets(
        {"p95_ms": 8.0, "peak_rss_mb": 500.0}, latency=_summary_with_p95(value, value - 0.2, value + 0.2),
        peak_rss_mb=300.0, model_size_mb=4.0, host_matches=host_matches, proxy=proxy, profile=X86,
        variant="fp32", invalid_reasons=[DRIFT],
    )


@pytest.mark.aarch64
def test_invalid_measurement_is_never_pass_or_fail() -> None:
    for value in (9.3, 7.0):  # would fail / would pass
        r = _invalid(value=value)
        assert r.verdict is Verdict.INVALID and not r
        assert r.invalid_reasons == (DRIFT,) and r.violations == []
        assert {c.verdict for c in r.checks} == {Verdict.INVALID}
        assert r.checks[0].sentence == (f"p95 {value:.2f} ms [{value - 0.2:.2f}, {value + 0.2:.2f}] vs budget 8.00 ms "
                                        f"on {X86}: not judged, {DRIFT}")
        assert r.checks[0].value == value  # the numbers are kept
    assert r.checks[1].sentence.startswith("peak RSS 300.00 MB vs budget 500.00 MB")


def test_invalid_on_proxy_is_labelled_and_dropped_where_not_applicable() -> None:
    proxied = _invalid(host_matches=False, proxy=True)
    assert proxied.verdict is Verdict.INVALID and proxied.invalid_reasons == (f"PROXY {DRIFT}",)
    assert all(c.sentence.startswith("PROXY ") for c in proxied.checks)
    elsewhere = _invalid(host_matches=False)
    assert elsewhere.verdict is Verdict.NOT_APPLICABLE and elsewhere.invalid_reasons == ()


def test_invalid_exit_code_and_precedence() -> None:
    invalid = _invalid()
    failed = _gate({"p95_ms": 8.0}, _summary_with_p95(9.3, 9.1, 9.5))
    passed = _gate({"p95_ms": 8.0}, _summary_with_p95(7.1, 6.9, 7.3))
    assert exit_code_for([invalid]) == EXIT_INCONCLUSIVE
    assert exit_code_for([passed, invalid]) == EXIT_INCONCLUSIVE
    assert exit_code_for([invalid, failed]) == EXIT_BUDGET_FAILED  # a real failure elsewhere still wins
    assert exit_code_for([invalid], failures=1) == EXIT_BACKEND_FAILURE
    no_budgets = evaluate_budgets({}, latency=None, peak_rss_mb=None, model_size_mb=None, host_matches=True,
                                  proxy=False, profile=X86, variant="v", invalid_reasons=[DRIFT])
    assert no_budgets.verdict is Verdict.INVALID


def test_invalid_round_trip() -> None:
    r = _invalid()
    data = json.loads(json.dumps(r.to_dict()))
    assert data["verdict"] == "invalid" and data["invalid_reasons"] == [DRIFT]
    assert GateResult.from_dict(data) == r
