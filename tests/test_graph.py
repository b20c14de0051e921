"""Tests for edgeopt.models.graph: each file ``load_model`` must refuse; ``inspect_model`` vs hand-computed facts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import numpy_helper

from edgeopt.errors import EXIT_INPUT_REJECTED, ModelFileError
from edgeopt.models.graph import TensorInfo, inspect_model, load_model
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
