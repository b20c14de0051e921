"""Concrete shapes decided once (never a silent 1) and random data inside each input's domain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgeopt.errors import ConfigError
from edgeopt.models.graph import input_specs
from edgeopt.models.input_spec import InputSpec
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
                                    eval_set=str(tmp_path / "eval.npz")))
    assert result.exit_code == 0
    with np.load(tmp_path / "out" / "reference_inputs.npz") as reference:
        assert {name: reference[name].shape for name in reference.files} == {"ids": (6, 1, 5),
                                                                            "scale": (6, 1, 5, 1)}
    fp32 = next(m for m in result.measurements if m.variant_name == "fp32")
    assert fp32.input_shapes == {"ids": [1, 5], "scale": [1, 5, 1]}  # the eval samples fixed batch and tokens


# ------------------------------------------------------------------------------------- size cap, dtypes


def test_an_input_over_the_size_cap_is_refused_before_anything_is_allocated(tmp_path: Path) -> None:
    from edgeopt.errors import InputRejectedError
    from edgeopt.models.export import random_feeds

    specs = input_specs(onnx.load(str(zoo.dynamic_conv_model(tmp_path / "dyn.onnx"))))
    huge = [InputSpec("input", (1, 3, 100000, 100000), "float32")]
    with pytest.raises(InputRejectedError) as caught:
        resolve_shapes(specs, given=huge, where="dyn.onnx on profile p", max_input_mb=1024)
    message = str(caught.value)
    assert caught.value.exit_code == 3 and "\n" not in message
    assert message.startswith("dyn.onnx on profile p: input 'input' of shape [1, 3, 100000, 100000] float32 would "
                              "take 111.8 GiB, over the cap of 1024 MiB per input (the profile's bench.max_input_mb)")
    assert "raise bench.max_input_mb" in message
    (fits,) = resolve_shapes(specs, given=[InputSpec("input", (1, 3, 64, 64), "float32")], max_input_mb=0.05)
    assert fits.shape == (1, 3, 64, 64)  # 48 KiB <= 51.2 KiB
    with pytest.raises(InputRejectedError, match=r"would take 48\.0 KiB, over the cap of 0\.04 MiB"):
        resolve_shapes(specs, given=[InputSpec("input", (1, 3, 64, 64), "float32")], max_input_mb=0.04)
    assert not resolve_shapes(specs, strict=False, max_input_mb=0.001)[0].complete  # unresolved: nothing to size
    for make in (lambda: synthetic_feeds(huge), lambda: random_feeds(huge, seed=0)):  # the default cap: 1024 MiB
        with pytest.raises(InputRejectedError, match="input 'input' of shape"):
            make()
    big = [InputSpec("x", (1, 1024, 1024), "float16")]  # 2 MiB
    with pytest.raises(InputRejectedError, match="float16 would take 2.0 MiB"):
        synthetic_feeds(big, max_input_mb=1)
    assert synthetic_feeds(big, max_input_mb=None)["x"].dtype == np.float16


def test_synthetic_data_is_made_in_the_input_dtype_without_a_float64_copy() -> None:
    import tracemalloc

    for dtype, values in (("float32", 1 << 24), ("float16", 1 << 24)):
        tracemalloc.start()
        try:
            feeds = synthetic_feeds([InputSpec("x", (1, values), dtype)], max_input_mb=None)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        made = feeds["x"]
        assert made.dtype == np.dtype(dtype) and made.shape == (1, values)
        assert peak < made.nbytes * 1.6, f"{dtype}: peak {peak / 2**20:.0f} MiB for {made.nbytes / 2**20:.0f} MiB"
        assert 0.9 < float(np.std(made[0, :100_000].astype(np.float32))) < 1.1
    kinds = synthetic_feeds([InputSpec("i", (3, 4), "int32"), InputSpec("u", (5,), "uint8"),
                             InputSpec("b", (6,), "bool"), InputSpec("d", (2,), "float64")])
    assert {name: array.dtype.name for name, array in kinds.items()} == {
        "i": "int32", "u": "uint8", "b": "bool", "d": "float64"}
    again = synthetic_feeds([InputSpec("i", (3, 4), "int32"), InputSpec("u", (5,), "uint8"),
                             InputSpec("b", (6,), "bool"), InputSpec("d", (2,), "float64")])
    assert all(np.array_equal(kinds[n], again[n]) for n in kinds)  # seeded


@pytest.mark.parametrize(("images", "spec", "phrase"), [
    (np.zeros((4, 1, 16, 16), np.float32), InputSpec("input", ("N", 3, "H", "W"), "float32"),
     "input 'input': samples of shape [1, 1, 16, 16] do not fit the model's ['N', 3, 'H', 'W'] "
     "(dimension 1 must be 3)"),
    (np.zeros((4, 16), np.float32), InputSpec("input", (1, 3, 16, 16), "float32"),
     "input 'input': samples of shape [16] do not fit the model's [1, 3, 16, 16] (rank 1, the model wants rank 4)"),
    (np.full((2, 1, 5), 1.5), InputSpec("ids", ("batch", "tokens"), "int64"),
     "input 'ids': float64 values cannot feed an input of dtype int64 (store the integers it expects)"),
    (np.full((2, 1, 5), 70000, np.int64), InputSpec("ids", ("batch", "tokens"), "int16"),
     "input 'ids': values 70000..70000 do not fit the input's int16 (-32768..32767)"),
    (np.full((2, 1, 4), 1e6, np.float32), InputSpec("x", (1, 4), "float16"),
     "input 'x': values up to 1e+06 overflow the input's float16 (largest 65504)"),
])
def test_eval_samples_that_do_not_fit_an_input_are_exit_3_naming_the_file(
        images: np.ndarray, spec: InputSpec, phrase: str) -> None:
    from edgeopt.errors import CalibrationError
    from edgeopt.models.inputs import stacked_feeds

    with pytest.raises(CalibrationError) as caught:
        stacked_feeds(images, spec, "eval.npz")
    assert caught.value.exit_code == 3
    assert str(caught.value) == f"eval.npz: {phrase}"


def test_eval_samples_that_fit_are_cast_to_the_input_dtype() -> None:
    from edgeopt.models.inputs import stacked_feeds

    ids = stacked_feeds(np.arange(10, dtype=np.int64).reshape(2, 1, 5), InputSpec("ids", ("b", "t"), "int32"))
    assert ids.dtype == np.int32 and ids.shape == (2, 1, 5)
    images = stacked_feeds(np.zeros((3, 3, 8, 8)), InputSpec("x", ("N", 3, "H", "W"), "float16"))
    assert images.dtype == np.float16 and images.shape == (3, 1, 3, 8, 8)
