"""NaN and infinity are data, not crashes (issue 12, item 3).

The one JSON encoder writes a non-finite float as the string "NaN"/"Infinity"/"-Infinity" and the typed
readers read it back; fidelity and metrics of outputs holding NaN/Inf are recorded with their counts; no
comparison lets a NaN pass; and a real fp16 variant whose outputs overflow goes through the real
``edgeopt run``: summary.json, summary.md and every report are written, the row says why, and the run
exits 1 for the failed output budget.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.core.fileio import dumps_json, json_float, read_json, sha256_json, write_json_atomic
from edgeopt.evaluate.fidelity import OutputFidelity, compare, worst
from edgeopt.evaluate.gate import GateResult, Verdict, judge_outputs
from edgeopt.evaluate.metrics import MetricResult, evaluate, parse_metric
from edgeopt.reports.run_data import load_run
from edgeopt.reports.run_summary import RunSummary, load_summary
from edgeopt.reports.table import Row, render_markdown, render_table
from tests import profiles

NAN, INF = math.nan, math.inf


def _gate(host_matches: bool = True) -> GateResult:
    return GateResult(variant="fp16", profile="here", checks=(), host_matches=host_matches, proxy=False)


# ------------------------------------------------------------------------------------------- the encoder


def test_the_encoder_writes_non_finite_floats_as_strings_and_never_null(tmp_path: Path) -> None:
    document = {"cosine": NAN, "max": INF, "sqnr": -INF, "none": None, "nested": [{"x": NAN}, (1.5, np.float32(2))],
                "np": np.float64("nan"), "count": np.int64(3), "ok": 0.25}
    text = dumps_json(document)
    assert "NaN," not in text.replace('"NaN"', "") and "null" in text  # no bare token; null only for None
    loaded = json.loads(text)  # strict JSON: any parser reads it
    assert loaded["cosine"] == "NaN" and loaded["max"] == "Infinity" and loaded["sqnr"] == "-Infinity"
    assert loaded["nested"] == [{"x": "NaN"}, [1.5, 2.0]] and loaded["np"] == "NaN" and loaded["count"] == 3
    assert loaded["none"] is None and loaded["ok"] == 0.25
    write_json_atomic(tmp_path / "doc.json", document)
    assert read_json(tmp_path / "doc.json") == loaded
    assert math.isnan(json_float("NaN")) and json_float("-Infinity") == -INF and json_float(None) is None
    with pytest.raises(ValueError, match="string 'nan'"):
        json_float("nan")  # only the three documented spellings
    assert sha256_json({"a": NAN}) == sha256_json({"a": float("nan")})


def test_the_encoder_refuses_what_json_cannot_hold_naming_where() -> None:
    with pytest.raises(TypeError, match=r"set at rows\[1\]\.extra"):
        dumps_json({"rows": [{}, {"extra": {1, 2}}]})


def test_run_summary_keeps_non_finite_figures_through_model_dump(tmp_path: Path) -> None:
    """pydantic's default writes NaN in dict fields as null: RunSummary must not (nothing dropped), and a
    summary.json read back and dumped again is the same file, its NaN/Inf figures included."""
    figure = OutputFidelity("y", 4, NAN, NAN, -INF, INF, None, elements_per_sample=8, inf_values=3)
    row = Row(variant="fp16", profile="here", precision="fp16", expected_fast=False, status="ok", fidelity=(figure,),
              speedup=(1.5, NAN, INF))
    gate = judge_outputs(_gate(), {"min_cosine": 0.95}, [figure])
    summary = RunSummary(model="m.onnx", model_path="m.onnx", profiles=["here"], rows=[row], gates=[gate],
                         exit_code=1, verdict="verdict: FAIL (exit 1)")
    write_json_atomic(tmp_path / "summary.json", summary.model_dump(mode="json"))
    text = (tmp_path / "summary.json").read_text()
    stored = json.loads(text)
    fidelity, check = stored["rows"][0]["fidelity"][0], stored["gates"][0]["checks"][0]
    assert (fidelity["cosine"], fidelity["sqnr_db"], fidelity["max_abs_error"]) == ("NaN", "-Infinity", "Infinity")
    assert stored["rows"][0]["speedup"] == [1.5, "NaN", "Infinity"] and check["value"] == "NaN"
    loaded = load_summary(tmp_path)
    back = loaded.rows[0].fidelity[0]
    assert math.isnan(back.cosine or 0.0) and back.sqnr_db == -INF and back.inf_values == 3
    assert math.isnan(loaded.gates[0].checks[0].value or 0.0) and loaded.gates[0].verdict is Verdict.FAIL
    assert dumps_json(loaded.model_dump(mode="json")) + "\n" == text


# ------------------------------------------------------------------------------------ fidelity, metrics


def test_fidelity_of_outputs_holding_inf_and_nan_is_recorded_with_counts() -> None:
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((4, 16)).astype(np.float32)
    variant = reference.copy()
    variant[0, :3] = np.inf
    variant[2, 5] = np.nan
    found = compare(reference, variant, "logits")  # numpy warnings are errors in this suite: none may escape
    assert found.nan_values == 1 and found.inf_values == 3 and found.reference_nonfinite == 0
    assert found.cosine is not None and math.isnan(found.cosine) and math.isnan(found.min_cosine or 0.0)
    assert found.max_abs_error == INF or math.isnan(found.max_abs_error)
    assert found.problem() == "output 'logits' holds 1 NaN and 3 Inf of 64 values (fp32: none)"
    clean = compare(reference, reference * 1.001, "logits")
    assert clean.problem() is None and clean.nonfinite == 0
    inf_only = compare(reference, np.where(reference > 0, np.inf, reference), "logits")
    assert inf_only.sqnr_db == -INF


def test_a_nan_figure_is_the_worst_whatever_the_order() -> None:
    good = OutputFidelity("a", 4, 0.99, 0.98, 30.0, 0.1, None, elements_per_sample=8)
    bad = OutputFidelity("b", 4, NAN, NAN, NAN, NAN, None, elements_per_sample=8, nan_values=2)
    for order in ([good, bad], [bad, good]):
        assert math.isnan(worst(order)["cosine"])


def test_metrics_of_non_finite_outputs_are_kept_and_counted() -> None:
    outputs = [np.array([[1.0], [2.0], [np.inf], [4.0]])]
    targets = np.array([[1.0], [2.0], [3.0], [4.0]])
    (mae,), problems = evaluate([parse_metric("mae")], outputs, targets, [targets.copy()])
    assert not problems and mae.value == INF and mae.nonfinite_scores == 1
    assert mae.problem() == "mae: 1 of 4 samples scored NaN/Inf" and "(1 NaN/Inf scores)" in mae.format_value()
    back = MetricResult.from_dict(json.loads(dumps_json(mae.to_dict())))
    assert back.value == INF and back.nonfinite_scores == 1


# ---------------------------------------------------------------------------------------------- the gate


def test_a_variant_with_nan_outputs_fails_every_output_budget_it_has() -> None:
    reference = np.random.default_rng(1).standard_normal((20, 10)).astype(np.float32)
    variant = reference.copy()
    variant[3] = np.nan
    found = [compare(reference, variant, "logits", class_scores=True)]
    budgets = {"min_cosine": 0.95, "min_top1_agreement": 0.5}
    judged = judge_outputs(_gate(), budgets, found)
    assert judged.verdict is Verdict.FAIL and len(judged.checks) == 2
    assert all(c.verdict is Verdict.FAIL and "outputs contain NaN/Inf" in c.sentence for c in judged.checks)
    assert "output 'logits' holds 10 NaN of 200 values (fp32: none)" in judged.checks[0].sentence
    elsewhere = judge_outputs(_gate(host_matches=False), budgets, found)  # off target: not applicable, said
    assert elsewhere.verdict is Verdict.NOT_APPLICABLE and "NaN" in elsewhere.checks[0].sentence
    shipped = {"min_cosine": 0.95, "min_top1_agreement": 0.5, "min_decision_agreement": 0.8}
    assert [c.metric for c in judge_outputs(_gate(), shipped, found).checks] == ["min_cosine", "min_top1_agreement"]
    scalar = [compare(np.ones((6, 1)), np.full((6, 1), np.inf), "score")]  # no figure applies to it
    (check,) = judge_outputs(_gate(), {"min_cosine": 0.95}, scalar).checks  # the NaN still never passes
    assert check.verdict is Verdict.FAIL and "6 Inf of 6 values" in check.sentence
    (check,) = judge_outputs(_gate(), {}, found).checks  # no output budget at all: NaN outputs still fail
    assert check.metric == "finite_outputs" and check.verdict is Verdict.FAIL
    assert "no output budget is set" in check.sentence
    assert judge_outputs(_gate(), {}, [compare(reference, reference, "logits")]).checks == ()


def test_nan_outputs_fail_even_when_fp32_holds_them_too_and_fp32_alone_is_inconclusive() -> None:
    reference = np.random.default_rng(2).standard_normal((8, 16))
    reference[reference < 0] = np.nan  # about half NaN, as Sqrt of such inputs gives
    both = judge_outputs(_gate(), {"min_cosine": 0.95}, [compare(reference, reference, "y")])
    assert both.verdict is Verdict.FAIL and "fp32: " in both.checks[0].sentence
    only_fp32 = judge_outputs(_gate(), {"min_cosine": 0.95}, [compare(reference, np.nan_to_num(reference), "y")])
    assert only_fp32.verdict is Verdict.INCONCLUSIVE and "fp32's own output" in only_fp32.checks[0].sentence


def test_no_nan_figure_passes_a_budget() -> None:
    """Figures that are NaN without NaN outputs (a hand-made record): never compared with ``<``."""
    odd = OutputFidelity("y", 16, NAN, NAN, None, 0.0, NAN, elements_per_sample=10, top1_positions=16)
    judged = judge_outputs(_gate(), {"min_cosine": 0.9, "min_top1_agreement": 0.5}, [odd])
    assert [c.verdict for c in judged.checks] == [Verdict.INCONCLUSIVE, Verdict.INCONCLUSIVE]
    metric = MetricResult("top1", NAN, NAN, NAN, 100, percent=True, delta=NAN, delta_lower=NAN, delta_upper=NAN)
    (check,) = judge_outputs(_gate(), {"max_metric_drop": 1.0}, [], metric).checks
    assert check.verdict is Verdict.FAIL
    fp32_nan = MetricResult("mae", 0.1, 0.05, 0.2, 100, higher_is_better=False, delta=NAN, delta_lower=NAN,
                            delta_upper=NAN)
    (check,) = judge_outputs(_gate(), {"max_metric_drop": 1.0}, [], fp32_nan).checks
    assert check.verdict is Verdict.INCONCLUSIVE


def test_the_table_and_markdown_say_outputs_contain_nan() -> None:
    figure = OutputFidelity("y", 4, NAN, NAN, -INF, INF, None, elements_per_sample=8, inf_values=5)
    gate = judge_outputs(_gate(), {"min_cosine": 0.95}, [figure])
    row = Row(variant="fp16", profile="here", precision="fp16", expected_fast=False, status="ok", samples=100,
              p50_ms={"name": "p50", "q": 0.5, "value": 1.0, "lower": 0.9, "upper": 1.1, "confidence": 0.95},
              fidelity=(figure,), verdict=gate.verdict.value, sentences=tuple(c.sentence for c in gate.checks))
    assert "outputs contain NaN/Inf: 5 Inf of 32 values" in render_table([row])
    markdown = render_markdown([(["profile here"], [row])], "verdict: FAIL (exit 1)")
    assert "- fp16: cosine vs fp32: outputs contain NaN/Inf: output 'y' holds 5 Inf of 32 values" in markdown
    back = Row.from_dict(json.loads(dumps_json(row.to_dict())))
    assert back.fidelity[0].inf_values == 5 and math.isnan(back.fidelity[0].cosine or 0.0)


# ------------------------------------------------------------------------- a real fp16 overflow, end to end


def _overflow_model(path: Path) -> Path:
    """input [1,16] -> MatMul -> Mul 1e5 -> Concat with the MatMul: fp32 is fine; in the fp16 variant the
    constant becomes 65504 and the product, which ONNX Runtime stores as fp16 before the Concat, overflows
    to ±Inf wherever |MatMul| > 1."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array(1e5, np.float32), "big")]
    nodes = [helper.make_node("MatMul", ["input", "w"], ["mm"], name="mm"),
             helper.make_node("Mul", ["mm", "big"], ["scaled"], name="scale"),
             helper.make_node("Concat", ["scaled", "mm"], ["output"], name="concat", axis=1)]
    graph = helper.make_graph(nodes, "fp16_overflow",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 32])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


@pytest.mark.slow
def test_an_fp16_variant_whose_outputs_overflow_fails_its_budget_and_every_report_is_written(tmp_path: Path) -> None:
    model = _overflow_model(tmp_path / "overflow.onnx")
    budgets = "  p95_ms: 1000\n  peak_rss_mb: 4000\n  min_cosine: 0.95"
    profile = profiles.write_profile(tmp_path, "fast", budgets=budgets)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "edgeopt", "run", str(model), "--profile", str(profile), "--out",
                             str(out), "--variant", "fp32", "--variant", "fp16"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr + result.stdout  # the failed output budget, not exit 4
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    for name in ("summary.json", "summary.md", "report.html", "junit.xml", "results.csv"):
        assert (out / name).is_file(), name
    fp16 = next(line for line in result.stdout.splitlines() if line.startswith("fp16 "))
    assert "outputs contain NaN/Inf" in fp16 and fp16.split()[-1] == "fail"
    fp32 = next(line for line in result.stdout.splitlines() if line.startswith("fp32 "))
    assert fp32.split()[-1] == "pass"

    raw = json.loads((out / "summary.json").read_text())  # strict JSON, no NaN tokens
    row = next(r for r in raw["rows"] if r["variant"] == "fp16")
    assert row["fidelity"][0]["cosine"] == "NaN" and row["fidelity"][0]["inf_values"] > 0
    check = next(c for g in raw["gates"] if g["variant"] == "fp16" for c in g["checks"] if c["metric"] == "min_cosine")
    assert check["verdict"] == "fail" and check["value"] == "NaN" and "outputs contain NaN/Inf" in check["sentence"]
    assert "outputs contain NaN/Inf" in (out / "summary.md").read_text()
    assert "not a number</b>: output &#x27;output&#x27; holds" in (out / "report.html").read_text()
    with (out / "results.csv").open() as handle:
        cells = next(r for r in csv.DictReader(handle) if r["variant"] == "fp16")
    assert cells["fidelity_cosine"] == "NaN" and int(cells["fidelity_inf_values"]) > 0
    assert math.isnan(float(cells["fidelity_cosine"]))
    junit = (out / "junit.xml").read_text()
    assert "outputs contain NaN/Inf" in junit

    run = load_run(out)  # the run reads back as a value, the figure a float again, and dumps as the same file
    assert dumps_json(run.summary.model_dump(mode="json")) + "\n" == (out / "summary.json").read_text()
    again = next(r for r in run.rows if r.variant == "fp16")
    assert math.isnan(again.fidelity[0].cosine or 0.0) and again.problems()
    rebuilt = subprocess.run([sys.executable, "-m", "edgeopt", "report", str(out)], capture_output=True, text=True,
                             timeout=120)
    assert rebuilt.returncode == 0, rebuilt.stderr
