"""From a hardware profile to GPU build settings, without a GPU: TensorRT build plans and ORT GPU options.

- ``plan_build``: which ONNX variant and which TensorRT network mode give each precision on TensorRT
  10.x and 11.x (FP16: builder flag on 10.x from the fp32 variant, or a strongly typed fp16 variant on
  both; INT8: the Q/DQ variant, strongly typed, never an implicit calibrator).
- ``shape_profile``: the optimisation profile (min/opt/max per input) from the ONNX file's dynamic
  axes, the profile's ``tensorrt.shape_profile`` and the timing inputs.
- ``ort_gpu_provider_options``: ONNX Runtime CUDA and TensorRT execution-provider options.

Everything here is plain Python over onnx and the profile; it is tested on CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from edgeopt.backends.tensorrt.engines import BuildOptions, InputShapeRange
from edgeopt.errors import ConfigError
from edgeopt.models.graph import input_specs
from edgeopt.profiles.schema import TensorRtSettings

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


def plan_build(settings: TensorRtSettings, variant_kind: str, precision: str, tensorrt_version: str,
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
        raise ConfigError(f"precision {precision} is not in the profile's tensorrt.precisions {settings.precisions}")
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


def shape_profile(model_path: Path, settings: TensorRtSettings | None,
                  timing_shapes: dict[str, list[int]] | None = None) -> tuple[InputShapeRange, ...]:
    """One optimisation profile for the model's inputs.

    A static input gets min = opt = max = its shape.  A dynamic input takes the profile's
    ``tensorrt.shape_profile[name]`` (rank and static dimensions must agree with the ONNX file) or, when
    the profile declares none, the timing input's shape as min = opt = max.  An input with neither is a
    ``ConfigError``; so is a profile entry for an input the model does not have.
    """
    specs = input_specs(onnx.load(str(model_path), load_external_data=False))
    declared = dict(settings.shape_profile or {}) if settings else {}
    unknown = sorted(set(declared) - {s.name for s in specs})
    if unknown:
        raise ConfigError(f"tensorrt.shape_profile names {unknown}, which {Path(model_path).name} has no inputs "
                          f"called; its inputs: {[s.name for s in specs]}")
    ranges: list[InputShapeRange] = []
    for spec in specs:
        dims = tuple(spec.shape)
        static = all(isinstance(d, int) and d > 0 for d in dims)
        if spec.name in declared:
            r = declared[spec.name]
            for label, declared_shape in (("min", r.min), ("opt", r.opt), ("max", r.max)):
                if len(declared_shape) != len(dims) or any(isinstance(d, int) and d > 0 and d != v
                                                           for d, v in zip(dims, declared_shape, strict=True)):
                    raise ConfigError(f"tensorrt.shape_profile.{spec.name}.{label} {declared_shape} does not fit "
                                      f"the model's input shape {list(dims)}")
            ranges.append(InputShapeRange(spec.name, tuple(r.min), tuple(r.opt), tuple(r.max)))
        elif static:
            shape = tuple(int(d) for d in dims)
            ranges.append(InputShapeRange(spec.name, shape, shape, shape))
        elif timing_shapes and spec.name in timing_shapes:
            shape = tuple(int(d) for d in timing_shapes[spec.name])
            if len(shape) != len(dims):
                raise ConfigError(f"timing input '{spec.name}' has rank {len(shape)}, the model {len(dims)}")
            ranges.append(InputShapeRange(spec.name, shape, shape, shape))
        else:
            raise ConfigError(f"input '{spec.name}' has dynamic dimensions {list(dims)}: declare "
                              f"tensorrt.shape_profile.{spec.name} (min/opt/max) in the profile")
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
