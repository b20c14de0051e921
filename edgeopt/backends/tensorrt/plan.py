"""From a hardware profile to GPU build settings, without a GPU: TensorRT build plans and ORT GPU options.

- ``plan_build``: which ONNX variant and which TensorRT network mode give each precision on TensorRT
  10.x and 11.x (FP16: builder flag on 10.x from the fp32 variant, or a strongly typed fp16 variant on
  both; INT8: the Q/DQ variant, strongly typed, never an implicit calibrator).
- ``shape_profile``: the optimisation profile (min/opt/max per input) from the ONNX file's dynamic
  axes, the profile's ``tensorrt.shape_profile`` and the timing inputs.
- ``ort_gpu_provider_options``: ONNX Runtime CUDA and TensorRT execution-provider options.

Everything here is plain Python over the profile's ``tensorrt`` section and the ONNX file's graph inputs; it is
tested on CPU.  The TensorRT runner plans its build with it inside the measurement worker, whose imports count in
every measured peak RSS, so it imports neither onnx nor pydantic: the section comes as the pydantic
``TensorRtSettings`` (parent) or as the job's plain ``TensorRtSection`` (worker), and :func:`graph_inputs` reads
the inputs from the file's protobuf bytes.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeopt.backends.tensorrt.engines import BuildOptions, InputShapeRange
from edgeopt.backends.tensorrt.settings import ShapeBounds, TensorRtSection
from edgeopt.errors import ConfigError, ModelFileError

if TYPE_CHECKING:
    from edgeopt.profiles.schema import ShapeRange, TensorRtSettings

# variant recipe kind → the precision its ONNX file carries (edgeopt.models.recipes)
_VARIANT_PRECISION = {"fp32": "fp32", "fp16": "fp16", "int8-static": "int8", "int8-dynamic": "int8-dynamic"}


def version_family(tensorrt_version: str) -> int:
    """10 for '10.3.0', 11 for '11.1.0.5'; anything else is unsupported."""
    try:
        major = int(tensorrt_version.split(".", 1)[0])
    except ValueError as error:
        raise ConfigError(f"TensorRT version {tensorrt_version!r} is not a version number") from error
    if major not in (10, 11):
        raise ConfigError(f"TensorRT {tensorrt_version} is not supported: edgeopt builds engines with 10.x or 11.x")
    return major


def plan_build(settings: TensorRtSettings | TensorRtSection, variant_kind: str, precision: str, tensorrt_version: str,
               shapes: tuple[InputShapeRange, ...] = ()) -> BuildOptions:
    """Builder settings for ``precision`` from a variant of ``variant_kind`` on the installed TensorRT.

    Raises ``ConfigError`` for a combination that cannot be built honestly: a precision the profile does
    not list, an installed TensorRT of another family than the profile's, FP16 from the fp32 variant on
    11.x (no FP16 flag any more), INT8 from anything but the Q/DQ variant, a precision that does not
    match the variant's (e.g. fp32 from the fp16 variant).
    """
    family = version_family(tensorrt_version)
    if family != settings.version_family:
        raise ConfigError(f"profile expects TensorRT {settings.version_family}.x, TensorRT {tensorrt_version} is "
                          "installed; engines of one family do not stand for the other")
    if precision not in settings.precisions:
        raise ConfigError(f"precision {precision} is not in the profile's tensorrt.precisions "
                          f"{list(settings.precisions)}")
    carried = _VARIANT_PRECISION.get(variant_kind)
    if carried is None:
        raise ConfigError(f"variant kind {variant_kind!r}: TensorRT builds from fp32, fp16 or int8-static variants")
    if carried == "int8-dynamic":
        raise ConfigError("int8-dynamic variants (ConvInteger/MatMulInteger) are an ONNX Runtime format; "
                          "TensorRT builds INT8 from the int8-static Q/DQ variant")
    if precision == "int8" and carried != "int8":
        raise ConfigError("INT8 engines are built from the int8-static (Q/DQ) variant only: explicit quantization, "
                          "no implicit calibrator (deprecated in TensorRT 10.1, removed in 11)")
    flags: tuple[str, ...] = ()
    strongly_typed = True
    if precision == "fp16" and carried == "fp32":
        if family == 11:
            raise ConfigError("TensorRT 11 has no FP16 builder flag: build the fp16 variant (strongly typed) instead")
        flags, strongly_typed = ("FP16",), False  # 10.x weak typing: TensorRT may choose FP16 kernels
    elif precision != carried:
        raise ConfigError(f"a {variant_kind} variant cannot give a {precision} engine")
    return BuildOptions(precision=precision, strongly_typed=strongly_typed, flags=flags,
                        workspace_mb=settings.workspace_mb,
                        builder_optimization_level=settings.builder_optimization_level, shape_profile=shapes)


# the protobuf fields graph_inputs reads (onnx/onnx.proto); every other field is skipped unread
_MODEL_GRAPH, _GRAPH_INITIALIZER, _GRAPH_INPUT, _TENSOR_NAME = 7, 5, 11, 8
_VALUE_NAME, _VALUE_TYPE, _TYPE_TENSOR, _TENSOR_SHAPE, _SHAPE_DIM, _DIM_VALUE, _DIM_PARAM = 1, 2, 1, 2, 1, 1, 2
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def _varint(data: mmap.mmap, pos: int) -> tuple[int, int]:
    value = shift = 0
    while shift < 70:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos
    raise ValueError("a varint longer than 10 bytes")


def _fields(data: mmap.mmap, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value, end) of each field of the message in ``data[start:end]``: a varint's
    value, or a length-delimited field's first byte and its end (``data[value:end]``)."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(data, pos)
            yield number, wire, value, pos
        elif wire == _LENGTH:
            length, pos = _varint(data, pos)
            if pos + length > end:
                raise ValueError("a field runs past the end of its message")
            yield number, wire, pos, pos + length
            pos += length
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
        else:
            raise ValueError(f"protobuf wire type {wire}")
    if pos != end:
        raise ValueError("a field runs past the end of its message")


def _messages(data: mmap.mmap, start: int, end: int, number: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each length-delimited field ``number`` of the message in ``data[start:end]``."""
    for field_number, wire, value, stop in _fields(data, start, end):
        if field_number == number and wire == _LENGTH:
            yield value, stop


def _text(data: mmap.mmap, start: int, end: int) -> str:
    return data[start:end].decode("utf-8")


def _dims(data: mmap.mmap, start: int, end: int) -> tuple[int | str, ...]:
    """A ValueInfoProto's tensor dims as ``edgeopt.models.graph.input_specs`` gives them: a positive
    ``dim_value``, else a non-empty ``dim_param``, else ``"?"``."""
    dims: list[int | str] = []
    for type_start, type_end in _messages(data, start, end, _VALUE_TYPE):
        for tensor_start, tensor_end in _messages(data, type_start, type_end, _TYPE_TENSOR):
            for shape_start, shape_end in _messages(data, tensor_start, tensor_end, _TENSOR_SHAPE):
                for dim_start, dim_end in _messages(data, shape_start, shape_end, _SHAPE_DIM):
                    dim: int | str = "?"
                    for number, wire, value, stop in _fields(data, dim_start, dim_end):  # a oneof: the last wins
                        if number == _DIM_VALUE and wire == _VARINT:
                            dim = value - 2**64 if value >= 2**63 else value  # int64, two's complement
                        elif number == _DIM_PARAM and wire == _LENGTH:
                            dim = _text(data, value, stop)
                    dims.append(dim if (isinstance(dim, int) and dim > 0) or (isinstance(dim, str) and dim) else "?")
    return tuple(dims)


def graph_inputs(model_path: Path | str) -> dict[str, tuple[int | str, ...]]:
    """The graph inputs a caller must feed (initializers listed as inputs are skipped), name -> dims (ints; strings
    for symbolic dims, ``"?"`` for unknown ones), as ``edgeopt.models.graph.input_specs`` gives them, read from the
    ONNX file's protobuf bytes without the onnx package.  The file is mapped, not read: weights are skipped unread
    (external data is never opened).  A file that is not an ONNX model is a ``ModelFileError``."""
    path = Path(model_path)
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path.name} is empty, not an ONNX model")
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            inputs: dict[str, tuple[int | str, ...]] = {}
            initializers: set[str] = set()
            for graph_start, graph_end in _messages(data, 0, len(data), _MODEL_GRAPH):
                for number, wire, start, end in _fields(data, graph_start, graph_end):
                    if wire != _LENGTH:
                        continue
                    if number == _GRAPH_INITIALIZER:
                        initializers.update(_text(data, s, e) for s, e in _messages(data, start, end, _TENSOR_NAME))
                    elif number == _GRAPH_INPUT:
                        names = [_text(data, s, e) for s, e in _messages(data, start, end, _VALUE_NAME)]
                        inputs[names[-1] if names else ""] = _dims(data, start, end)
    except (IndexError, ValueError) as error:  # IndexError: past the end of the file; UnicodeDecodeError too
        what = "a field runs past the end of the file" if isinstance(error, IndexError) else str(error)
        raise ModelFileError(f"{path.name} is truncated or not an ONNX model: {what}") from error
    return {name: dims for name, dims in inputs.items() if name not in initializers}


def shape_profile(model_path: Path, settings: TensorRtSettings | TensorRtSection | None,
                  timing_shapes: dict[str, list[int]] | None = None) -> tuple[InputShapeRange, ...]:
    """One optimisation profile for the model's inputs.

    A static input gets min = opt = max = its shape.  A dynamic input takes the profile's
    ``tensorrt.shape_profile[name]`` (rank and static dimensions must agree with the ONNX file) or, when
    the profile declares none, the timing input's shape as min = opt = max.  An input with neither is a
    ``ConfigError``; so is a profile entry for an input the model does not have.
    """
    specs = graph_inputs(model_path)
    declared: dict[str, ShapeRange | ShapeBounds] = dict(settings.shape_profile or {}) if settings else {}
    unknown = sorted(set(declared) - set(specs))
    if unknown:
        raise ConfigError(f"tensorrt.shape_profile names {unknown}, which {Path(model_path).name} has no inputs "
                          f"called; its inputs: {list(specs)}")
    ranges: list[InputShapeRange] = []
    for name, dims in specs.items():
        static = all(isinstance(d, int) and d > 0 for d in dims)
        if name in declared:
            r = declared[name]
            for label, declared_shape in (("min", r.min), ("opt", r.opt), ("max", r.max)):
                if len(declared_shape) != len(dims) or any(isinstance(d, int) and d > 0 and d != v
                                                           for d, v in zip(dims, declared_shape, strict=True)):
                    raise ConfigError(f"tensorrt.shape_profile.{name}.{label} {list(declared_shape)} does not fit "
                                      f"the model's input shape {list(dims)}")
            ranges.append(InputShapeRange(name, tuple(r.min), tuple(r.opt), tuple(r.max)))
        elif static:
            shape = tuple(int(d) for d in dims)
            ranges.append(InputShapeRange(name, shape, shape, shape))
        elif timing_shapes and name in timing_shapes:
            shape = tuple(int(d) for d in timing_shapes[name])
            if len(shape) != len(dims):
                raise ConfigError(f"timing input '{name}' has rank {len(shape)}, the model {len(dims)}")
            ranges.append(InputShapeRange(name, shape, shape, shape))
        else:
            raise ConfigError(f"input '{name}' has dynamic dimensions {list(dims)}: declare "
                              f"tensorrt.shape_profile.{name} (min/opt/max) in the profile")
    return tuple(ranges)


def _shapes_option(ranges: tuple[InputShapeRange, ...], which: str) -> str:
    return ",".join(f"{r.name}:{'x'.join(str(d) for d in getattr(r, which))}" for r in ranges)


def ort_gpu_provider_options(providers: list[str], settings: TensorRtSettings | None, precision: str,
                             cache_dir: Path, ranges: tuple[InputShapeRange, ...] = (),
                             device_id: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """(provider, options) pairs for ``onnxruntime.InferenceSession(providers=...)``.

    TensorRT EP: engine and timing caches under ``cache_dir``, FP16/INT8 enables from ``precision``
    (INT8 for a Q/DQ model needs no calibration table), workspace and builder optimisation level from
    the profile's ``tensorrt`` section, explicit shape profiles when any input is dynamic.
    CUDA EP: the device.  Other providers get no options.
    """
    out: list[tuple[str, dict[str, Any]]] = []
    for provider in providers:
        options: dict[str, Any] = {}
        if provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
            options["device_id"] = device_id
        if provider == "TensorrtExecutionProvider":
            options.update({
                "trt_engine_cache_enable": True, "trt_engine_cache_path": str(Path(cache_dir) / "ort-trt-engines"),
                "trt_timing_cache_enable": bool(settings.timing_cache) if settings else True,
                "trt_timing_cache_path": str(Path(cache_dir) / "ort-trt-timing"),
                "trt_fp16_enable": precision == "fp16", "trt_int8_enable": precision == "int8",
            })
            if settings is not None:
                options["trt_builder_optimization_level"] = settings.builder_optimization_level
                if settings.workspace_mb is not None:
                    options["trt_max_workspace_size"] = int(settings.workspace_mb * 2**20)
            if any(r.min != r.max for r in ranges):
                for which in ("min", "opt", "max"):
                    options[f"trt_profile_{which}_shapes"] = _shapes_option(ranges, which)
        out.append((provider, options))
    return out
