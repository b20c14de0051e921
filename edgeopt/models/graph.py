"""ONNX files: safe loading (rejecting what must not be loaded) and inspection.

``load_model`` is the only way edgeopt opens a user's ONNX file.  It refuses missing,
empty, truncated and non-ONNX files, Git LFS pointers, and external data that points
outside the model's folder, each with one line naming the file and what is wrong.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from edgeopt.errors import ModelFileError, first_line
from edgeopt.models.calibration import InputSpec

LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelFileError(f"{path}: model file not found")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise ModelFileError(f"{path}: model file is empty (0 bytes)")
    with open(path, "rb") as handle:
        head = handle.read(64)
    if head.startswith(LFS_POINTER_PREFIX):
        raise ModelFileError(
            f"{path}: this is a Git LFS pointer, not the model; run `git lfs pull` to fetch the real file"
        )


def _check_external_data(model: onnx.ModelProto, path: Path) -> None:
    base = path.parent.resolve()
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        where = f"{path}: initializer '{tensor.name}' external data location '{location}'"
        if not location:
            raise ModelFileError(f"{where}: empty location")
        if os.path.isabs(location) or Path(location).is_absolute():
            raise ModelFileError(f"{where}: absolute paths are refused; keep external data beside the model")
        if ".." in Path(location).parts:
            raise ModelFileError(f"{where}: points outside the model's folder ('..' is refused)")
        target = base / location
        if target.is_symlink() or not target.resolve().is_relative_to(base):
            raise ModelFileError(f"{where}: symlinks and paths resolving outside the model's folder are refused")
        if not target.is_file():
            raise ModelFileError(f"{where}: external data file is missing")


def load_model(path: Path | str, *, load_external_data: bool = True, check: bool = True) -> onnx.ModelProto:
    """Load an ONNX model after validating the file; raise ``ModelFileError`` on anything unsafe."""
    path = Path(path)
    _check_file(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as error:
        raise ModelFileError(
            f"{path}: not a valid ONNX model (protobuf parse failed: truncated or not ONNX): {error}"
        ) from error
    if not model.graph.node and not model.graph.output:
        raise ModelFileError(f"{path}: parsed, but holds no graph (not an ONNX model?)")
    _check_external_data(model, path)
    if load_external_data:
        external_data_helper.load_external_data_for_model(model, str(path.parent))
    if check:
        try:
            onnx.checker.check_model(str(path))
        except onnx.checker.ValidationError as error:
            first = first_line(error)
            raise ModelFileError(f"{path}: onnx.checker rejected the model: {first}") from error
    return model


def _dims(value_type: onnx.TypeProto) -> tuple[int | str, ...]:
    dims: list[int | str] = []
    for dim in value_type.tensor_type.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            dims.append(dim.dim_param)
        else:
            dims.append("?")
    return tuple(dims)


def _dtype_name(elem_type: int) -> str:
    return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)))


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    """The graph inputs a caller must feed (initializers listed as inputs are skipped)."""
    initializers = {init.name for init in model.graph.initializer}
    return [
        InputSpec(name=value.name, shape=_dims(value.type), dtype=_dtype_name(value.type.tensor_type.elem_type))
        for value in model.graph.input
        if value.name not in initializers
    ]


def output_specs(model: onnx.ModelProto) -> list[InputSpec]:
    return [
        InputSpec(name=value.name, shape=_dims(value.type), dtype=_dtype_name(value.type.tensor_type.elem_type))
        for value in model.graph.output
    ]


def model_size_bytes(path: Path) -> int:
    """Size on disk of the model file plus its external data files."""
    path = Path(path)
    total = path.stat().st_size
    model = onnx.load(str(path), load_external_data=False)
    seen: set[str] = set()
    for tensor in external_data_helper._get_all_tensors(model):
        if external_data_helper.uses_external_data(tensor):
            location = {entry.key: entry.value for entry in tensor.external_data}.get("location", "")
            if location and location not in seen:
                seen.add(location)
                target = path.parent / location
                if target.is_file():
                    total += target.stat().st_size
    return total


def _shape_map(model: onnx.ModelProto) -> dict[str, tuple[int | str, ...]]:
    shapes: dict[str, tuple[int | str, ...]] = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        if value.type.HasField("tensor_type"):
            shapes[value.name] = _dims(value.type)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    return shapes


def _known(shape: tuple[int | str, ...] | None) -> tuple[int, ...] | None:
    if shape is None or any(not isinstance(d, int) for d in shape):
        return None
    return tuple(int(d) for d in shape)


def with_input_shapes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs have the given concrete shapes (for shape inference)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, shapes[value.name], strict=False):
                dim.ClearField("dim_param")
                dim.dim_value = int(size)
    return fixed


def count_macs(model: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]] | None = None) -> tuple[int, list[str]]:
    """Multiply-accumulates of Conv, ConvInteger, QLinearConv, Gemm and MatMul from inferred shapes.

    ``input_shapes`` fixes dynamic input dimensions first.  Returns the total and the names of
    nodes whose shapes were not known (not counted).
    """
    if input_shapes:
        model = with_input_shapes(model, input_shapes)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference is best effort; unknown shapes are reported
        inferred = model
    shapes = _shape_map(inferred)
    total = 0
    unknown: list[str] = []
    for node in inferred.graph.node:
        name = node.name or node.output[0]
        if node.op_type in ("Conv", "ConvInteger", "QLinearConv"):
            weight_index = 3 if node.op_type == "QLinearConv" else 1
            out = _known(shapes.get(node.output[0]))
            weight = _known(shapes.get(node.input[weight_index])) if len(node.input) > weight_index else None
            if out is None or weight is None:
                unknown.append(name)
                continue
            total += math.prod(out) * math.prod(weight[1:])
        elif node.op_type in ("Gemm", "MatMul", "MatMulInteger"):
            a = _known(shapes.get(node.input[0]))
            out = _known(shapes.get(node.output[0]))
            if a is None or out is None or not a:
                unknown.append(name)
                continue
            trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
            k = a[-2] if (node.op_type == "Gemm" and trans_a) else a[-1]
            total += math.prod(out) * k
    return total, unknown


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class ModelInfo:
    """What ``edgeopt inspect`` reports about one ONNX file."""

    path: str
    size_bytes: int
    ir_version: int
    producer: str
    opsets: dict[str, int]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    node_count: int
    op_counts: dict[str, int]
    parameter_count: int
    macs: int
    macs_unknown_nodes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def inspect_model(path: Path | str, input_shapes: dict[str, tuple[int, ...]] | None = None) -> ModelInfo:
    path = Path(path)
    model = load_model(path)
    macs, unknown = count_macs(model, input_shapes)
    parameters = sum(math.prod(init.dims) for init in model.graph.initializer) + sum(
        math.prod(attr.t.dims) for node in model.graph.node if node.op_type == "Constant"
        for attr in node.attribute if attr.name == "value" and attr.t.dims
    )
    return ModelInfo(
        path=str(path),
        size_bytes=model_size_bytes(path),
        ir_version=int(model.ir_version),
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        opsets={(entry.domain or "ai.onnx"): int(entry.version) for entry in model.opset_import},
        inputs=tuple(TensorInfo(s.name, s.dtype, s.shape) for s in input_specs(model)),
        outputs=tuple(TensorInfo(s.name, s.dtype, s.shape) for s in output_specs(model)),
        node_count=len(model.graph.node),
        op_counts=dict(Counter(node.op_type for node in model.graph.node).most_common()),
        parameter_count=int(parameters),
        macs=int(macs),
        macs_unknown_nodes=tuple(unknown),
    )



def cpu_session(path: str | Path, threads: int | None = 1, optimization: str = "all", log_severity: int = 3,
                optimized_model_path: str | Path | None = None) -> Any:
    """An ONNX Runtime session of ``path`` on CPUExecutionProvider alone, outside a measurement (parity
    checks, calibration, reference outputs, sensitivity): ``threads`` intra-op threads (None: ONNX
    Runtime's default), graph ``optimization`` (disable | basic | extended | all), ``log_severity``
    (3: errors only), and, with ``optimized_model_path``, the optimised graph written there.
    Measurements open their sessions through ``edgeopt.backends`` instead."""
    import onnxruntime as ort

    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.graph_optimization_level = levels[optimization]
    options.log_severity_level = log_severity
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


_SHAPE_ONLY_OPS = {"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Cast", "Softmax",
                   "LogSoftmax", "Sigmoid"}
_SCORE_OPS = {"Softmax", "LogSoftmax", "Gemm", "MatMul"}


def class_score_outputs(model: onnx.ModelProto) -> set[str]:
    """Graph outputs that hold class scores: produced, through shape-only ops, by a Softmax/LogSoftmax, or
    the only output of a model that ends in a Gemm/MatMul (plus its bias Add): a classifier's logits.
    Embeddings (pooling, normalisation), feature maps (Conv, NCHW) and the box and landmark regressions
    beside a detector's scores do not qualify, so top-1 agreement is not claimed for them."""
    producers = {out: node for node in model.graph.node for out in node.output}
    found: set[str] = set()
    single = len(model.graph.output) == 1
    for output in model.graph.output:
        tensor, seen_softmax = output.name, False
        for _ in range(16):
            node = producers.get(tensor)
            if node is None:
                break
            if node.op_type in ("Softmax", "LogSoftmax"):
                seen_softmax = True
            if node.op_type in _SCORE_OPS:
                if seen_softmax or single:
                    found.add(output.name)
                break
            if node.op_type == "Add" and any(producers.get(i) is not None and producers[i].op_type == "MatMul"
                                             for i in node.input):
                if seen_softmax or single:
                    found.add(output.name)
                break
            if node.op_type not in _SHAPE_ONLY_OPS or not node.input:
                if seen_softmax:
                    found.add(output.name)
                break
            tensor = node.input[0]
    return found
