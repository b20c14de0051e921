"""Stored results are checked when read, not trusted (issue 12, items 4 and 8).

One real measurement of a zoo model is made; every test reads a copy edited the way a hand (or a broken
disk) would edit it.  The gate, report and compare loaders refuse it with exit 3, "the results file was
modified or is corrupt", naming the file; a resumed run treats it as absent and measures again.  Results
files are size- and depth-checked before they are parsed.
"""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeopt.core.fileio import JsonLimitError, parse_json, read_json
from edgeopt.errors import InputRejectedError
from edgeopt.evaluate.compare import load_sets
from edgeopt.measure.cell import Cell, CellContext, measure_cell
from edgeopt.measure.launcher import prepare_timing_inputs
from edgeopt.measure.results import Latency, LatencySummary, Measurement, try_load
from edgeopt.measure.stored import load_measurement
from edgeopt.models.variants import Variant
from edgeopt.profiles.schema import load_profile
from edgeopt.reports.run_summary import load_summary
from tests import profiles, zoo

CORRUPT = "the results file was modified or is corrupt"
Edit = Callable[[dict[str, Any]], object]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("stored")
    profile = load_profile(profiles.write_profile(folder, "fast", max_seconds=0.2))
    variant = Variant.from_file(zoo.tiny_conv_model(folder / "tiny_conv.onnx"))
    inputs = prepare_timing_inputs(variant.path, profile, None, folder / "inputs.npz")
    measurement = measure_cell(Cell(variant, profile, inputs), CellContext(folder / "measurements"))
    assert measurement.ok, measurement.failure
    path = folder / "measurements" / "tiny_conv__fast.json"  # saved by measure_cell
    assert path.is_file()
    return path


def _edited(stored: Path, tmp_path: Path, edit: Edit, name: str = "tiny_conv__fast.json") -> Path:
    document = copy.deepcopy(json.loads(stored.read_text()))
    edit(document)
    path = tmp_path / name
    path.write_text(json.dumps(document))  # Python's json: a NaN is the bare token NaN, as a hand edit leaves it
    return path


def _percentile(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda d: d["latency"]["summary_ms"]["percentiles"][name]


def _scale_percentiles(d: dict[str, Any]) -> None:
    for item in d["latency"]["summary_ms"]["percentiles"].values():
        for key in ("value", "lower", "upper"):
            item[key] = item[key] / 10


EDITS: dict[str, tuple[Edit, str]] = {
    "nan p95": (lambda d: _percentile("p95")(d).update(value=float("nan")), "finite number"),
    "nan p95 as the string": (lambda d: _percentile("p95")(d).update(value="NaN"), "finite number"),
    "infinite p95 upper": (lambda d: _percentile("p95")(d).update(upper=float("inf")), "finite number"),
    "empty samples": (lambda d: d["latency"].update(samples_ns=[]), "samples_ns"),
    "percentiles a tenth": (_scale_percentiles, "percentiles.p50.value"),
    "samples edited": (lambda d: d["latency"].update(samples_ns=[s * 2 for s in d["latency"]["samples_ns"]]),
                       "summary_ms.mean"),
    "a sample dropped": (lambda d: d["latency"]["samples_ns"].pop(), "summary_ms.n"),
    "negative sample": (lambda d: d["latency"]["samples_ns"].__setitem__(0, -5), "samples_ns"),
    "n missing": (lambda d: d["latency"]["summary_ms"].pop("n"), "summary_ms.n: Field required"),
    "p95 missing": (lambda d: d["latency"]["summary_ms"]["percentiles"].pop("p95"), "percentiles"),
    "summary a list": (lambda d: d["latency"].update(summary_ms=[1, 2]), "summary_ms"),
    "latency gone from an ok result": (lambda d: d.update(latency=None), "no latency"),
    "nan peak RSS": (lambda d: d["memory"].update(peak_rss_mb=float("nan")), "memory.peak_rss_mb"),
    "peak RSS missing": (lambda d: d["memory"].pop("peak_rss_mb"), "memory.peak_rss_mb: Field required"),
    "size missing": (lambda d: d["variant"].pop("size_bytes"), "variant.size_bytes"),
    "profile name missing": (lambda d: d["profile"].pop("name"), "profile.name"),
}


@pytest.mark.parametrize("edit", EDITS, ids=list(EDITS))
def test_an_edited_measurement_is_refused_by_loaders_and_absent_to_a_resumed_run(stored: Path, tmp_path: Path,
                                                                                  edit: str) -> None:
    change, phrase = EDITS[edit]
    path = _edited(stored, tmp_path, change)
    with pytest.raises(InputRejectedError) as raised:
        load_measurement(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: invalid measurement ({CORRUPT})") and phrase in message, message
    assert raised.value.exit_code == 3
    with pytest.raises(InputRejectedError, match=CORRUPT):
        load_sets(path)  # compare
    assert try_load(path) is None  # a resumed run measures it again


def test_the_untouched_measurement_loads_and_json_formatting_is_not_an_edit(stored: Path, tmp_path: Path) -> None:
    measurement = load_measurement(stored)
    assert isinstance(measurement.latency.summary_ms, LatencySummary)  # type: ignore[union-attr]
    assert try_load(stored) == measurement
    # another formatter (12 significant digits, as some tools write) is not an edit
    document = json.loads(stored.read_text())
    for item in document["latency"]["summary_ms"]["percentiles"].values():
        item["value"] = float(f"{item['value']:.12g}")
    document["latency"]["summary_ms"]["mean"] = float(f"{document['latency']['summary_ms']['mean']:.12g}")
    (tmp_path / "reformatted.json").write_text(json.dumps(document, indent=4))
    reread = load_measurement(tmp_path / "reformatted.json").latency
    assert reread is not None and measurement.latency is not None
    assert reread.samples_ns == measurement.latency.samples_ns


def test_latency_is_its_samples_whoever_builds_it() -> None:
    latency = Latency.from_samples([1_000_000 + 1000 * i for i in range(100)], "time_cap", 200_000_000, 0.95)
    assert latency.summary().n == 100
    edited = latency.model_dump()
    edited["summary_ms"]["max"] = 0.5
    with pytest.raises(ValueError, match="summary_ms.max is 0.5"):
        Latency.model_validate(edited)
    with pytest.raises(ValueError, match="at least 1 item"):
        Latency.model_validate({**latency.model_dump(), "samples_ns": []})


# ------------------------------------------------------------------------------------------ the real CLI


def _edgeopt(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeopt", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def _one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 3, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("edgeopt: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_gate_refuses_a_nan_p95_with_exit_3_and_never_passes(stored: Path, tmp_path: Path) -> None:
    nan = _edited(stored, tmp_path, EDITS["nan p95"][0])
    _one_line_error(_edgeopt("gate", nan), str(nan), CORRUPT, "p95")
    missing_n = _edited(stored, tmp_path, EDITS["n missing"][0], "no_n.json")
    _one_line_error(_edgeopt("gate", missing_n), str(missing_n), "summary_ms.n")  # not KeyError: 'n'
    assert _edgeopt("gate", stored).returncode == 0


def test_results_files_are_bounded_before_parsing(stored: Path, tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"kind": "measurement", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    _one_line_error(_edgeopt("gate", deep), str(deep), "nested deeper than 64")
    _one_line_error(_edgeopt("compare", stored, deep), str(deep), "nested deeper than 64")
    with pytest.raises(JsonLimitError, match="larger than"):
        read_json(stored, max_bytes=1000)  # the 256 MiB cap, scaled down: refused unread
    text = stored.read_text()
    assert parse_json(text, "x") == json.loads(text)
    assert parse_json('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', "x")
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text('{"kind": "run", "rows": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(InputRejectedError, match="summary.json: JSON nested deeper"):
        load_summary(run)
    _one_line_error(_edgeopt("report", run), "summary.json", "nested deeper")


def test_a_resumed_run_measures_a_modified_result_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from edgeopt.workflows.pipeline import RunConfig, run_pipeline

    model = zoo.tiny_conv_model(tmp_path / "tiny_conv.onnx")
    profile = profiles.write_profile(tmp_path, "fast", max_seconds=0.2)
    config = RunConfig(model=str(model), profiles=(str(profile),), out_dir=tmp_path / "out", variants=("fp32",))
    first = run_pipeline(config)
    assert first.exit_code == 0
    stored = tmp_path / "out" / "measurements" / "fp32__fast.json"
    document = json.loads(stored.read_text())
    document["latency"]["summary_ms"]["percentiles"]["p95"]["value"] = float("nan")
    stored.write_text(json.dumps(document))
    caplog.set_level(logging.INFO, logger="edgeopt")
    caplog.clear()  # the lines of the rerun alone
    second = run_pipeline(config)
    assert "measure fp32__fast: running ..." in caplog.messages and second.exit_code == 0
    assert load_measurement(stored).latency is not None  # measured again, valid
    assert read_json(stored)["latency"]["summary_ms"]["percentiles"]["p95"]["value"] > 0
    assert Measurement.load(stored).key == first.measurements[0].key
