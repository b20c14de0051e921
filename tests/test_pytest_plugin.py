"""The pytest plugin, run by pytest's own ``pytester``: budgets that pass, fail, are inconclusive or not
applicable; the marker; ``--edgeopt-save``; baselines that cannot be read; the pytest-benchmark hand-off.

Each inner session measures a one-node ONNX model on a fast profile (under a second per measurement).
"""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from edgeopt.core.stats import summarize
from edgeopt.measure.results import Measurement
from tests import profiles, zoo
from tests.profiles import ANY_HOST, CALM

pytest_plugins = ["pytester"]

NOT_THIS_HOST = "  required_cpu_flags: [edgeopt_no_such_cpu_flag]"
INI = """\
[pytest]
addopts = --strict-markers -p no:cacheprovider
filterwarnings =
    error
    ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning
"""
# the ignore: pytester runs the inner session in this process, where edgeopt is imported already


@pytest.fixture()
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A user's project: tiny.onnx, profiles fast.yaml (any host) and elsewhere.yaml (never this host)."""
    zoo.identity_add(pytester.path / "tiny.onnx")
    write_profile(pytester.path, "fast", ANY_HOST)
    write_profile(pytester.path, "elsewhere", NOT_THIS_HOST)
    pytester.makeini(INI)
    return pytester


def write_profile(directory: Path, name: str, identity: str, rules: str = CALM) -> Path:
    return profiles.write_profile(directory, name, identity=identity, runtime="", max_seconds=0.2,
                                  worker_timeout_s=60, stability=rules, description="fast pytest-plugin test profile")


def run(project: pytest.Pytester, test: str, *args: str) -> pytest.RunResult:
    project.makepyfile(test_model=test)
    return project.runpytest("-rA", "--edgeopt-profile", "fast.yaml", *args)


def test_plugin_is_registered_as_an_entry_point() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert names.get("edgeopt") == "edgeopt.pytest_plugin", "reinstall edgeopt (pip install -e .) to register it"


def test_options_share_the_cli_declarations(project: pytest.Pytester) -> None:
    """--edgeopt-profile/-proxy/-threshold are edgeopt.cli.options' --profile/--proxy/--threshold, prefixed."""
    import argparse

    from edgeopt.cli import options

    cli = argparse.ArgumentParser()
    options.add_proxy_options(cli.add_argument)
    options.add_threshold_options(cli.add_argument)
    helped = project.runpytest("--help")
    assert helped.ret == 0
    text = " ".join(helped.stdout.str().split())
    for flag in ("proxy", "threshold"):
        help_text = next(a.help for a in cli._actions if f"--{flag}" in a.option_strings)
        assert help_text is not None and " ".join(help_text.split(" (default")[0].replace("%%", "%").split()) in text
    assert "--edgeopt-profile=NAME_OR_YAML hardware profile for every budget that names none" in text
    assert "(default: host-cpu)" in text




def test_passing_budget_returns_the_result(project: pytest.Pytester) -> None:
    result = run(project, """
        def test_fast(edgeopt_budget):
            result = edgeopt_budget("tiny.onnx", p95_ms=1000, peak_rss_mb=4000)
            assert result and result.gate.verdict.value == "pass"
            assert result.measurement.profile_name == "fast" and result.measurement.variant_name == "tiny"
            assert [c.metric for c in result.gate.checks] == ["p95_ms", "peak_rss_mb"]
    """)
    result.assert_outcomes(passed=1)


def test_failing_budget_fails_with_the_violation_sentence(project: pytest.Pytester) -> None:
    result = run(project, """
        def test_too_slow(edgeopt_budget):
            edgeopt_budget("tiny.onnx", p95_ms=0.0001, peak_rss_mb=1)
    """)
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([r".*p95 \S+ ms \[\S+, \S+\] > budget 0.0001 ms on fast",
                                  r".*peak RSS \S+ MB > budget 1.00 MB on fast"])
    result.stdout.no_fnmatch_line("*Traceback*")


def test_inconclusive_budget_is_skipped_with_the_sentence_or_failed_when_strict(project: pytest.Pytester) -> None:
    # the second call reuses the first measurement (budgets re-judge, they do not re-measure) and puts the
    # budget at the lower end of the p95 interval, so the interval straddles it
    test = """
        def test_on_the_edge(edgeopt_budget):
            first = edgeopt_budget("tiny.onnx", p95_ms=1000)
            p95 = first.measurement.latency.summary().percentiles["p95"]
            assert p95.lower < p95.upper
            edgeopt_budget("tiny.onnx", p95_ms=p95.lower)
    """
    result = run(project, test)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*edgeopt inconclusive: p95 * straddles budget * ms on fast: inconclusive*"])
    strict = run(project, test, "--edgeopt-strict")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*edgeopt inconclusive (--edgeopt-strict): p95 * straddles budget*"])


def test_invalid_measurement_is_skipped_with_the_sentence_or_failed_when_strict(project: pytest.Pytester) -> None:
    write_profile(project.path, "shaky", ANY_HOST, rules=CALM.replace("max_cv: null", "max_cv: 0.000001"))
    test = """
        def test_shaky(edgeopt_budget):
            edgeopt_budget("tiny.onnx", profile="shaky.yaml", p95_ms=0.0001)
    """
    result = run(project, test)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*edgeopt invalid measurement: p95 * vs budget 0.0001 ms on shaky: not judged*"])
    run(project, test, "--edgeopt-strict").assert_outcomes(failed=1)


def test_not_applicable_is_skipped_with_the_reason_and_proxy_judges_it(project: pytest.Pytester) -> None:
    test = """
        def test_elsewhere(edgeopt_budget):
            result = edgeopt_budget("tiny.onnx", profile="elsewhere.yaml", p95_ms=1000)
            assert result.gate.proxy
    """
    result = run(project, test)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*edgeopt not applicable: p95 * this host is not elsewhere "
                                 "(CPU flag edgeopt_no_such_cpu_flag missing)*"])
    proxy = run(project, test, "--edgeopt-proxy")
    proxy.assert_outcomes(passed=1)


def test_save_writes_one_measurement_json_per_model_and_profile(project: pytest.Pytester) -> None:
    result = run(project, """
        def test_a(edgeopt_budget):
            assert edgeopt_budget("tiny.onnx").saved.name == "tiny__fast.json"

        def test_b(edgeopt_budget):
            edgeopt_budget("tiny.onnx", name="renamed", p95_ms=1000)
    """, "--edgeopt-save", "saved")
    result.assert_outcomes(passed=2)
    assert sorted(p.name for p in (project.path / "saved").iterdir()) == ["renamed__fast.json", "tiny__fast.json"]
    measurement = Measurement.load(project.path / "saved" / "tiny__fast.json")
    assert measurement.ok and measurement.profile_name == "fast"
    assert measurement.latency is not None and len(measurement.latency.samples_ns) >= 72


def test_marker_checks_the_budget_after_the_test_body(project: pytest.Pytester) -> None:
    result = run(project, """
        import pytest

        @pytest.mark.edgeopt("tiny.onnx", p95_ms=1000)
        def test_ok():
            pass

        @pytest.mark.edgeopt(model="tiny.onnx", p95_ms=0.0001)
        def test_too_slow():
            pass

        @pytest.mark.edgeopt(p95_ms=1)
        def test_no_model():
            pass
    """)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.re_match_lines([r".*p95 \S+ ms \[\S+, \S+\] > budget 0.0001 ms on fast",
                                  r".*@pytest.mark.edgeopt needs the model.*"])


def test_bad_options_and_inputs_are_one_clear_line(project: pytest.Pytester) -> None:
    bad_profile = run(project, "def test_x():\n    pass\n", "--edgeopt-profile", "nope.yaml")
    assert bad_profile.ret == pytest.ExitCode.USAGE_ERROR
    bad_profile.stderr.fnmatch_lines(["*--edgeopt-profile: nope.yaml: profile file not found*"])
    result = run(project, """
        def test_missing_model(edgeopt_budget):
            edgeopt_budget("missing.onnx")

        def test_unknown_budget(edgeopt_budget):
            edgeopt_budget("tiny.onnx", p95=3)
    """)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*edgeopt: missing.onnx*", "*edgeopt: --budget: budgets.p95*"])


def test_unreadable_or_missing_baseline_is_a_clear_failure(project: pytest.Pytester) -> None:
    test = """
        def test_tiny(edgeopt_budget):
            edgeopt_budget("tiny.onnx")

        def test_other(edgeopt_budget):
            edgeopt_budget("tiny.onnx", name="other")
    """
    run(project, test, "--edgeopt-save", "baseline").assert_outcomes(passed=2)
    stored = project.path / "baseline" / "tiny__fast.json"
    (project.path / "baseline" / "other__fast.json").unlink()
    document = json.loads(stored.read_text())
    stored.write_text(json.dumps({**document, "schema_version": 0}))  # an old schema
    result = run(project, test, "--edgeopt-baseline", "baseline")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*--edgeopt-baseline: *tiny__fast.json is not a readable edgeopt measurement: "
                                 "*measurement schema_version 0 is not supported*"])
    result.stdout.fnmatch_lines(["*--edgeopt-baseline: no baseline *other__fast.json for other on fast "
                                 "(write one with --edgeopt-save)*"])
    text = json.dumps(document)
    stored.write_text(text[: len(text) // 2])  # truncated
    result = run(project, test, "--edgeopt-baseline", "baseline")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*tiny__fast.json is not a readable edgeopt measurement*"])
    bad_dir = run(project, test, "--edgeopt-baseline", "no-such-dir")
    assert bad_dir.ret == pytest.ExitCode.USAGE_ERROR


def test_baseline_comparison_fails_a_regression_and_passes_an_improvement(project: pytest.Pytester) -> None:
    test = """
        def test_tiny(edgeopt_budget, pytestconfig):
            result = edgeopt_budget("tiny.onnx")
            if pytestconfig.getoption("edgeopt_baseline"):
                assert [row.verdict for row in result.comparison.rows] == ["improved"]
    """
    run(project, test, "--edgeopt-save", "baseline").assert_outcomes(passed=1)
    stored = project.path / "baseline" / "tiny__fast.json"
    document = json.loads(stored.read_text())
    samples = document["latency"]["samples_ns"]

    def baseline_scaled(factor: float) -> None:
        scaled = [int(s * factor) for s in samples]  # the statistics follow: a stale summary is refused
        latency = {**document["latency"], "samples_ns": scaled,
                   "summary_ms": summarize([s / 1e6 for s in scaled], confidence=0.95).to_dict()}
        stored.write_text(json.dumps({**document, "latency": latency}))

    # factors far outside the session-to-session spread of a sub-millisecond model (up to ~8x on a loaded CI host)
    baseline_scaled(100.0)  # the baseline was a hundred times slower: the candidate improved
    run(project, test, "--edgeopt-baseline", "baseline", "--edgeopt-threshold", "p95:5%").assert_outcomes(passed=1)
    baseline_scaled(0.01)  # the baseline was a hundred times faster: the candidate regressed
    result = run(project, test, "--edgeopt-baseline", "baseline", "--edgeopt-threshold", "p95:5%")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([r".*vs baseline: p95 of tiny on fast: \d+\.\d+x \[.*threshold 5%: regressed"])
    bad = run(project, test, "--edgeopt-baseline", "baseline", "--edgeopt-threshold", "p95")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR


def test_edgeopt_numbers_go_into_pytest_benchmark_extra_info(project: pytest.Pytester) -> None:
    result = run(project, """
        def test_pre_and_model(benchmark, edgeopt_budget):
            benchmark(sorted, [3, 1, 2])
            edgeopt_budget("tiny.onnx", p95_ms=1000)
    """, "--benchmark-json", "bench.json", "--benchmark-min-rounds", "1", "--benchmark-max-time", "0.01")
    result.assert_outcomes(passed=1)
    extra = json.loads((project.path / "bench.json").read_text())["benchmarks"][0]["extra_info"]["edgeopt"]["tiny"]
    assert extra["profile"] == "fast" and extra["verdict"] == "pass" and extra["samples"] >= 72
    value, lower, upper = extra["p95_ms"]
    assert lower <= value <= upper


def test_a_dynamic_model_is_timed_at_the_inputs_given(project: pytest.Pytester) -> None:
    zoo.dynamic_conv_model(project.path / "dynamic.onnx")
    result = run(project, """
        import pytest

        def test_unresolved(edgeopt_budget):
            edgeopt_budget("dynamic.onnx", p95_ms=1000)

        def test_given(edgeopt_budget):
            result = edgeopt_budget("dynamic.onnx", inputs={"input": [1, 3, 24, 40]}, p95_ms=1000)
            assert result.measurement.input_shapes == {"input": [1, 3, 24, 40]}

        @pytest.mark.edgeopt("dynamic.onnx", inputs={"input": [2, 3, 16, 16]}, p95_ms=1000)
        def test_marker():
            pass
    """)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*H=? (unresolved)*"])


def test_the_session_ends_with_the_fastest_model_that_passed_every_budget(project: pytest.Pytester) -> None:
    """Two models checked, one over its budget: the recommendation names the fastest of those that passed."""
    zoo.tiny_conv_model(project.path / "conv.onnx")
    result = run(project, """
        def test_small(edgeopt_budget):
            edgeopt_budget("tiny.onnx", p95_ms=1000, name="small")

        def test_conv(edgeopt_budget):
            edgeopt_budget("conv.onnx", p95_ms=1000, name="conv")

        def test_over(edgeopt_budget):
            edgeopt_budget("conv.onnx", p95_ms=0.000001, name="over")
    """)
    result.assert_outcomes(passed=2, failed=1)
    line = next(s for s in result.outlines if s.startswith("edgeopt: recommended on fast: "))
    assert line.split(": ", 2)[2].split("@")[0] in ("small", "conv")
    assert "over@" not in line and "fastest row that passes every budget (p50 " in line
