"""ONNX files: safe loading (rejecting what must not be loaded) and inspection.

``load_model`` is the only way edgeopt opens a user's ONNX file.  It refuses missing,
empty, truncated and non-ONNX files, Git LFS pointers, a path that is not valid UTF-8 (onnx and ONNX Runtime take
UTF-8 paths only), external data that points outside
the model's folder, is hard-linked, or whose offset/length run past the end of its file,
float initializers holding NaN (or ±Inf where a weight is read), and graphs ``onnx.checker`` refuses,
each with one line naming the file and what is wrong (``ModelFileError``, exit 3): for the checker, its
first statement whole, the node (name and op) and tensor, and what to do
(:mod:`edgeopt.models.graph_check`).  A graph whose nodes are merely out of topological order, which
ONNX Runtime runs and the checker refuses, is sorted in memory instead, and :func:`open_model` says so
(the file is never changed; :func:`edgeopt.models.sorted_copy.sorted_source` writes a sorted copy where
edgeopt works).

The checker and shape inference run on a skeleton of the model (its large weights as typed inputs), so
that ``edgeopt inspect`` reads a 100 MB model once and checks it in milliseconds.

A model path that is a symlink is resolved first: external data is looked up beside the
*resolved* file, which is what the runtime and the quantizer open (``make_variant`` and
:func:`cpu_session` resolve the path too).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from edgeopt.errors import ModelFileError, first_line
from edgeopt.models.graph_check import SKELETON_KEEP_ELEMENTS, GraphRefused, check_repairing, skeleton
from edgeopt.models.input_spec import InputSpec

LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelFileError(f"{path}: model file not found")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a regular file")
    try:
        str(path.resolve()).encode("utf-8")
    except UnicodeEncodeError as error:  # bytes the file system gave that are no UTF-8 (surrogate escapes here)
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise ModelFileError(f"{shown}: the file's path is not valid UTF-8; onnx and ONNX Runtime open models by "
                             "UTF-8 path only: rename the file (or its folder)") from error
    size = path.stat().st_size
    if size == 0:
        raise ModelFileError(f"{path}: model file is empty (0 bytes)")
    with open(path, "rb") as handle:
        head = handle.read(64)
    if head.startswith(LFS_POINTER_PREFIX):
        raise ModelFileError(
            f"{path}: this is a Git LFS pointer, not the model; run `git lfs pull` to fetch the real file"
        )


def _external_info(tensor: onnx.TensorProto, where: str) -> tuple[str, int, int | None]:
    """(location, offset, length or None) of an external tensor; a non-integer field is refused."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    numbers: dict[str, int | None] = {}
    for key in ("offset", "length"):
        text = info.get(key)
        try:
            numbers[key] = None if text in (None, "") else int(text)  # type: ignore[arg-type]
        except ValueError:
            raise ModelFileError(f"{where}: {key} {text!r} is not an integer") from None
        value = numbers[key]
        if value is not None and value < 0:
            raise ModelFileError(f"{where}: negative {key} {value}")
    return info.get("location", ""), numbers["offset"] or 0, numbers["length"]


def _expected_bytes(tensor: onnx.TensorProto) -> int | None:
    """Bytes a tensor's dims and type take, for fixed-width types (None for strings and packed 4-bit types)."""
    try:
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return None
    if tensor.data_type in _PACKED_TYPES or tensor.data_type == onnx.TensorProto.STRING:
        return None
    return math.prod(int(d) for d in tensor.dims) * itemsize


_PACKED_TYPES = {getattr(onnx.TensorProto, name) for name in ("INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2")
                 if hasattr(onnx.TensorProto, name)}


def _check_external_data(model: onnx.ModelProto, path: Path, real: Path) -> None:
    """Every external tensor's file: relative, inside the (resolved) model's folder, not a symlink or hard
    link, and long enough for its offset, length and dims; ``path`` is named, ``real`` is where it is read."""
    base = real.parent
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        location = {entry.key: entry.value for entry in tensor.external_data}.get("location", "")
        where = f"{path}: initializer '{tensor.name}' external data location '{location}'"
        location, offset, length = _external_info(tensor, where)
        if not location:
            raise ModelFileError(f"{where}: empty location")
        if os.path.isabs(location) or Path(location).is_absolute():
            raise ModelFileError(f"{where}: absolute paths are refused; keep external data beside the model")
        if ".." in Path(location).parts:
            raise ModelFileError(f"{where}: points outside the model's folder ('..' is refused)")
        target = base / location
        beside = f" (beside {real}, the file {path} links to)" if str(real) != os.path.abspath(path) else ""
        if target.is_symlink() or not target.resolve().is_relative_to(base):
            raise ModelFileError(
                f"{where}: symlinks and paths resolving outside the model's folder are refused{beside}")
        if not target.is_file():
            raise ModelFileError(f"{where}: external data file is missing{beside}")
        stat = target.stat()
        if stat.st_nlink > 1:
            raise ModelFileError(f"{where}: the file has {stat.st_nlink} hard links; refused (a hard link can "
                                 "expose a file from outside the model's folder): keep a plain copy beside the model")
        size = stat.st_size
        if offset > size:
            raise ModelFileError(f"{where}: offset {offset} is past the end of the file ({size} bytes): "
                                 "truncated or mismatched external data")
        available = size - offset
        if length is not None and length > available:
            raise ModelFileError(f"{where}: offset {offset} + length {length} runs past the end of the file "
                                 f"({size} bytes): truncated or mismatched external data")
        expected = _expected_bytes(tensor)
        stored = length if length is not None else available
        if expected is not None and stored < expected:
            raise ModelFileError(f"{where}: holds {stored} bytes from offset {offset}, the tensor's dims "
                                 f"{list(tensor.dims)} need {expected}: truncated or mismatched external data")


# float16 / bfloat16: (little-endian raw dtype, exponent mask, mantissa mask)
_FLOAT_BITS: dict[int, tuple[str, int, int]] = {
    onnx.TensorProto.FLOAT16: ("<u2", 0x7C00, 0x03FF),
    onnx.TensorProto.BFLOAT16: ("<u2", 0x7F80, 0x007F),
}
_FLOAT_NATIVE: dict[int, str] = {onnx.TensorProto.FLOAT: "<f4", onnx.TensorProto.DOUBLE: "<f8"}
# ops that compute with every input: an Inf there is garbage, unlike an Inf mask fed to Add/Where/Clip/Max
_WEIGHT_OPS = {"Conv", "ConvTranspose", "ConvInteger", "Gemm", "MatMul", "BatchNormalization",
               "InstanceNormalization", "LayerNormalization", "GroupNormalization", "LSTM", "GRU", "RNN", "Einsum"}
_CHUNK = 1 << 24


def _nonfinite_counts(tensor: onnx.TensorProto, external_base: Path | None = None) -> tuple[int, int]:
    """(NaN count, ±Inf count) of a float initializer held in the proto (or, when it uses external data, mapped
    from its file in ``external_base``), read in bounded chunks."""
    kind = tensor.data_type
    values: np.ndarray
    if external_base is not None and external_data_helper.uses_external_data(tensor):
        location, offset, _ = _external_info(tensor, tensor.name)  # checked by _check_external_data
        count = math.prod(int(d) for d in tensor.dims)
        values = np.memmap(external_base / location, dtype=_FLOAT_NATIVE.get(kind) or _FLOAT_BITS[kind][0],
                           mode="r", offset=offset, shape=(count,)) if count else np.empty(0, np.float32)
    elif tensor.HasField("raw_data"):
        raw = tensor.raw_data
        values = np.frombuffer(raw, dtype=_FLOAT_NATIVE.get(kind) or _FLOAT_BITS[kind][0])
    elif kind == onnx.TensorProto.FLOAT:
        values = np.asarray(tensor.float_data, dtype=np.float32)
    elif kind == onnx.TensorProto.DOUBLE:
        values = np.asarray(tensor.double_data, dtype=np.float64)
    else:  # float16 / bfloat16 bits in int32_data
        values = np.asarray(tensor.int32_data, dtype=np.int64).astype(np.uint16)
    nan = inf = 0
    for start in range(0, values.size, _CHUNK):
        chunk = values[start:start + _CHUNK]
        if kind in _FLOAT_NATIVE:
            with np.errstate(over="ignore", invalid="ignore"):  # huge finite values may overflow it: then counted
                total = np.add.reduce(chunk)
            if np.isfinite(total):
                continue  # a finite sum has no NaN or Inf in it (one pass, no temporary); else count them
            nan += int(np.count_nonzero(np.isnan(chunk)))
            inf += int(np.count_nonzero(np.isinf(chunk)))
        else:
            _, exponent, mantissa = _FLOAT_BITS[kind]
            special = (chunk & exponent) == exponent
            with_mantissa = (chunk & mantissa) != 0
            nan += int(np.count_nonzero(special & with_mantissa))
            inf += int(np.count_nonzero(special & ~with_mantissa))
    return nan, inf


def _check_finite_weights(model: onnx.ModelProto, path: Path, external_base: Path | None = None) -> None:
    """Refuse a float initializer holding NaN (anywhere) or ±Inf (read by a weighted op), naming it; an
    initializer whose external data is not loaded is read from its file in ``external_base``, else skipped."""
    weights: set[str] = set()
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            if node.op_type in _WEIGHT_OPS:
                weights.update(node.input)
            graphs += [a.g for a in node.attribute if a.HasField("g")] + [g for a in node.attribute for g in a.graphs]
    for tensor in external_data_helper._get_initializer_tensors(model):
        if tensor.data_type not in _FLOAT_NATIVE and tensor.data_type not in _FLOAT_BITS:
            continue
        if external_base is None and external_data_helper.uses_external_data(tensor):
            continue
        nan, inf = _nonfinite_counts(tensor, external_base)
        total = math.prod(int(d) for d in tensor.dims)
        if nan:
            raise ModelFileError(f"{path}: initializer '{tensor.name}' holds {nan} NaN value(s) of {total}; a model "
                                 "with NaN weights computes garbage (re-export it from a healthy checkpoint)")
        if inf and tensor.name in weights:
            raise ModelFileError(f"{path}: initializer '{tensor.name}' holds {inf} ±Inf value(s) of {total} and is "
                                 "read as a weight; the model computes garbage (re-export it from a healthy "
                                 "checkpoint)")


PROTOBUF_LIMIT = 2**31  # bytes: one serialized protobuf message (a ModelProto with its weights) holds less


def _refuse_over_protobuf_limit(model: onnx.ModelProto, path: Path, real: Path) -> None:
    """Refuse (``ModelFileError``, exit 3), before reading any of it, external data of 2 GiB or more: read into the
    proto it could not be serialized again (protobuf's 2 GiB limit: ``EncodeError`` after minutes, gigabytes
    of memory)."""
    sizes: Counter[str] = Counter()
    for tensor in external_data_helper._get_all_tensors(model):
        if external_data_helper.uses_external_data(tensor):
            location, offset, length = _external_info(tensor, f"{path}: initializer '{tensor.name}'")
            sizes[location] += length if length is not None else (real.parent / location).stat().st_size - offset
    total = sum(sizes.values())
    if total >= PROTOBUF_LIMIT:
        files = ", ".join(f"{name}: {size} bytes" for name, size in sizes.most_common())
        raise ModelFileError(
            f"{path}: its external data is {total / 1e9:.2f} GB ({files}); edgeopt reads a model's weights into one "
            f"ONNX protobuf, which holds less than 2 GiB ({PROTOBUF_LIMIT} bytes): refused before loading. Measure "
            "it with ONNX Runtime directly (onnxruntime_perf_test), or bring its weights under 2 GiB (a smaller or "
            "quantized export); `edgeopt inspect` reads it without its weights")


@dataclass(frozen=True)
class OpenedModel:
    """A loaded, checked model, the repairs made to it in memory (``"nodes sorted topologically: ..."``) and the
    external data files it names (relative to its folder; read into ``model`` unless loaded without them)."""

    model: onnx.ModelProto
    repairs: tuple[str, ...] = ()
    external_files: tuple[str, ...] = ()


def load_model(path: Path | str, *, load_external_data: bool = True, check: bool = True) -> onnx.ModelProto:
    """Load an ONNX model after validating the file; raise ``ModelFileError`` on anything unsafe.

    External data is checked and read beside the resolved file (a symlinked model's target folder);
    float initializers in the proto (external ones once loaded) are checked for NaN and weight ±Inf;
    ``check``: ``onnx.checker`` too, nodes out of topological order sorted (:func:`open_model`)."""
    return open_model(path, load_external_data=load_external_data, check=check).model


def open_model(path: Path | str, *, load_external_data: bool = True, check: bool = True,
               check_external_weights: bool = False) -> OpenedModel:
    """:func:`load_model`, and the repairs it made in memory; ``check_external_weights``: external weights not
    loaded are still checked for NaN and ±Inf, mapped from their files (what ``inspect`` needs, without the cost
    of reading them into the proto)."""
    path = Path(path)
    _check_file(path)
    real = path.resolve()
    try:
        model = onnx.load(str(real), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, EOFError) as error:
        raise ModelFileError(
            f"{path}: not a valid ONNX model (protobuf parse failed: truncated or not ONNX): {error}"
        ) from error
    except OSError as error:
        raise ModelFileError(f"{path}: cannot read the model file: {error}") from error
    if not model.graph.node and not model.graph.output:
        raise ModelFileError(f"{path}: parsed, but holds no graph (not an ONNX model?)")
    _check_external_data(model, path, real)
    external_files = tuple(external_locations(model))
    if load_external_data:
        _refuse_over_protobuf_limit(model, path, real)
        try:
            external_data_helper.load_external_data_for_model(model, str(real.parent))
        except Exception as error:  # noqa: BLE001 - whatever onnx raises here, the file is at fault
            raise ModelFileError(f"{path}: cannot read its external data: {first_line(error)}") from error
    _check_finite_weights(model, path, real.parent if check_external_weights and not load_external_data else None)
    if not check:
        return OpenedModel(model, (), external_files)
    try:
        repairs = check_repairing(model)
    except GraphRefused as refused:
        raise ModelFileError(f"{path}: onnx.checker rejected the model: {refused.refusal.with_fix()}") from refused
    except Exception as error:  # noqa: BLE001 - anything else the checker raises is about the file too
        raise ModelFileError(f"{path}: onnx.checker could not check the model: {first_line(error)}") from error
    return OpenedModel(model, repairs, external_files)


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


def external_data_files(path: Path | str) -> list[str]:
    """The external data locations the model's tensors name, each once, in order (relative to its folder;
    :func:`load_model` checks them: relative, inside the folder, no symlink)."""
    return external_locations(onnx.load(str(Path(path).resolve()), load_external_data=False))


def external_locations(model: onnx.ModelProto) -> list[str]:
    """The external data locations ``model``'s tensors name, each once, in order."""
    found: dict[str, None] = {}
    for tensor in external_data_helper._get_all_tensors(model):
        if external_data_helper.uses_external_data(tensor):
            location = {entry.key: entry.value for entry in tensor.external_data}.get("location", "")
            if location:
                found[location] = None
    return list(found)


def model_size_bytes(path: Path, external_files: Sequence[str] | None = None) -> int:
    """Size on disk of the model file plus its external data files (``external_files``: their locations, when the
    caller has read them already, as :class:`OpenedModel` has)."""
    path = Path(path).resolve()  # external data sits beside the resolved file (load_model)
    locations = external_data_files(path) if external_files is None else external_files
    beside = (path.parent / location for location in locations)
    return path.stat().st_size + sum(target.stat().st_size for target in beside if target.is_file())


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
    nodes whose shapes were not known (not counted).  Shapes are inferred on the model's skeleton (its
    weights are never copied).
    """
    model = skeleton(model)
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
    macs_assumed: str = ""  # what the MAC count assumed for symbolic dims: "batch 1 (batch is symbolic)"
    graph_repairs: tuple[str, ...] = field(default=())  # made in memory to check the graph (the file is unchanged)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def batch_one_shapes(specs: list[InputSpec], given: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The inputs not in ``given`` whose only symbolic dim is the first (the batch), at batch 1."""
    return {spec.name: (1, *(int(d) for d in spec.shape[1:])) for spec in specs
            if spec.name not in given and spec.shape and not isinstance(spec.shape[0], int)
            and all(isinstance(d, int) for d in spec.shape[1:])}


def inspect_model(path: Path | str, input_shapes: dict[str, tuple[int, ...]] | None = None) -> ModelInfo:
    """What an ONNX file holds: size, opsets, inputs and outputs, operators, parameters and MACs (at
    ``input_shapes`` for symbolic dims).

    An input not in ``input_shapes`` whose only symbolic dim is the batch is counted at batch 1 (``macs_assumed``
    says so).  The model is read once, its external weights are checked from their files without being loaded,
    and shapes are inferred on its skeleton (:func:`edgeopt.models.graph_check.skeleton`)."""
    path = Path(path)
    opened = open_model(path, load_external_data=False, check_external_weights=True)
    model = opened.model
    for tensor in model.graph.initializer:  # shape inference may read them (a Reshape's shape), not the weights
        if external_data_helper.uses_external_data(tensor) and math.prod(tensor.dims) <= SKELETON_KEEP_ELEMENTS:
            external_data_helper.load_external_data_for_tensor(tensor, str(path.resolve().parent))
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]
    given = dict(input_shapes or {})
    batch_one = batch_one_shapes(input_specs(model), given)
    macs, unknown = count_macs(model, {**given, **batch_one})
    parameters = sum(math.prod(init.dims) for init in model.graph.initializer) + sum(
        math.prod(attr.t.dims) for node in model.graph.node if node.op_type == "Constant"
        for attr in node.attribute if attr.name == "value" and attr.t.dims
    )
    return ModelInfo(
        path=str(path),
        size_bytes=model_size_bytes(path, opened.external_files),
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
        macs_assumed="batch 1 (batch is symbolic)" if batch_one else "",
        graph_repairs=opened.repairs,
    )



def cpu_session(path: str | Path, threads: int | None = 1, optimization: str = "all", log_severity: int = 3) -> Any:
    """An ONNX Runtime session of ``path`` on CPUExecutionProvider alone, outside a measurement (parity
    checks, calibration, reference outputs, sensitivity): ``threads`` intra-op threads (None: ONNX
    Runtime's default), graph ``optimization`` (disable | basic | extended | all), ``log_severity``
    (3: errors only).
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
    # the resolved file, as load_model checks it: external data sits beside a symlinked model's target
    return ort.InferenceSession(str(Path(path).resolve()), options, providers=["CPUExecutionProvider"])


_SHAPE_ONLY_OPS = {"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Cast", "Softmax",
                   "LogSoftmax", "Sigmoid"}
_SCORE_OPS = {"Softmax", "LogSoftmax", "Gemm", "MatMul"}


def class_score_outputs(model: onnx.ModelProto) -> set[str]:
    """Graph outputs that hold class scores: produced, through shape-only ops, by a Softmax/LogSoftmax, or
    the only output of a model that ends in a Gemm/MatMul (plus its bias Add): a classifier's logits.
    Embeddings (pooling, normalisation), feature maps (Conv, NCHW) and the box and landmark regressions
    beside a detector's scores do not qualify, so top-1 agreement is not claimed for them.  An output the
    graph itself ranks (the input of an ArgMax or TopK along its last axis) holds class scores whatever
    produced it.  (``edgeopt.evaluate.fidelity`` also reads a last axis that sums to 1 as class scores.)"""
    producers = {out: node for node in model.graph.node for out in node.output}
    ranks = {info.name: len(info.type.tensor_type.shape.dim) for info in (*model.graph.output, *model.graph.value_info)
             if info.type.tensor_type.HasField("shape")}
    found: set[str] = set()
    for node in model.graph.node:
        if node.op_type in ("ArgMax", "TopK") and node.input:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0 if node.op_type == "ArgMax" else -1)
            rank = ranks.get(node.input[0])
            if axis == -1 or (rank is not None and axis == rank - 1):
                found.add(node.input[0])  # ranked along its last axis (ArgMax's default axis is 0)
    found &= {output.name for output in model.graph.output}
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
