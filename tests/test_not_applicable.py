"""A recipe that does not apply to the model is its own state: an already-quantized file, or a graph with nothing
the quantizer quantizes, gives a ``not-applicable`` row with the reason; the exit code comes from the rows that were
measured, and JUnit marks the row skipped."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from edgeopt.models.quantize import make_variants
from edgeopt.models.recipes import Recipe
from edgeopt.models.variants import Variant
from tests import profiles, zoo


def _run(model: Path, out: Path, profile: Path, *variants: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "edgeopt", "run", str(model), "--profile", str(profile), "--out", str(out)]
    for name in variants:
        args += ["--variant", name]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def _rows(out: Path) -> dict[str, dict[str, object]]:
    return {row["variant"]: row for row in json.loads((out / "summary.json").read_text())["rows"]}


def test_an_already_quantized_model_gets_not_applicable_rows_and_the_measured_verdict(tmp_path: Path) -> None:
    float_model = zoo.tiny_conv_model(tmp_path / "tiny_conv.onnx")
    (made,) = make_variants(float_model, [Recipe.parse("int8-dynamic")], tmp_path / "made")
    assert isinstance(made, Variant)
    quantized = tmp_path / "quantized.onnx"
    quantized.write_bytes(made.path.read_bytes())
    out = tmp_path / "out"
    done = _run(quantized, out, profiles.write_profile(tmp_path, "fast"), "fp32", "int8-dynamic", "fp16")
    assert done.returncode == 0, done.stderr  # fp32 passes; the two recipes that do not apply are no error
    rows = _rows(out)
    assert rows["fp32"]["verdict"] == "pass"
    for name in ("int8-dynamic", "fp16"):
        assert rows[name]["status"] == rows[name]["verdict"] == "not-applicable", rows[name]
        assert "quantized.onnx is already quantized (" in str(rows[name]["failure"]), rows[name]
    terminal = done.stdout + done.stderr
    assert "verdict: PASS (exit 0): 1 pass, 2 recipe(s) not applicable to this model" in terminal, terminal
    assert "variant fp16: not applicable: quantized.onnx is already quantized (" in terminal, terminal
    assert "FAILED" not in terminal and "ERROR" not in terminal, terminal
    report = subprocess.run([sys.executable, "-m", "edgeopt", "report", str(out), "--junit", str(tmp_path / "j.xml")],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    suite = next(s for s in ET.parse(tmp_path / "j.xml").getroot() if s.get("name") == "edgeopt.variants")
    assert (suite.get("tests"), suite.get("skipped"), suite.get("errors")) == ("2", "2", "0")
    skipped = [case.find("skipped") for case in suite]
    assert all(s is not None and s.get("type") == "edgeopt.not-applicable" for s in skipped)


def test_a_graph_with_nothing_to_quantize_is_not_applicable_not_an_error(tmp_path: Path) -> None:
    model = zoo.identity_add(tmp_path / "add.onnx")  # one Add: nothing ONNX Runtime's dynamic quantizer quantizes
    out = tmp_path / "out"
    done = _run(model, out, profiles.write_profile(tmp_path, "fast"), "fp32", "int8-dynamic")
    assert done.returncode == 0, done.stderr
    row = _rows(out)["int8-dynamic"]
    assert row["status"] == "not-applicable", row
    assert str(row["failure"]).startswith("variant int8-dynamic: nothing to quantize: the graph has no operator "), row
