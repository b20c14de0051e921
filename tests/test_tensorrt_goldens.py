"""Golden inputs/outputs in Polygraphy's JSON format (edgeopt.backends.tensorrt.goldens).

``tests/data/polygraphy/`` holds files written by real Polygraphy (PyPI ``polygraphy==0.53.6``, numpy 2.4.6):
``polygraphy run fixture.onnx --onnxrt --iterations 2 --seed 7 --save-inputs inputs.json --save-outputs
outputs.json`` on ``fixture.onnx`` (made by ``make_fixture_model.py``: float32, float16, int64, bool and
scalar outputs).  The reader must read them, and the writer must reproduce them byte for byte.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeopt.backends.tensorrt.goldens import (
    INPUTS_FILE,
    METADATA_FILE,
    OUTPUTS_FILE,
    README_FILE,
    GoldenFormatError,
    compare_output,
    compare_outputs,
    encode_inputs,
    encode_run_results,
    read_goldens,
    recommended_tolerances,
    write_goldens,
)

FIXTURE = Path(__file__).parent / "data" / "polygraphy"


def _feeds() -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(0)
    inputs = [{"image": rng.standard_normal((1, 3, 4, 4)).astype(np.float32),
               "half": rng.standard_normal((2, 5)).astype(np.float16),
               "ids": np.arange(6, dtype=np.int64).reshape(2, 3) + i,
               "mask": np.array([[True, False, True]]),
               "scale": np.array(0.5 + i, dtype=np.float32)}  # a rank-0 array
              for i in range(2)]
    outputs = [{"logits": rng.standard_normal((1, 10)).astype(np.float32),
                "count": np.array(7 + i, dtype=np.int64),
                "flags": np.array([True, False]),
                "empty": np.zeros((0, 4), dtype=np.float32)}
               for i in range(2)]
    return inputs, outputs


def _independent_array(document: dict) -> np.ndarray:
    """Polygraphy's documented ndarray encoding, decoded without edgeopt: base64 → np.load."""
    assert list(document) == ["array", "polygraphy_class"] and document["polygraphy_class"] == "ndarray"
    loaded = np.load(io.BytesIO(base64.b64decode(document["array"], validate=True)), allow_pickle=False)
    assert isinstance(loaded, np.ndarray)
    return loaded


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        np.testing.assert_array_equal(a[name], b[name])


def test_round_trip_preserves_dtypes_shapes_and_scalars(tmp_path: Path) -> None:
    inputs, outputs = _feeds()
    files = write_goldens(tmp_path / "g", inputs, outputs, runner_name="onnxrt-cpu-golden", model_sha256="ab" * 32,
                          note="ONNX Runtime 1.32.0 CPUExecutionProvider")
    assert {p.name for p in (tmp_path / "g").iterdir()} == {INPUTS_FILE, OUTPUTS_FILE, METADATA_FILE, README_FILE}
    back_in, back_out = read_goldens(files.folder)
    assert len(back_in) == len(back_out) == 2
    for mine, theirs in zip(inputs + outputs, back_in + back_out, strict=True):
        _assert_same(mine, theirs)
    assert back_in[0]["scale"].shape == () and back_out[1]["count"].shape == ()
    assert back_out[0]["empty"].shape == (0, 4)


def test_files_decode_with_an_independent_decoder(tmp_path: Path) -> None:
    inputs, outputs = _feeds()
    files = write_goldens(tmp_path, inputs, outputs, runner_name="onnxrt-cpu-golden", model_sha256="0" * 64,
                          note="test")
    raw_inputs = json.loads(files.inputs.read_text())
    assert isinstance(raw_inputs, list) and len(raw_inputs) == 2
    for feed, raw in zip(inputs, raw_inputs, strict=True):
        _assert_same(feed, {k: _independent_array(v) for k, v in raw.items()})

    raw = json.loads(files.outputs.read_text())
    assert list(raw) == ["lst", "polygraphy_class"] and raw["polygraphy_class"] == "RunResults"
    ((runner, iterations),) = raw["lst"]
    assert runner == "onnxrt-cpu-golden" and len(iterations) == 2
    for feed, iteration in zip(outputs, iterations, strict=True):
        assert list(iteration) == ["outputs", "runtime", "runner_name", "polygraphy_class"]
        assert iteration["polygraphy_class"] == "IterationResult" and iteration["runner_name"] == runner
        assert iteration["runtime"] is None
        decoded = {}
        for name, lazy in iteration["outputs"].items():
            assert list(lazy) == ["values", "polygraphy_class"] and lazy["polygraphy_class"] == "LazyArray"
            decoded[name] = _independent_array(lazy["values"])
        _assert_same(feed, decoded)
    # Polygraphy's to_json: four-space indent, no trailing newline
    assert files.outputs.read_text().startswith('{\n    "lst": [\n        [\n')
    assert not files.outputs.read_text().endswith("\n")


def test_reads_files_real_polygraphy_wrote() -> None:
    inputs, outputs = read_goldens(FIXTURE)
    assert len(inputs) == len(outputs) == 2
    assert {k: (v.dtype, v.shape) for k, v in inputs[0].items()} == {
        "x": (np.dtype(np.float32), (2, 3)), "k": (np.dtype(np.int64), ())}
    assert {k: (v.dtype, v.shape) for k, v in outputs[1].items()} == {
        "relu": (np.dtype(np.float32), (2, 3)), "half": (np.dtype(np.float16), (2, 3)),
        "argmax": (np.dtype(np.int64), (2,)), "positive": (np.dtype(np.bool_), (2, 3)),
        "k_plus_one": (np.dtype(np.int64), ())}
    for feed, result in zip(inputs, outputs, strict=True):  # the values mean what the model computes
        np.testing.assert_array_equal(result["relu"], np.maximum(feed["x"], 0))
        np.testing.assert_array_equal(result["half"], feed["x"].astype(np.float16))
        np.testing.assert_array_equal(result["argmax"], feed["x"].argmax(axis=1))
        np.testing.assert_array_equal(result["positive"], feed["x"] > 0)
        assert int(result["k_plus_one"]) == int(feed["k"]) + 1


def test_writer_reproduces_real_polygraphy_files_byte_for_byte() -> None:
    inputs, outputs = read_goldens(FIXTURE)
    assert encode_inputs(inputs) == (FIXTURE / INPUTS_FILE).read_text()
    raw = json.loads((FIXTURE / OUTPUTS_FILE).read_text())
    ((runner, iterations),) = raw["lst"]
    runtimes = [it["runtime"] for it in iterations]
    assert runner.startswith("onnxrt-runner-") and all(isinstance(r, float) for r in runtimes)
    assert encode_run_results(outputs, runner, runtimes) == (FIXTURE / OUTPUTS_FILE).read_text()


def test_fixture_outputs_are_onnx_runtime_outputs_of_the_fixture_model() -> None:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(FIXTURE / "fixture.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    inputs, outputs = read_goldens(FIXTURE)
    for feed, expected in zip(inputs, outputs, strict=True):
        _assert_same(dict(zip(names, session.run(None, feed), strict=True)), expected)


def test_metadata_readme_and_command(tmp_path: Path) -> None:
    inputs, outputs = _feeds()
    model = tmp_path / "variants" / "int8-trt-qdq.onnx"
    files = write_goldens(tmp_path / "goldens" / "int8-trt-qdq", inputs, outputs, runner_name="onnxrt-cpu-golden",
                          model_sha256="c" * 64, note="ONNX Runtime 1.32.0 CPUExecutionProvider", model_path=model)
    assert files.command == ("polygraphy run ../../variants/int8-trt-qdq.onnx --trt --strongly-typed "
                             "--load-inputs inputs.json --load-outputs outputs.json --check-error-stat quantile "
                             "--error-quantile 0.99 --atol 0.05 --rtol 0.05")
    meta = json.loads(files.metadata.read_text())
    assert meta["model_sha256"] == "c" * 64 and meta["polygraphy_command"] == files.command
    assert meta["produced_by"]["runner_name"] == "onnxrt-cpu-golden"
    assert meta["produced_by"]["note"] == "ONNX Runtime 1.32.0 CPUExecutionProvider"
    assert meta["produced_by"]["versions"]["numpy"] == np.__version__
    assert meta["iterations"] == 2 and meta["outputs"]["logits"] == {"dtype": "float32", "shape": [1, 10],
                                                                     "nonfinite_values": 0}
    assert meta["tolerances"]["precision"] == "int8"
    readme = files.readme.read_text()
    assert files.command in readme and "c" * 64 in readme
    fp32 = write_goldens(tmp_path / "fp32", inputs, outputs, runner_name="r", model_sha256="d", note="n",
                         precision="fp32")
    assert fp32.command.startswith("polygraphy run MODEL.onnx --trt --load-inputs")
    assert "--strongly-typed" not in fp32.command and "--check-error-stat elemwise --atol 0.001" in fp32.command


def test_write_refuses_what_polygraphy_cannot_compare(tmp_path: Path) -> None:
    inputs, outputs = _feeds()
    with pytest.raises(ValueError, match="2 input feeds but 1 output"):
        write_goldens(tmp_path, inputs, outputs[:1], runner_name="r", model_sha256="x", note="n")
    with pytest.raises(ValueError, match="at least one"):
        write_goldens(tmp_path, [], [], runner_name="r", model_sha256="x", note="n")
    with pytest.raises(TypeError, match="pickling"):
        write_goldens(tmp_path, [{"x": np.array([object()])}], [{"y": np.zeros(1)}], runner_name="r",
                      model_sha256="x", note="n")
    with pytest.raises(ValueError, match="no golden tolerances"):
        write_goldens(tmp_path, inputs, outputs, runner_name="r", model_sha256="x", note="n", precision="bf8")
    assert not (tmp_path / INPUTS_FILE).exists()


def test_reader_refuses_other_documents(tmp_path: Path) -> None:
    inputs, outputs = _feeds()
    write_goldens(tmp_path, inputs, outputs, runner_name="r", model_sha256="x", note="n")
    good = (tmp_path / OUTPUTS_FILE).read_text()
    (tmp_path / OUTPUTS_FILE).write_text(json.dumps({"lst": []}))  # no polygraphy_class
    with pytest.raises(GoldenFormatError, match="not a Polygraphy RunResults"):
        read_goldens(tmp_path)
    (tmp_path / OUTPUTS_FILE).write_text(good.replace('"array": "k05VTVBZ', '"array": "!!!', 1))
    with pytest.raises(GoldenFormatError, match="not base64 np.save data"):
        read_goldens(tmp_path)
    (tmp_path / OUTPUTS_FILE).write_text(good)
    (tmp_path / INPUTS_FILE).write_text(encode_inputs(inputs[:1]))
    with pytest.raises(GoldenFormatError, match="1 input feeds but 2 output iterations"):
        read_goldens(tmp_path)


def test_reader_takes_the_legacy_lazy_array_name(tmp_path: Path) -> None:
    inputs, outputs = _feeds()
    write_goldens(tmp_path, inputs, outputs, runner_name="r", model_sha256="x", note="n")
    text = (tmp_path / OUTPUTS_FILE).read_text().replace('"LazyArray"', '"LazyNumpyArray"')
    (tmp_path / OUTPUTS_FILE).write_text(text)
    _assert_same(read_goldens(tmp_path)[1][0], outputs[0])


def test_tolerances_per_precision() -> None:
    fp32, fp16, int8 = (recommended_tolerances(p) for p in ("fp32", "fp16", "int8"))
    assert (fp32.atol, fp32.rtol, fp32.check_error_stat) == (1e-3, 1e-3, "elemwise")
    assert (fp16.atol, fp16.rtol, fp16.check_error_stat) == (1e-2, 1e-2, "elemwise")
    assert (int8.atol, int8.rtol, int8.check_error_stat, int8.error_quantile) == (0.05, 0.05, "quantile", 0.99)
    assert int8.polygraphy_args() == ["--check-error-stat", "quantile", "--error-quantile", "0.99",
                                      "--atol", "0.05", "--rtol", "0.05"]
    with pytest.raises(ValueError):
        recommended_tolerances("int4")


def test_compare_follows_polygraphy_rule() -> None:
    golden = np.linspace(-4, 4, 1000, dtype=np.float32).reshape(10, 100)
    fp32 = recommended_tolerances("fp32")
    assert compare_output(golden + 1e-4, golden, fp32).passed
    bad = compare_output(golden + 0.01, golden, fp32)
    assert not bad.passed and "elements beyond both tolerances" in bad.reason
    big = golden * 1000  # 1e-3 relative: within rtol although far beyond atol
    assert compare_output(big * (1 + 5e-4), big, fp32).passed

    int8 = recommended_tolerances("int8")
    flipped = golden.copy()
    flipped.flat[::200] += 0.5  # five one-step flips in 1000 elements: below the 99th percentile
    assert compare_output(flipped, golden, int8).passed
    assert not compare_output(flipped, golden, fp32).passed
    assert not compare_output(golden * 1.5 + 0.2, golden, int8).passed  # a wrong scale everywhere

    nan = golden.copy()
    nan[0, 0] = np.nan
    assert not compare_output(nan, golden, fp32).passed
    mask = np.array([True, False, True])
    assert compare_output(mask, mask, fp32).passed
    assert not compare_output(~mask, mask, fp32).passed
    shape = compare_output(golden.reshape(100, 10), golden, fp32)
    assert not shape.passed and "shape" in shape.reason

    results = compare_outputs([{"y": golden}], [{"y": golden, "z": golden}], fp32)
    assert [r.passed for r in results] == [True, False] and results[1].reason == "output missing"
    assert not all(r.passed for r in compare_outputs([], [{"y": golden}], fp32))


def test_module_imports_no_runtime() -> None:
    code = ("import sys, edgeopt.backends.tensorrt.goldens; "
            "print(sorted(m for m in ('onnxruntime', 'torch', 'tensorrt') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _gpu_smoke():  # benchmarks/gpu_smoke.py, loaded as a module (it is a script, not a package)
    import importlib.util

    path = Path(__file__).parents[1] / "benchmarks" / "gpu_smoke.py"
    spec = importlib.util.spec_from_file_location("gpu_smoke_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_int8_layer_report_reads_both_inspector_schemas() -> None:
    report = _gpu_smoke().int8_layer_report
    # TensorRT 10.x: one "Format/Datatype" text per tensor (the keys Polygraphy's backend/trt/util.py reads)
    v10 = {"Layers": [
        {"Name": "input_quantize", "LayerType": "Scale",
         "Inputs": [{"Name": "x", "Dimensions": [1, 3, 8, 8], "Format/Datatype": "Row major linear FP32 format"}],
         "Outputs": [{"Name": "xq", "Dimensions": [1, 3, 8, 8], "Format/Datatype": "Row major linear Int8 format"}]},
        {"Name": "conv1 + relu", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "xq", "Dimensions": [1, 3, 8, 8],
                     "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
         "Outputs": [{"Name": "y", "Dimensions": [1, 8, 8, 8], "Format/Datatype": "Row major linear FP32 format"}]},
        {"Name": "reformat", "LayerType": "Reformat",
         "Inputs": [{"Name": "y8", "Dimensions": [1], "Format/Datatype": "Row major linear Int8 format"}],
         "Outputs": [{"Name": "y32", "Dimensions": [1], "Format/Datatype": "Row major linear FP32 format"}]}],
        "Bindings": ["x", "y"]}
    found = report(json.dumps(v10))
    assert found["layers"] == 3 and found["int8_compute"] == ["conv1 + relu (CaskConvolution)"]
    assert len(found["int8_layers"]) == 3
    # TensorRT 11.x: "Format" and "DataType" apart
    v11 = {"Layers": [{"Name": "gemm", "LayerType": "gemm",
                       "Inputs": [{"Name": "a", "DataType": "Float", "Format": "Row major linear FP32 format"}],
                       "Outputs": [{"Name": "b", "DataType": "Float", "Format": "Row major linear FP32 format"}]}],
           "I/O Tensors": []}
    assert report(json.dumps(v11))["int8_compute"] == []  # a float engine: the smoke row fails on it
    v11["Layers"][0]["Inputs"][0]["DataType"] = "Int8"
    assert report(json.dumps(v11))["int8_compute"] == ["gemm (gemm)"]
    with pytest.raises(ValueError, match="DETAILED"):
        report(json.dumps({"Layers": ["conv1 + relu", "gemm"], "Bindings": []}))
