"""Reports of a real run: HTML opened in headless Chromium, JUnit XML against a published schema, CSV, Markdown.

One small run is made with the real pipeline (a tiny MatMul model, three variants, a matching profile
whose size budget fails fp32 and a foreign one whose budgets are not applicable), then every report
is written from its folder.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.cli.report import add_command
from edgeopt.core.fileio import dumps_json
from edgeopt.errors import ConfigError, InputRejectedError
from edgeopt.evaluate.gate import GateResult
from edgeopt.measure.results import Failure
from edgeopt.reports.csv_table import RESULT_COLUMNS, SAMPLE_COLUMNS, render_results_csv, write_samples_csv
from edgeopt.reports.html_report import render_html
from edgeopt.reports.junit_xml import render_junit
from edgeopt.reports.run_data import RunData, load_run, render_run_markdown
from edgeopt.reports.run_summary import RunSummary, load_summary
from edgeopt.reports.table import Row
from edgeopt.reports.writers import write_run_reports
from edgeopt.workflows.pipeline import RunConfig, run_pipeline
from tests.profiles import profile_yaml

SCHEMA = Path(__file__).parent / "data" / "junit" / "junit-10.xsd"
VARIANTS = ("fp32", "fp16", "int8-dynamic")



def _matmul_model(path: Path) -> Path:
    """input [1,256] -> MatMul 256x256 -> Add -> Relu -> MatMul 256x10: fp32 0.25 MiB, fp16 and int8 under 0.2."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((256, 256)) * 0.05).astype(np.float32), "w1"),
             numpy_helper.from_array(np.zeros(256, np.float32), "b1"),
             numpy_helper.from_array((rng.standard_normal((256, 10)) * 0.05).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["input", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["output"])]
    graph = helper.make_graph(nodes, "report_mlp",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 256])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _profile_yaml(name: str, identity: str) -> str:
    """The test profile, stability policy off so that a loaded CI host cannot turn the expected
    pass/fail verdicts into 'invalid'."""
    budgets = "  p50_ms: 1000\n  p95_ms: 1000\n  peak_rss_mb: 4000\n  model_size_mb: 0.2"
    return profile_yaml(name, identity=identity, budgets=budgets, description="report test profile")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("report_run")
    model = _matmul_model(base / "mlp.onnx")
    (base / "here.yaml").write_text(_profile_yaml("here", "  any_host: true"))
    (base / "elsewhere.yaml").write_text(_profile_yaml("elsewhere", "  arch: [riscv64]"))
    out = base / "out"
    result = run_pipeline(RunConfig(model=str(model), profiles=(str(base / "here.yaml"), str(base / "elsewhere.yaml")),
                                    out_dir=out, variants=VARIANTS))
    assert result.exit_code == 1  # fp32 breaks the size budget on 'here'
    return out


@pytest.fixture(scope="module")
def run(run_dir: Path) -> RunData:
    return load_run(run_dir)


def _with_undecided_and_failed(run: RunData) -> RunData:
    """The same run with one inconclusive check and one failed measurement, as other runs produce them."""
    summary = run.summary.model_dump(mode="json")
    gate = next(g for g in summary["gates"] if (g["variant"], g["profile"]) == ("fp16", "here"))
    gate["checks"][0].update(verdict="inconclusive", sentence="p50 0.01 ms [0.009, 0.02] straddles budget ...")
    gate["verdict"] = "inconclusive"
    summary["gates"] = [g for g in summary["gates"] if (g["variant"], g["profile"]) != ("int8-dynamic", "here")]
    row = next(r for r in summary["rows"] if (r["variant"], r["profile"]) == ("int8-dynamic", "here"))
    row.update(status="failed", verdict="error", failure="int8-dynamic on here: worker crashed (SIGSEGV)")
    summary["rows"].append({"variant": "int8-static", "profile": "-", "precision": "-", "expected_fast": False,
                            "status": "failed", "verdict": "error", "failure": "no calibration"})
    measurements = dict(run.measurements)
    crashed = measurements[("int8-dynamic", "here")]
    measurements[("int8-dynamic", "here")] = crashed.model_copy(update={
        "status": "failed", "latency": None,
        "failure": Failure(kind="crash", message=row["failure"], returncode=-11, stderr_tail="Segmentation fault")})
    return RunData(run.directory, RunSummary.model_validate(summary), measurements)


# ------------------------------------------------------------------------------------------------ JUnit


def _validate(xml_text: str) -> ET.Element:
    xmlschema = pytest.importorskip("xmlschema", reason="xmlschema (requirements-dev.txt) validates JUnit XML")
    xmlschema.XMLSchema(str(SCHEMA)).validate(io.StringIO(xml_text))
    return ET.fromstring(xml_text)


@pytest.mark.slow
@pytest.mark.aarch64
def test_junit_has_one_case_per_budget_and_validates(run: RunData) -> None:
    root = _validate(render_junit(run))
    cases = root.findall(".//testcase")
    assert len(cases) == len(VARIANTS) * 2 * 4  # variants x profiles x budgets
    by_key = {(c.get("classname"), c.get("name")): c for c in cases}
    failure = by_key[("edgeopt.here.fp32", "model_size_mb")].find("failure")
    assert failure is not None and "> budget 0.20 MB on here" in str(failure.get("message"))
    passed = by_key[("edgeopt.here.fp16", "p95_ms")]
    assert not [e for e in passed if e.tag in ("failure", "skipped", "error")]
    assert "<= budget 1000.00 ms on here" in str(passed.findtext("system-out"))
    skipped = by_key[("edgeopt.elsewhere.fp32", "p50_ms")].find("skipped")
    assert skipped is not None and skipped.get("type") == "edgeopt.not-applicable"
    assert "not applicable, this host is not elsewhere" in str(skipped.get("message"))
    assert root.get("failures") == "1" and root.get("errors") == "0"
    props = {p.get("name"): p.get("value") for p in root.find("testsuite").iter("property")}  # type: ignore[union-attr]
    assert props["edgeopt.version.onnxruntime"] and props["edgeopt.core.host.cpu_model"]
    assert props["edgeopt.host_matches"] == "true"


@pytest.mark.slow
def test_junit_maps_inconclusive_to_skipped_and_failed_measurements_to_errors(run: RunData) -> None:
    root = _validate(render_junit(_with_undecided_and_failed(run)))
    cases = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    undecided = cases[("edgeopt.here.fp16", "p50_ms")].find("skipped")
    assert undecided is not None and undecided.get("type") == "edgeopt.inconclusive"
    errors = [c for (cls, _), c in cases.items() if cls == "edgeopt.here.int8-dynamic"]
    assert len(errors) == 4 and all(c.find("error") is not None for c in errors)
    assert "SIGSEGV" in str(errors[0].find("error").get("message"))  # type: ignore[union-attr]
    assert cases[("edgeopt.variants.int8-static", "make")].find("error") is not None
    assert root.get("errors") == "5"


# ------------------------------------------------------------------------------------------------ CSV, Markdown


@pytest.mark.slow
@pytest.mark.aarch64
def test_results_csv_has_every_statistic_per_measurement(run: RunData) -> None:
    rows = list(csv.DictReader(io.StringIO(render_results_csv(run))))
    assert tuple(rows[0]) == RESULT_COLUMNS
    assert len(rows) == len(VARIANTS) * 2
    fp32 = next(r for r in rows if (r["variant"], r["profile"]) == ("fp32", "here"))
    assert fp32["verdict"] == "fail" and fp32["model_size_mb_verdict"] == "fail"
    assert float(fp32["p95_ms_lower"]) <= float(fp32["p95_ms"]) <= float(fp32["p95_ms_upper"])
    assert int(fp32["n"]) >= 80 and fp32["host"] and fp32["ci_method"].startswith("order-statistic")
    int8 = next(r for r in rows if (r["variant"], r["profile"]) == ("int8-dynamic", "here"))
    assert float(int8["speedup_lower"]) <= float(int8["speedup"]) <= float(int8["speedup_upper"])
    assert 0.9 < float(int8["fidelity_cosine"]) <= 1.0 + 1e-9
    assert {r["verdict"] for r in rows if r["profile"] == "elsewhere"} == {"not-applicable"}


@pytest.mark.slow
def test_samples_csv_is_long_format(run: RunData, tmp_path: Path) -> None:
    path = write_samples_csv(run, tmp_path / "samples.csv")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == SAMPLE_COLUMNS
    assert len(rows) - 1 == sum(len(m.latency.samples_ns) for m in run.measurements.values() if m.latency)


@pytest.mark.slow
@pytest.mark.aarch64
def test_markdown_has_a_github_table_and_the_verdict(run: RunData) -> None:
    text = render_run_markdown(run)
    assert "**verdict: FAIL (exit 1)" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| variant"))
    assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[header + 1])
    assert any(line.startswith("| fp32 ") for line in lines[header + 2:])
    assert "PROFILE elsewhere" not in text and "budgets are not applicable" in text
    assert "<details><summary>All budget checks (24)</summary>" in text


@pytest.mark.slow
def test_report_command_writes_the_files_asked_for(run_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser(prog="edgeopt")
    add_command(parser.add_subparsers(dest="command"))
    summary_file = tmp_path / "step_summary.md"
    summary_file.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary_file))
    args = parser.parse_args(["report", str(run_dir), "--junit", str(tmp_path / "j.xml"), "--csv",
                              str(tmp_path / "r.csv"), "--markdown", str(tmp_path / "r.md"), "--github-summary"])
    assert args.handler(args) == 0
    assert (tmp_path / "j.xml").exists() and (tmp_path / "r.csv").exists()
    appended = summary_file.read_text()
    assert appended.startswith("earlier step\n# edgeopt results") and appended.endswith((tmp_path / "r.md").read_text())
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    args = parser.parse_args(["report", str(run_dir), "--github-summary"])
    with pytest.raises(ConfigError, match="GITHUB_STEP_SUMMARY is not set"):
        args.handler(args)


@pytest.mark.slow
def test_write_run_reports_leaves_the_three_files_beside_the_summary(run_dir: Path) -> None:
    written = write_run_reports(run_dir)
    assert {p.name for p in written} == {"report.html", "junit.xml", "results.csv"}
    assert all((run_dir / p.name).stat().st_size > 0 for p in written)


def test_unreadable_run_folders_are_clear_errors(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputRejectedError, match="summary.json: no run summary"):
        load_run(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("*.onnx", "*.npz"))
    target = copy / "measurements" / "fp16__here.json"
    target.write_text(target.read_text()[:200])
    with pytest.raises(InputRejectedError, match="fp16__here.json: unreadable measurement"):
        load_run(copy)
    target.unlink()
    with pytest.raises(InputRejectedError, match="fp16__here.json: no measurement here"):
        load_run(copy)


def test_summary_rows_and_gates_read_back_typed_and_write_the_same_file(run_dir: Path) -> None:
    """summary.json read back holds Row and GateResult values; dumped again it is the same file, byte for byte."""
    text = (run_dir / "summary.json").read_text()
    summary = load_summary(run_dir)
    assert summary.rows and all(isinstance(r, Row) for r in summary.rows)
    assert summary.gates and all(isinstance(g, GateResult) for g in summary.gates)
    dumped = summary.model_dump(mode="json")
    assert json.loads(dumps_json(dumped)) == json.loads(text)  # NaN/Inf figures as the encoder writes them
    assert dumps_json(dumped) + "\n" == text
    again = RunSummary.model_validate({**dumped, "rows": summary.rows, "gates": summary.gates})
    assert again.rows[0] is summary.rows[0] and again.gates[0] is summary.gates[0]  # typed values taken as they are


@pytest.mark.parametrize(("field", "entry", "words"), [
    ("rows", {"profile": "here", "status": "ok"}, "rows.0: Value error, a row needs the field 'variant'"),
    ("rows", "fp32", "rows.0: Value error, a row must be an object, got str"),
    ("rows", {"variant": "fp32", "profile": "here", "speedup": [1.0]}, "rows.0: Value error, not a row: "),
    ("gates", {"variant": "fp32", "profile": "here", "checks": []},
     "gates.0: Value error, a gate needs the field 'host_matches'"),
    ("gates", {"variant": "fp32", "profile": "here", "host_matches": True, "checks": [{"metric": "p50_ms"}]},
     "gates.0: Value error, a gate needs the field 'limit'"),
], ids=["row-without-variant", "row-not-an-object", "row-short-speedup", "gate-without-host", "gate-bad-check"])
def test_a_malformed_row_or_gate_is_refused_naming_the_file_and_the_field(
        run_dir: Path, tmp_path: Path, field: str, entry: object, words: str) -> None:
    document = json.loads((run_dir / "summary.json").read_text())
    document[field] = [entry, *document[field]]
    (tmp_path / "summary.json").write_text(json.dumps(document))
    with pytest.raises(InputRejectedError, match=re.escape(f"summary.json: invalid run summary: {words}")) as caught:
        load_summary(tmp_path)
    assert caught.value.exit_code == 3
    if field == "rows" and isinstance(entry, dict) and "variant" not in entry:  # the command says the same
        done = subprocess.run([sys.executable, "-m", "edgeopt", "report", str(tmp_path), "--csv",
                               str(tmp_path / "r.csv")], capture_output=True, text=True, timeout=120)
        assert done.returncode == 3 and f"{tmp_path / 'summary.json'}: invalid run summary: {words}" in done.stderr




# ------------------------------------------------------------------------------------------------ HTML


def _chromium() -> str | None:
    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))),
                None)


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=5000"]


@pytest.mark.slow
@pytest.mark.aarch64
def test_html_is_self_contained(run: RunData) -> None:
    text = render_html(run)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", text)  # every image is a data: URI, no links
    assert "<link" not in text and "@import" not in text and "url(" not in text
    plots = re.findall(r'<img class="plot"[^>]*src="data:image/png;base64,', text)
    # per profile a latency-vs-fidelity (Pareto) plot and a trade-off plot, and one latency figure per measurement
    assert len(plots) == 2 * 2 + len(VARIANTS) * 2
    assert f'data-plots="{len(plots)}"' in text
    assert "NOT APPLICABLE" in text and "this host is the profile" in text
    assert re.search(r"model size 0\.2\d MB &gt; budget 0\.20 MB on here", text)
    assert len(text) < 3_000_000


@pytest.mark.slow
def test_html_opens_in_headless_chromium_with_every_plot_visible(run: RunData, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); the HTML was not opened in a browser")
    from PIL import Image

    page = tmp_path / "report.html"
    page.write_text(render_html(run), encoding="utf-8")
    common = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body is not None, dom.stdout[:2000]
    attributes = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    assert attributes.get("data-errors") == "0", attributes
    assert attributes.get("data-plots-ok") == attributes.get("data-plots") == str(2 * 2 + len(VARIANTS) * 2), attributes

    shot = tmp_path / "report.png"
    result = subprocess.run([*common, "--hide-scrollbars", "--window-size=1400,2000", f"--screenshot={shot}",
                             page.as_uri()], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.shape[0] >= 1000 and pixels.std() > 20  # not blank: text, tables and plots
    assert np.mean(pixels < 200) > 0.02
