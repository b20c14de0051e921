"""Tests for edgeopt.models.graph: each file ``load_model`` must refuse; ``inspect_model`` vs hand-computed facts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.errors import EXIT_INPUT_REJECTED, ModelFileError
from edgeopt.models.graph import TensorInfo, cpu_session, inspect_model, load_model
from tests import zoo

LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 102400\n"
)
PNG_HEADER = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00\x1f\xf3\xffa"
)


def rejected(path: Path) -> ModelFileError:
    """Load ``path``, expect a refusal that exits 3 and names the file; return the error."""
    with pytest.raises(ModelFileError) as caught:
        load_model(path)
    error = caught.value
    assert error.exit_code == EXIT_INPUT_REJECTED == 3
    assert str(path) in str(error), f"message does not name the file: {error}"
    assert "\n" not in str(error), f"message is not one line: {error!r}"
    return error


# ------------------------------------------------------------------------------------------ refusals


def test_missing_file_is_refused(tmp_path: Path) -> None:
    error = rejected(tmp_path / "absent.onnx")
    assert "not found" in str(error)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    assert "empty" in str(rejected(path))


def test_truncated_model_is_refused(tmp_path: Path, conv_model: Path) -> None:
    data = conv_model.read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    rejected(path)


@pytest.mark.parametrize(
    "content",
    [PNG_HEADER + bytes(range(256)), b"this is a text file, not a neural network\n" * 4, b"\x00" * 64],
    ids=["png", "text", "zeros"],
)
def test_non_onnx_bytes_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    rejected(path)


def test_git_lfs_pointer_is_refused_with_a_fix(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_text(LFS_POINTER, encoding="ascii")
    message = str(rejected(path))
    assert "Git LFS pointer" in message
    assert "git lfs pull" in message


def test_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.mkdir()
    rejected(path)


def test_external_data_with_parent_reference_is_refused(tmp_path: Path) -> None:
    model = zoo.external_data_model(tmp_path / "model", "../outside.bin")
    assert (tmp_path / "outside.bin").is_file()  # the data exists: the refusal is about where it is
    message = str(rejected(model))
    assert "'../outside.bin'" in message and "outside" in message


def test_external_data_with_absolute_path_is_refused(tmp_path: Path) -> None:
    location = str(tmp_path / "elsewhere" / "weights.bin")
    model = zoo.external_data_model(tmp_path / "model", location)
    assert Path(location).is_file()
    message = str(rejected(model))
    assert "absolute" in message and location in message


def test_external_data_through_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").symlink_to(tmp_path / "secret.bin")
    model = zoo.external_data_model(folder, "weights.bin")  # writes through the link, into secret.bin
    assert (tmp_path / "secret.bin").is_file()
    assert "symlink" in str(rejected(model))


def test_external_data_under_a_symlinked_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "shared").mkdir()
    (folder / "data").symlink_to(tmp_path / "shared", target_is_directory=True)
    model = zoo.external_data_model(folder, "data/weights.bin")
    assert (tmp_path / "shared" / "weights.bin").is_file()
    rejected(model)


def test_external_data_file_missing_is_refused(tmp_path: Path) -> None:
    model = zoo.external_data_model(tmp_path / "model", "weights.bin", write_data=False)
    assert "missing" in str(rejected(model))


@pytest.mark.parametrize("location", ["weights.bin", "data/weights.bin"])
def test_external_data_inside_the_folder_loads(tmp_path: Path, location: str) -> None:
    model_path = zoo.external_data_model(tmp_path / "model", location)
    model = load_model(model_path)
    (weight,) = model.graph.initializer
    np.testing.assert_array_equal(numpy_helper.to_array(weight), zoo.EXTERNAL_WEIGHT)


def test_external_data_size_is_counted(tmp_path: Path) -> None:
    model_path = zoo.external_data_model(tmp_path / "model", "weights.bin")
    info = inspect_model(model_path)
    assert info.size_bytes == model_path.stat().st_size + zoo.EXTERNAL_WEIGHT.nbytes
    assert info.parameter_count == zoo.EXTERNAL_WEIGHT.size


def _edited_external(tmp_path: Path, **fields: str) -> Path:
    """An external-data model whose tensor's ``offset``/``length`` entries are rewritten (the data: 64 bytes)."""
    path = zoo.external_data_model(tmp_path / "model", "weights.bin")
    model = onnx.load(str(path), load_external_data=False)
    entries = model.graph.initializer[0].external_data
    for key, value in fields.items():
        entry = next((e for e in entries if e.key == key), None) or entries.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(("fields", "phrase"), [
    ({"offset": "65"}, "offset 65 is past the end of the file (64 bytes)"),
    ({"length": "65"}, "offset 0 + length 65 runs past the end of the file (64 bytes)"),
    ({"offset": "32", "length": "64"}, "offset 32 + length 64 runs past the end of the file (64 bytes)"),
    ({"offset": "0", "length": "32"}, "holds 32 bytes from offset 0, the tensor's dims [4, 4] need 64"),
    ({"offset": "2e3"}, "offset '2e3' is not an integer"),
    ({"length": "-1"}, "negative length -1"),
], ids=["offset", "length", "offset+length", "short", "not-int", "negative"])
def test_external_data_past_the_end_of_its_file_is_refused(tmp_path: Path, fields: dict[str, str],
                                                           phrase: str) -> None:
    path = _edited_external(tmp_path, **fields)
    message = str(rejected(path))
    assert f"initializer 'w' external data location 'weights.bin': {phrase}" in message


def test_hard_linked_external_data_is_refused(tmp_path: Path) -> None:
    path = zoo.external_data_model(tmp_path / "model", "weights.bin")
    os.link(tmp_path / "model" / "weights.bin", tmp_path / "elsewhere.bin")
    assert "the file has 2 hard links; refused" in str(rejected(path))


def test_a_symlinked_model_reads_external_data_beside_its_target(tmp_path: Path) -> None:
    """What is checked is what the runtime opens: the resolved model's folder."""
    target = zoo.external_data_model(tmp_path / "real", "weights.bin")
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "model.onnx"
    link.symlink_to(target)
    (weight,) = load_model(link).graph.initializer
    np.testing.assert_array_equal(numpy_helper.to_array(weight), zoo.EXTERNAL_WEIGHT)
    (out,) = cpu_session(link).run(None, {"input": np.ones((1, 4), np.float32)})
    np.testing.assert_allclose(out, np.ones((1, 4), np.float32) @ zoo.EXTERNAL_WEIGHT)
    assert inspect_model(link).size_bytes == target.stat().st_size + zoo.EXTERNAL_WEIGHT.nbytes
    (tmp_path / "real" / "weights.bin").rename(tmp_path / "links" / "weights.bin")  # beside the link only
    message = str(rejected(link))
    assert "external data file is missing" in message and f"beside {target}" in message


def _model_with_weight(path: Path, weight: np.ndarray, op: str = "MatMul") -> Path:
    elem = helper.np_dtype_to_tensor_dtype(weight.dtype)
    graph = helper.make_graph([helper.make_node(op, ["input", "w"], ["output"])], "g",
                              [helper.make_tensor_value_info("input", elem, [1, 4])],
                              [helper.make_tensor_value_info("output", elem, [1, 4])],
                              [numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
@pytest.mark.parametrize(("bad", "phrase"), [
    (float("nan"), "initializer 'w' holds 2 NaN value(s) of 16; a model with NaN weights computes garbage"),
    (float("-inf"), "initializer 'w' holds 2 ±Inf value(s) of 16 and is read as a weight"),
], ids=["nan", "inf"])
def test_non_finite_weights_are_refused_naming_the_initializer(tmp_path: Path, dtype: str, bad: float,
                                                               phrase: str) -> None:
    weight = np.ones((4, 4), dtype)
    weight[0, 1] = weight[3, 3] = bad
    assert phrase in str(rejected(_model_with_weight(tmp_path / "w.onnx", weight)))


def test_non_finite_checks_read_every_storage_and_spare_masks(tmp_path: Path) -> None:
    mask = np.zeros((1, 4), np.float32)
    mask[0, 3] = -np.inf  # an additive mask: -inf is how it says "never"
    load_model(_model_with_weight(tmp_path / "mask.onnx", mask, op="Add"))
    mask[0, 2] = np.nan
    assert "holds 1 NaN value(s)" in str(rejected(_model_with_weight(tmp_path / "mask.onnx", mask, op="Add")))
    for kind in (TensorProto.FLOAT, TensorProto.BFLOAT16, TensorProto.FLOAT16):  # float_data / int32_data bits
        tensor = helper.make_tensor("w", kind, [4], [1.0, float("nan"), 2.0, 3.0])
        assert not tensor.HasField("raw_data")
        graph = helper.make_graph([helper.make_node("Add", ["input", "w"], ["output"])], "g",
                                  [helper.make_tensor_value_info("input", kind, [4])],
                                  [helper.make_tensor_value_info("output", kind, [4])], [tensor])
        path = tmp_path / f"typed{kind}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
        assert "initializer 'w' holds 1 NaN value(s) of 4" in str(rejected(path))


def test_nan_in_external_data_is_found_once_it_is_loaded(tmp_path: Path) -> None:
    path = zoo.external_data_model(tmp_path / "model", "weights.bin")
    data = bytearray((tmp_path / "model" / "weights.bin").read_bytes())
    data[4:8] = np.array([np.nan], np.float32).tobytes()
    (tmp_path / "model" / "weights.bin").write_bytes(bytes(data))
    assert "initializer 'w' holds 1 NaN value(s) of 16" in str(rejected(path))
    load_model(path, load_external_data=False)  # not loaded: not read, not judged


# ----------------------------------------------------------------------------------------- inspection


def test_inspect_tiny_conv_model(conv_model: Path) -> None:
    info = inspect_model(conv_model)
    assert info.path == str(conv_model)
    assert info.inputs == (TensorInfo("input", "float32", zoo.CONV_INPUT_SHAPE),)
    assert info.outputs == (TensorInfo("output", "float32", zoo.CONV_OUTPUT_SHAPE),)
    assert info.opsets == {"ai.onnx": zoo.OPSET}
    assert info.ir_version == zoo.IR_VERSION
    assert info.producer == zoo.PRODUCER
    assert info.node_count == 5
    assert info.op_counts == {"Conv": 1, "Relu": 1, "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1}
    # conv weight 8x3x3x3 = 216, conv bias 8, fc weight 10x8 = 80, fc bias 10
    assert info.parameter_count == 216 + 8 + 80 + 10 == zoo.CONV_PARAMETERS
    # Conv: 8x16x16 outputs x (3x3x3) MACs each = 55296; Gemm: 10 outputs x 8 = 80
    assert info.macs == 55_296 + 80 == zoo.CONV_MACS
    assert info.macs_unknown_nodes == ()
    assert info.size_bytes == conv_model.stat().st_size
    assert info.to_dict()["macs"] == info.macs


def test_inspect_tiny_mlp_counts_matmul_macs(mlp_model: Path) -> None:
    info = inspect_model(mlp_model)
    assert info.macs == 16 * 32 + 32 * 4
    assert info.parameter_count == 16 * 32 + 32 + 32 * 4


def _symbolic_batch_model(path: Path, dims: tuple[int | str, ...] = ("batch", 3, 8, 8)) -> Path:
    """Conv(3->4, 3x3, pad 1) -> Reshape(0, -1) (its shape an initializer) -> MatMul(256->5), input ``dims``."""
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv_w"),
             numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape"),
             numpy_helper.from_array(rng.standard_normal((256, 5)).astype(np.float32), "fc_w")]
    nodes = [helper.make_node("Conv", ["input", "conv_w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c", "flat_shape"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "fc_w"], ["output"], name="fc")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(dims))],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [dims[0], 5])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


BATCH_ONE_MACS = 4 * 8 * 8 * (3 * 3 * 3) + 256 * 5  # conv: outputs x Cin*kH*kW; matmul: N x K at batch 1


def test_macs_of_a_symbolic_batch_are_counted_at_batch_one(tmp_path: Path) -> None:
    from tests.test_cli import edgeopt

    path = _symbolic_batch_model(tmp_path / "batch.onnx")
    info = inspect_model(path)
    assert (info.macs, info.macs_assumed, info.macs_unknown_nodes) == (BATCH_ONE_MACS, "batch 1 (batch is symbolic)",
                                                                       ())
    assert inspect_model(path, {"input": (4, 3, 8, 8)}).macs == 4 * BATCH_ONE_MACS  # --shape wins; nothing assumed
    assert inspect_model(path, {"input": (4, 3, 8, 8)}).macs_assumed == ""
    text = edgeopt("inspect", path).stdout
    assert f"MACs (Conv/Gemm/MatMul) at batch 1 (batch is symbolic): {BATCH_ONE_MACS:,}" in text


def test_macs_stay_unknown_when_more_than_the_batch_is_symbolic(tmp_path: Path) -> None:
    info = inspect_model(_symbolic_batch_model(tmp_path / "hw.onnx", ("batch", 3, "H", "W")))
    assert (info.macs, info.macs_assumed, info.macs_unknown_nodes) == (0, "", ("conv", "fc"))


def test_inspect_reads_external_weights_without_loading_them(tmp_path: Path) -> None:
    model = onnx.load(str(_symbolic_batch_model(tmp_path / "inline.onnx")))
    (tmp_path / "ext").mkdir()
    path = tmp_path / "ext" / "model.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="model.data", size_threshold=0)  # shape too
    info = inspect_model(path)
    assert (info.macs, info.size_bytes) == (BATCH_ONE_MACS, path.stat().st_size + (tmp_path / "ext" / "model.data")
                                            .stat().st_size)
    fc = next(t for t in onnx.load(str(path), load_external_data=False).graph.initializer if t.name == "fc_w")
    offset = int(next(e.value for e in fc.external_data if e.key == "offset"))
    with open(tmp_path / "ext" / "model.data", "r+b") as data:  # a NaN in a weight no one loads into the proto
        data.seek(offset + 4 * 7)
        data.write(np.array([np.nan], np.float32).tobytes())
    with pytest.raises(ModelFileError, match="initializer 'fc_w' holds 1 NaN value"):
        inspect_model(path)
