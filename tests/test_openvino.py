"""The OpenVINO backend: same worker, same timing, its own rows; a model it cannot run is a row, not a crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import zoo
from tests.profiles import write_profile
from tests.test_cli import EDGEOPT, good_samples, write_calibration

ov = pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install edgeopt[openvino])")

def write_both(directory: Path, name: str = "both") -> Path:
    return write_profile(directory, name,
                         runtime="  native_precisions: [fp32, int8]\n  backends: [onnxruntime, openvino]")


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGEOPT, *map(str, args)], capture_output=True, text=True, timeout=600, env=env)


def test_runner_reports_precision_and_refuses_with_the_operator(tmp_path: Path) -> None:
    from edgeopt.backends.openvino import OpenVinoRunner, device_precisions
    from edgeopt.errors import UnsupportedModelError
    from edgeopt.models.graph import cpu_session

    assert "fp32" in device_precisions()
    model = zoo.tiny_conv_model(tmp_path / "conv.onnx")
    feeds = {"input": np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    with OpenVinoRunner(str(model), {"intra_op_threads": 1, "precision": "fp32"}) as runner:
        assert "32" in runner.details["precision_used"]  # OpenVINO reports f32 / float32
        assert runner.details["threads"] == 1 and runner.details["compile_seconds"] >= 0
        out = runner.infer(feeds)
        runner.timed_call(feeds)()
    expected = cpu_session(model, threads=None).run(None, feeds)[0]
    np.testing.assert_allclose(out[0], expected, rtol=1e-4, atol=1e-5)
    refused = zoo.if_dynamic_rank_model(tmp_path / "if_rank.onnx")
    with pytest.raises(UnsupportedModelError, match="If"):
        OpenVinoRunner(str(refused), {"intra_op_threads": 1}).activate()


@pytest.mark.slow
def test_run_gives_openvino_rows_with_fidelity_against_onnxruntime_fp32(tmp_path: Path) -> None:
    model = zoo.tiny_conv_model(tmp_path / "conv.onnx")
    calibration = write_calibration(tmp_path / "calib", good_samples())
    out = tmp_path / "out"
    result = run("run", model, "--profile", write_both(tmp_path), "--calibration", calibration, "--out", out,
                 "--variant", "fp32", "--variant", "int8-static-minmax")
    assert result.returncode == 0, result.stderr + result.stdout
    summary = json.loads((out / "summary.json").read_text())
    rows = {row["variant"]: row for row in summary["rows"]}
    assert {"fp32", "int8-static-minmax", "fp32@openvino-fp32", "int8-static-minmax@openvino-fp32"} <= set(rows)
    for name in ("fp32@openvino-fp32", "int8-static-minmax@openvino-fp32"):
        row = rows[name]
        assert row["status"] == "ok" and row["runtime"] == "openvino fp32"
        assert row["p50_ms"]["lower"] is not None and row["peak_rss_mb"] > 0
        floor = 0.999 if name.startswith("fp32") else zoo.int8_cosine_floor()
        assert row["fidelity"][0]["cosine"] > floor  # against ONNX Runtime's fp32 outputs
        assert row["speedup"] is not None
    document = json.loads((out / "measurements" / "fp32@openvino-fp32__both.json").read_text())
    assert document["torch_imported"] is False
    assert document["session"]["backend"] == "openvino"
    assert "32" in document["runtime_details"]["precision_used"]
    assert document["versions"]["openvino"]


@pytest.mark.slow
def test_unsupported_model_is_a_row_and_other_rows_are_unaffected(tmp_path: Path) -> None:
    model = zoo.if_dynamic_rank_model(tmp_path / "if_rank.onnx")
    out = tmp_path / "out"
    result = run("run", model, "--profile", write_both(tmp_path), "--out", out, "--variant", "fp32")
    assert result.returncode == 0, result.stderr + result.stdout
    rows = {row["variant"]: row for row in json.loads((out / "summary.json").read_text())["rows"]}
    assert rows["fp32"]["status"] == "ok"
    refused = rows["fp32@openvino-fp32"]
    assert refused["status"] == "unsupported" and refused["verdict"] == "unsupported"
    assert "If" in refused["failure"]
    assert "unsupported: " in result.stdout


@pytest.mark.slow
def test_without_openvino_everything_else_works(tmp_path: Path) -> None:
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['openvino'] = None  # as if not installed\n")
    import os

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")]))
    check = subprocess.run([sys.executable, "-c", "from edgeopt.backends import availability; "
                            "print(availability()['openvino'])"], capture_output=True, text=True, env=env)
    assert check.stdout.startswith("unavailable:") and "pip install edgeopt[openvino]" in check.stdout
    model = zoo.tiny_conv_model(tmp_path / "conv.onnx")
    out = tmp_path / "out"
    result = run("run", model, "--profile", write_both(tmp_path), "--out", out, "--variant", "fp32", env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    rows = {row["variant"]: row for row in json.loads((out / "summary.json").read_text())["rows"]}
    assert rows["fp32"]["status"] == "ok"
    assert rows["fp32@openvino-fp32"]["status"] == "unsupported"
    assert "pip install edgeopt[openvino]" in rows["fp32@openvino-fp32"]["failure"]
