"""TensorRT rows of a run without a GPU (edgeopt.workflows.tensorrt_rows, edgeopt.measure.emulation): every
TensorRT row says how far it was verified, and the TensorRT-bound INT8 file's accuracy is emulated on the CPU
with no latency.  Real models, real ONNX Runtime and quantizer; TensorRT itself is absent (skip where it is)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.backends import is_available
from edgeopt.backends.tensorrt.goldens import read_goldens
from edgeopt.measure.emulation import LABEL
from edgeopt.workflows.pipeline import RunConfig, run_pipeline
from tests.log_lines import edgeopt_lines
from tests.profiles import profile_yaml

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "calibration_data" / "digits"
TENSORRT = ("  backends: [onnxruntime, tensorrt]\n  native_precisions: [fp32, int8]")
SECTION = "tensorrt:\n  version_family: 10\n  version: '10.3'\n  precisions: [fp32, int8]\n"

pytestmark = pytest.mark.skipif(is_available("tensorrt"),
                                reason="TensorRT is installed: its rows are built, not only checked")


def jetson_like(directory: Path, budgets: str = "  min_cosine: 0.95\n  max_metric_drop: 2") -> Path:
    """A fast any-host profile that asks for TensorRT 10.3 rows beside ONNX Runtime's, as the Jetson ones do."""
    path = directory / "trt-test.yaml"
    path.write_text(profile_yaml("trt-test", runtime=TENSORRT, budgets=budgets, min_iterations=20,
                                 max_seconds=0.1) + SECTION)
    return path


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("trt-rows")
    config = RunConfig(model="edgeopt.zoo.digits:digits_cnn", profiles=(str(jetson_like(out)),), out_dir=out / "run",
                       calibration=str(DIGITS), eval_set=str(DIGITS / "eval.npz"),
                       variants=("fp32", "int8-trt-qdq", "int8-static-minmax"))
    with edgeopt_lines() as lines:  # module scope: no caplog
        result = run_pipeline(config)
    assert result.exit_code == 0, (result.exit_code, lines[-5:])
    return out / "run", lines


def rows_of(run: Path) -> dict[str, dict]:
    return {row["variant"]: row for row in json.loads((run / "summary.json").read_text())["rows"]}


def test_tensorrt_rows_say_they_are_only_statically_verified(digits_run: tuple[Path, list[str]]) -> None:
    run, _ = digits_run
    rows = rows_of(run)
    for name in ("fp32@tensorrt-fp32", "int8-trt-qdq@tensorrt-int8"):
        row = rows[name]
        assert row["status"] == "unsupported" and "tensorrt is not installed" in row["failure"]
        assert row["evidence"] == "statically verified"
        assert row["readiness"].startswith("statically ready for TensorRT 10.3 (necessary, not sufficient")
        assert row["blockers"] == []
    # ONNX Runtime's own INT8 file is never offered to TensorRT, nor the TensorRT-bound file timed on the CPU
    assert not any(name.startswith("int8-static-minmax@tensorrt") for name in rows)
    assert "int8-trt-qdq" not in rows and "int8-static-minmax" in rows
    markdown = (run / "summary.md").read_text()
    assert "statically verified: ready for TensorRT 10.3; not built: tensorrt is not installed" in markdown


def test_the_tensorrt_int8_file_has_its_accuracy_emulated_without_latency(digits_run: tuple[Path, list[str]]) -> None:
    run, _ = digits_run
    rows = rows_of(run)
    emulated = rows["int8-trt-qdq@tensorrt-int8-emulated"]
    assert emulated["status"] == "emulated" and emulated["runtime"] == LABEL
    assert emulated["p50_ms"] is None and emulated["samples"] is None and emulated["speedup"] is None
    cosine = min(f["cosine"] for f in emulated["fidelity"])
    assert 0.99 < cosine <= 1.0
    assert emulated["metrics"] and emulated["metrics"][0]["metric"] == "top1"
    gates = {g["variant"]: g for g in json.loads((run / "summary.json").read_text())["gates"]}
    checks = {c["metric"]: c["verdict"] for c in gates["int8-trt-qdq@tensorrt-int8-emulated"]["checks"]}
    assert checks == {"min_cosine": "pass", "max_metric_drop": "pass"}
    (record,) = (run / "emulated").glob("*.json")
    document = json.loads(record.read_text())
    assert document["kind"] == "emulation" and "latency" not in document
    assert document["session"]["graph_optimization_level"] == "basic"
    assert document["variant"]["name"] == "int8-trt-qdq"
    with np.load(run / "emulated" / document["outputs_file"]) as outputs:
        assert outputs["out0"].shape[0] == document["reference_count"] == 360  # every eval digit
    # the goldens for the first GPU run: the first reference inputs and these very outputs, in Polygraphy's format
    inputs, golden = read_goldens(run / "tensorrt-goldens" / "int8-trt-qdq")
    emulated_outputs = run / "emulated" / document["outputs_file"]
    with np.load(run / "reference_inputs.npz") as reference, np.load(emulated_outputs) as out:
        assert len(inputs) == len(golden) == 4
        np.testing.assert_array_equal(inputs[2]["input"], reference["input"][2])
        np.testing.assert_array_equal(golden[2][document["output_names"][0]], out["out0"][2])
    metadata = json.loads((run / "tensorrt-goldens" / "int8-trt-qdq" / "goldens.json").read_text())
    assert metadata["model_sha256"] == document["variant"]["sha256"]
    assert metadata["polygraphy_command"].startswith("polygraphy run ")
    junit = (run / "junit.xml").read_text()
    assert 'classname="edgeopt.trt-test.int8-trt-qdq@tensorrt-int8-emulated" name="min_cosine"' in junit


def test_a_rerun_reuses_the_emulation(digits_run: tuple[Path, list[str]], caplog: pytest.LogCaptureFixture) -> None:
    run, _ = digits_run
    caplog.set_level(logging.INFO, logger="edgeopt")
    config = RunConfig(model="edgeopt.zoo.digits:digits_cnn", profiles=(str(run.parent / "trt-test.yaml"),),
                       out_dir=run, calibration=str(DIGITS), eval_set=str(DIGITS / "eval.npz"),
                       variants=("fp32", "int8-trt-qdq", "int8-static-minmax"))
    run_pipeline(config)
    assert any(line.startswith("emulate int8-trt-qdq@tensorrt-int8-emulated") and "done earlier" in line
               for line in caplog.messages), caplog.messages


def stft_model(path: Path) -> Path:
    """A short-time Fourier transform of the input signal (STFT, opset 17): ONNX Runtime runs it, TensorRT parses it
    only from 10.4 on (onnx-tensorrt's operator tables), and no constant folding can remove it."""
    step = numpy_helper.from_array(np.array(16, dtype=np.int64), "step")
    length = numpy_helper.from_array(np.array(32, dtype=np.int64), "length")
    nodes = [helper.make_node("STFT", ["signal", "step", "", "length"], ["spectrum"], name="stft", onesided=1)]
    graph = helper.make_graph(nodes, "stft", [helper.make_tensor_value_info("signal", TensorProto.FLOAT, [1, 128, 1])],
                              [helper.make_tensor_value_info("spectrum", TensorProto.FLOAT, [1, 7, 17, 2])],
                              [step, length])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), str(path))
    return path


def test_a_model_tensorrt_10_3_cannot_parse_lists_its_blockers(tmp_path: Path) -> None:
    model = stft_model(tmp_path / "stft.onnx")
    config = RunConfig(model=str(model), profiles=(str(jetson_like(tmp_path, budgets="  p95_ms: 1000")),),
                       out_dir=tmp_path / "run", variants=("fp32",))
    result = run_pipeline(config)
    rows = rows_of(tmp_path / "run")
    row = rows["fp32@tensorrt-fp32"]
    assert row["evidence"] == "static check: not ready"
    assert row["readiness"].startswith("not ready for TensorRT 10.3: 1 blocker (operator)")
    assert row["blockers"] and "node 'stft' (STFT)" in row["blockers"][0]
    assert "TensorRT 10.3 does not support STFT" in row["blockers"][0]
    assert "TensorRT would refuse: node 'stft' (STFT)" in (tmp_path / "run" / "summary.md").read_text()
    assert result.exit_code == 0  # a secondary runtime that is not installed is a reason, not a failure


def text_classifier(directory: Path) -> tuple[Path, Path]:
    """int64 token ids [1, 16] -> Gather(embedding) -> mean -> MatMul/Add/Relu -> MatMul logits [1, 4], and a
    32-sample calibration set of token ids (the integer input stays integer through Q/DQ and the goldens)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((100, 32)).astype(np.float32), "emb"),
             numpy_helper.from_array((rng.standard_normal((32, 64)) * 0.2).astype(np.float32), "w1"),
             numpy_helper.from_array(np.zeros(64, np.float32), "b1"),
             numpy_helper.from_array((rng.standard_normal((64, 4)) * 0.2).astype(np.float32), "w2")]
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["t"], axis=0, name="gather"),
             helper.make_node("ReduceMean", ["t"], ["m"], axes=[1], keepdims=0, name="mean"),
             helper.make_node("MatMul", ["m", "w1"], ["h"], name="mm1"),
             helper.make_node("Add", ["h", "b1"], ["hb"], name="add"),
             helper.make_node("Relu", ["hb"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["logits"], name="mm2")]
    graph = helper.make_graph(nodes, "text_classifier",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], inits)
    model = directory / "textcls.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(model))
    calibration = directory / "calib"
    calibration.mkdir()
    for i in range(32):
        np.savez(calibration / f"{i:03d}.npz", ids=rng.integers(0, 100, (1, 16)))
    (calibration / "manifest.yaml").write_text(
        "kind: arrays\nname: tokens\ndescription: random token ids\nprovenance: generated\nlicence: CC0-1.0\n"
        "inputs:\n  - name: ids\n    dtype: int64\n    shape: [1, 16]\n")
    return model, calibration


def test_a_model_with_integer_token_inputs_is_emulated_and_gets_integer_goldens(tmp_path: Path) -> None:
    model, calibration = text_classifier(tmp_path)
    config = RunConfig(model=str(model), profiles=(str(jetson_like(tmp_path, budgets="  min_top1_agreement: 0.5")),),
                       out_dir=tmp_path / "run", calibration=str(calibration), variants=("fp32", "int8-trt-qdq"))
    assert run_pipeline(config).exit_code == 0
    emulated = rows_of(tmp_path / "run")["int8-trt-qdq@tensorrt-int8-emulated"]
    assert emulated["status"] == "emulated" and emulated["fidelity"][0]["top1_agreement"] >= 0.5
    inputs, golden = read_goldens(tmp_path / "run" / "tensorrt-goldens" / "int8-trt-qdq")
    assert inputs and inputs[0]["ids"].dtype == np.int64 and golden[0]["logits"].shape == (1, 4)
