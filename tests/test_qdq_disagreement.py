"""One INT8 file whose fidelity vs fp32 differs across runtimes by more than the cosine budget leaves room for: each of
its rows says the runtimes execute its Q/DQ differently (and is still judged on its own figures)."""

from __future__ import annotations

from edgeopt.evaluate.fidelity import OutputFidelity
from edgeopt.profiles.schema import load_profile
from edgeopt.reports.table import Row
from edgeopt.workflows.judge import QDQ_DIFFERS, _runtimes_disagree


def _row(variant: str, runtime: str, cosine: float, precision: str = "int8") -> Row:
    found = OutputFidelity(output="logits", samples=16, cosine=cosine, min_cosine=cosine, sqnr_db=20.0,
                           max_abs_error=0.1, top1_agreement=None, elements_per_sample=100)
    return Row(variant=variant, profile="host-cpu", precision=precision, expected_fast=True, status="ok",
               fidelity=(found,), runtime=runtime, verdict="pass")


def test_a_file_far_apart_on_two_runtimes_says_so_on_both_rows() -> None:
    profile = load_profile("host-cpu").with_budgets({"min_cosine": 0.95})
    rows = [_row("fp32", "onnxruntime", 1.0, "fp32"), _row("fp32@openvino-bf16", "openvino bf16", 0.90, "fp32"),
            _row("int8-static-minmax", "onnxruntime", 0.69),
            _row("int8-static-minmax@openvino-fp32", "openvino fp32", 0.998),
            _row("int8-static-percentile", "onnxruntime", 0.97),
            _row("int8-static-percentile@openvino-fp32", "openvino fp32", 0.99)]
    judged = _runtimes_disagree(rows, profile)
    said = {row.variant: row.sentences for row in judged}
    expected = ("int8-static-minmax: cosine vs fp32 0.690 on onnxruntime, 0.998 on openvino fp32 (more apart than "
                f"the budget's 0.05): {QDQ_DIFFERS}")
    assert said["int8-static-minmax"] == said["int8-static-minmax@openvino-fp32"] == (expected,)
    assert not said["int8-static-percentile"] and not said["int8-static-percentile@openvino-fp32"]  # 0.02 apart
    assert not said["fp32@openvino-bf16"]  # a float file computed in bf16 is another precision, not Q/DQ
    assert [row.verdict for row in judged] == [row.verdict for row in rows]  # each still judged on its own figures
