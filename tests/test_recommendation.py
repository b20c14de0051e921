"""Issue 24 item 5: one recommendation per profile of a run, the fastest row that passes every budget, in
summary.json, the terminal, summary.md and the HTML report (with the latency-vs-fidelity Pareto plot)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeopt.reports.recommendation import Recommendation, recommend
from edgeopt.reports.table import Row
from tests import zoo
from tests.profiles import profile_yaml


def _row(variant: str, p50: float, half: float, verdict: str = "pass", runtime: str = "onnxruntime",
         speedup: tuple[float, float, float] | None = None) -> Row:
    return Row(variant=variant, profile="edge", precision="fp32", expected_fast=True, status="ok", verdict=verdict,
               p50_ms={"value": p50, "lower": p50 - half, "upper": p50 + half}, runtime=runtime, speedup=speedup)


def test_the_fastest_passing_row_is_recommended_and_overlapping_intervals_are_ties() -> None:
    rows = [_row("fp32", 10.0, 0.2), _row("int8-static-minmax", 5.0, 0.3, speedup=(2.0, 1.9, 2.1)),
            _row("int8-dynamic", 5.2, 0.2), _row("fp16", 4.0, 0.1, verdict="fail"),
            _row("int8-static-entropy", 6.0, 0.1)]
    chosen = recommend(rows, "edge")
    assert (chosen.variant, chosen.runtime, chosen.keep_fp32) == ("int8-static-minmax", "onnxruntime", False)
    assert chosen.ties == ("int8-dynamic@onnxruntime",)  # [4.7, 5.3] and [5.0, 5.4] overlap; 6.0 does not
    assert chosen.line().startswith("recommended on edge: int8-static-minmax@onnxruntime — fastest row that passes "
                                    "every budget (p50 5 ms [4.7, 5.3]; 2.00x fp32 [1.90, 2.10]")
    assert "tied within the p50 intervals: int8-dynamic@onnxruntime" in chosen.line()
    assert Recommendation.from_dict(json.loads(json.dumps(chosen.to_dict()))) == chosen


def test_fp32_is_recommended_when_nothing_quantized_is_faster_and_within_budget() -> None:
    rows = [_row("fp32", 3.0, 0.1), _row("int8-static-minmax", 2.0, 0.1, verdict="fail"),
            _row("int8-dynamic", 4.0, 0.1), _row("fp32", 3.5, 0.1, runtime="openvino fp32", speedup=(0.86, 0.8, 0.9))]
    chosen = recommend(rows, "edge")
    assert (chosen.variant, chosen.runtime, chosen.keep_fp32) == ("fp32", "onnxruntime", True)
    assert "keep fp32: no quantized row is faster and within every budget" in chosen.line()


@pytest.mark.parametrize("verdicts, reason", [
    (["not-applicable", "not-applicable"], "no row was judged on this host"),
    (["fail", "inconclusive"], "no row passes every budget"),
])
def test_no_passing_row_says_why(verdicts: list[str], reason: str) -> None:
    rows = [_row(f"v{i}", 1.0 + i, 0.1, verdict=v) for i, v in enumerate(verdicts)]
    chosen = recommend(rows, "edge")
    assert chosen.variant is None and reason in chosen.reason
    assert chosen.line().startswith("recommended on edge: none — ")


def test_a_real_run_writes_its_recommendation_everywhere(tmp_path: Path) -> None:
    model = zoo.tiny_conv_model(tmp_path / "tiny.onnx")
    (tmp_path / "edge.yaml").write_text(profile_yaml("edge", max_seconds=0.2))
    done = subprocess.run([sys.executable, "-m", "edgeopt", "run", str(model), "--profile", "edge.yaml", "--out",
                           "out", "--variant", "fp32", "--variant", "fp16", "--variant", "int8-dynamic"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1, 5), done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    [recommended] = summary["recommendations"]
    passing = [r for r in summary["rows"] if r["verdict"] == "pass"]
    if passing:
        fastest = min(passing, key=lambda r: r["p50_ms"]["value"])
        assert (recommended["variant"], recommended["runtime"]) == (fastest["variant"], fastest["runtime"])
    else:
        assert recommended["variant"] is None and recommended["reason"]
    assert recommended["line"] in done.stdout
    assert recommended["line"].replace("&", "&amp;") in (tmp_path / "out" / "summary.md").read_text()
    html = (tmp_path / "out" / "report.html").read_text()
    assert 'class="recommendation"' in html and "latency vs fidelity" in html
