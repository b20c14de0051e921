"""Concrete shapes decided once (never a silent 1) and random data inside each input's domain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgeopt.errors import ConfigError
from edgeopt.models.calibration import InputSpec
from edgeopt.models.graph import input_specs
from edgeopt.models.inputs import resolve_shapes, synthetic_feeds, table_sizes
from tests import zoo


def test_shapes_come_from_input_then_profile_then_samples_then_batch(tmp_path: Path) -> None:
    specs = input_specs(onnx.load(str(zoo.dynamic_conv_model(tmp_path / "dyn.onnx"))))
    samples = [{"input": np.zeros((1, 3, 48, 320), np.float32)} for _ in range(3)]
    (from_samples,) = resolve_shapes(specs, samples=samples, batch_size=4)
    assert from_samples.shape == (1, 3, 48, 320)
    assert [d.source for d in from_samples.dims] == ["samples", "model", "samples", "samples"]
    (given,) = resolve_shapes(specs, given=[InputSpec("input", (2, 3, 32, "W"), "float32")],
                              profile_shapes={"input": [1, 3, 16, 64]}, samples=samples)
    assert given.shape == (2, 3, 32, 64)  # --input beats the profile, the profile beats the samples
    (batch_only,) = resolve_shapes(specs, profile_shapes={"input": [7, 3, 16, 16]})
    assert batch_only.shape == (7, 3, 16, 16)


def test_an_unresolved_dimension_is_a_usage_error_naming_the_ways_to_set_it(tmp_path: Path) -> None:
    specs = input_specs(onnx.load(str(zoo.dynamic_conv_model(tmp_path / "dyn.onnx"))))
    with pytest.raises(ConfigError) as caught:
        resolve_shapes(specs, where="dyn.onnx")
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert "input: [N=1 (batch_size), 3, H=? (unresolved), W=? (unresolved)]" in message
    assert "--input input:1x3xNxN" in message and "bench.input_shapes" in message and "--calibration" in message
    disagreeing = [{"input": np.zeros((1, 3, 32, w), np.float32)} for w in (100, 120)]
    with pytest.raises(ConfigError, match=r"W=\? \(unresolved\)"):
        resolve_shapes(specs, samples=disagreeing)
    (partial,) = resolve_shapes(specs, strict=False)
    assert not partial.complete


def test_a_shape_that_does_not_fit_the_model_is_refused(tmp_path: Path) -> None:
    specs = input_specs(onnx.load(str(zoo.dynamic_conv_model(tmp_path / "dyn.onnx"))))
    with pytest.raises(ConfigError, match="--input input: shape"):
        resolve_shapes(specs, given=[InputSpec("input", (1, 4, 16, 16), "float32")])
    with pytest.raises(ConfigError, match="has no input of that name"):
        resolve_shapes(specs, given=[InputSpec("pixels", (1, 3, 16, 16), "float32")])


def test_token_ids_stay_inside_the_embedding_table(tmp_path: Path) -> None:
    path = zoo.token_embedding_model(tmp_path / "emb.onnx")
    model = onnx.load(str(path))
    assert table_sizes(model) == {"input_ids": zoo.EMBEDDING_VOCAB}  # through the Cast
    (ids,) = resolve_shapes(input_specs(model), given=[InputSpec("input_ids", (2, 512), "int64")])
    feeds = synthetic_feeds([ids.spec()], model, seed=1)
    assert feeds["input_ids"].max() < zoo.EMBEDDING_VOCAB
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, feeds)
    assert out.shape == (2, 8)


def test_masks_are_ones_and_an_integer_scalar_asks_for_samples() -> None:
    feeds = synthetic_feeds([InputSpec("attention_mask", (1, 16), "int64"), InputSpec("flag", (2,), "bool")])
    assert feeds["attention_mask"].tolist() == [[1] * 16] and feeds["flag"].dtype == np.bool_
    with pytest.raises(ConfigError, match="input 'sr': an integer scalar"):
        synthetic_feeds([InputSpec("sr", (), "int64")])
    assert synthetic_feeds([InputSpec("gain", (), "float32")])["gain"].shape == ()  # scalars stay rank-0


def test_inspect_says_how_each_symbolic_dim_will_be_resolved(tmp_path: Path) -> None:
    import subprocess
    import sys

    model = zoo.dynamic_conv_model(tmp_path / "dyn.onnx")
    done = subprocess.run([sys.executable, "-m", "edgeopt", "inspect", str(model), "--shape", "input:1x3x32x64"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "input: [N=1 (--input), 3, H=32 (--input), W=64 (--input)]" in done.stdout
    bare = subprocess.run([sys.executable, "-m", "edgeopt", "inspect", str(model)], capture_output=True, text=True,
                          timeout=120)
    assert "H=? (unresolved)" in bare.stdout and "stop a run (exit 2)" in bare.stdout


def test_a_multi_input_eval_set_feeds_each_input_by_name(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    from edgeopt.workflows.pipeline import RunConfig, run_pipeline
    from tests.profiles import write_profile

    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["rows"], name="gather", axis=0),
         helper.make_node("Mul", ["rows", "scale"], ["output"], name="mul")],
        "two_inputs",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "tokens"]),
         helper.make_tensor_value_info("scale", TensorProto.FLOAT, ["batch", "tokens", 1])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", "tokens", 8])],
        [onnx.numpy_helper.from_array(np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32), "table")],
    )
    model = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(model))
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "eval.npz", ids=rng.integers(0, 20, (6, 1, 5)), scale=rng.random((6, 1, 5, 1), np.float32),
             targets=rng.random((6, 40), np.float32))
    result = run_pipeline(RunConfig(model=str(model), profiles=(str(write_profile(tmp_path, "p")),),
                                    out_dir=tmp_path / "out", variants=("fp32", "fp16"),
                                    eval_set=str(tmp_path / "eval.npz")), log=lambda _: None)
    assert result.exit_code == 0
    with np.load(tmp_path / "out" / "reference_inputs.npz") as reference:
        assert {name: reference[name].shape for name in reference.files} == {"ids": (6, 1, 5),
                                                                            "scale": (6, 1, 5, 1)}
    fp32 = next(m for m in result.measurements if m.variant_name == "fp32")
    assert fp32.input_shapes == {"ids": [1, 5], "scale": [1, 5, 1]}  # the eval samples fixed batch and tokens
