"""OpenVINO's settings and rows, without importing openvino (the parent builds these; the runner reads them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from edgeopt.backends.availability import is_available
from edgeopt.backends.base import BackendSettings, tensorrt_bound

if TYPE_CHECKING:
    from edgeopt.models.variants import Variant
    from edgeopt.profiles.schema import HardwareProfile

BACKEND = "openvino"
CACHE_FOLDER = ".openvino-cache"  # under the measurement folder: OpenVINO's model cache
Cell = tuple[str, "Variant", str | None]


# OpenVINO's OPTIMIZATION_CAPABILITIES → the precisions a device computes natively
_CAPABILITY = {"FP32": "fp32", "BF16": "bf16", "FP16": "fp16", "INT8": "int8"}


def device_precisions(device: str = "CPU") -> list[str]:
    """Precisions the device reports it can run (from OPTIMIZATION_CAPABILITIES; imports openvino)."""
    import openvino as ov

    capabilities = ov.Core().get_property(device, "OPTIMIZATION_CAPABILITIES")
    return sorted({_CAPABILITY[c] for c in capabilities if c in _CAPABILITY})


@dataclass(frozen=True)
class OpenVinoSettings(BackendSettings):
    """Latency-oriented CPU settings with an explicit inference precision (fp32 | bf16 | fp16)."""

    backend: ClassVar[str] = "openvino"
    device: str = "CPU"
    intra_op_threads: int = 1
    precision: str = "fp32"
    input_shapes: dict[str, list[int]] = field(default_factory=dict)  # reshape a dynamic model to these
    pinning: bool = True
    cache_dir: str | None = None


def settings_for(profile: HardwareProfile, precision: str | None = None, *,
                 input_shapes: dict[str, list[int]] | None = None, cache_dir: Path | None = None,
                 variant_kind: str | None = None) -> OpenVinoSettings:
    return OpenVinoSettings(intra_op_threads=profile.runtime.intra_op_threads, precision=precision or "fp32",
                            input_shapes=input_shapes or {}, cache_dir=str(cache_dir) if cache_dir else None)


def cells(profile: HardwareProfile, variants: list[Variant], factory: str | None = None) -> list[Cell]:
    """OpenVINO reads the same files as ONNX Runtime: the fp32 variant at each inference precision the profile
    lists and the device reports (fp32 always), NNCF's INT8 IR (``int8-nncf*``, its own INT8 rows), and each
    ONNX Runtime int8-static (QDQ) and int8-dynamic variant, extra rows, with fp32 for its non-quantized parts;
    fp16 variants are an ONNX Runtime format (OpenVINO's fp16 is an inference precision of the fp32 row) and are
    not repeated there, and TensorRT-bound files (recipe target ``tensorrt``) are TensorRT's: a CPU time of theirs
    means nothing."""
    precisions = ["fp32"]
    if is_available(BACKEND):
        supported = device_precisions()
        precisions += [p for p in profile.runtime.openvino_precisions if p != "fp32" and p in supported]
    found: list[Cell] = []
    for variant in variants:
        kind = variant.provenance.get("recipe", {}).get("kind")
        if kind == "fp32":
            found += [(BACKEND, variant, precision) for precision in precisions]
        elif kind == "int8-static" and not tensorrt_bound(variant):  # NNCF's IR; ONNX Runtime's Q/DQ an extra row
            found.append((BACKEND, variant, "fp32"))
        elif kind == "int8-dynamic":  # MatMulInteger: a transformer's MatMul-only file runs 1.7x faster here than on
            found.append((BACKEND, variant, "fp32"))  # ONNX Runtime (ppocrv4-rec, benchmarks/quantizers.py)
    return found
