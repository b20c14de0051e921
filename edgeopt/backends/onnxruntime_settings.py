"""ONNX Runtime's settings and rows, without importing onnxruntime (the parent builds these; the runner reads them).

``settings_for`` picks the runner for a profile's ONNX Runtime row: GPU execution providers go through the
``onnxruntime-gpu`` runner when that package is there; without it the plain runner asks ONNX Runtime for
them and reports the provider fallback, naming the provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgeopt.backends.availability import is_available
from edgeopt.backends.base import OMIT_IF_NONE, BackendSettings, openvino_ir, tensorrt_bound

if TYPE_CHECKING:
    from edgeopt.models.variants import Variant
    from edgeopt.profiles.schema import HardwareProfile

BACKEND = "onnxruntime"
CACHE_FOLDER = ".gpu-cache"  # under the measurement folder: ORT GPU engine and timing caches
GPU_PROVIDERS = frozenset({"CUDAExecutionProvider", "TensorrtExecutionProvider"})
Cell = tuple[str, "Variant", str | None]


@dataclass(frozen=True)
class OrtSessionSettings(BackendSettings):
    """What every ONNX Runtime session takes: threads and graph optimisation level."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1  # inter-op threads act only in parallel execution mode (> 1)
    graph_optimization_level: str = "all"  # disable | basic | extended | all


@dataclass(frozen=True)
class OnnxRuntimeSettings(OrtSessionSettings):
    """The CPU (or any-provider) runner: every execution provider asked for must be active."""

    backend: ClassVar[str] = "onnxruntime"
    execution_providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])


@dataclass(frozen=True)
class OnnxRuntimeGpuSettings(OrtSessionSettings):
    """The ``onnxruntime-gpu`` runner: ``provider_options`` are [(provider, options)], caches under ``cache_dir``."""

    backend: ClassVar[str] = "onnxruntime-gpu"
    provider_options: list[Any] = field(default_factory=list)
    cache_dir: str | None = None
    probe_feeds: Any = field(default=None, metadata=OMIT_IF_NONE)  # inputs of the placement probe (tests)


def settings_for(profile: HardwareProfile, precision: str | None = None, *,
                 input_shapes: dict[str, list[int]] | None = None, cache_dir: Path | None = None,
                 variant_kind: str | None = None) -> OnnxRuntimeSettings | OnnxRuntimeGpuSettings:
    """The settings of ``profile``'s ONNX Runtime row (the GPU runner where GPU providers are asked for)."""
    runtime = profile.runtime
    threads: dict[str, Any] = {"intra_op_threads": runtime.intra_op_threads,
                               "inter_op_threads": runtime.inter_op_threads,
                               "graph_optimization_level": runtime.graph_optimization_level}
    if GPU_PROVIDERS & set(runtime.execution_providers) and is_available("onnxruntime-gpu"):
        from edgeopt.backends.tensorrt.plan import ort_gpu_provider_options

        pairs = ort_gpu_provider_options(list(runtime.execution_providers), profile.tensorrt, precision or "fp32",
                                         Path(cache_dir or CACHE_FOLDER))
        return OnnxRuntimeGpuSettings(provider_options=pairs, cache_dir=str(cache_dir) if cache_dir else None,
                                      **threads)
    return OnnxRuntimeSettings(execution_providers=list(runtime.execution_providers), **threads)


def cells(profile: HardwareProfile, variants: list[Variant], factory: str | None = None) -> list[Cell]:
    """ONNX Runtime runs every variant as it is (its rows carry the variant's plain name), except, for a profile
    that builds TensorRT engines, the TensorRT-bound files: a CPU time of theirs means nothing (ModelOpt's runs
    1.4-7x slower than fp32), and their accuracy has its own row (``edgeopt.measure.emulation``); and NNCF's
    OpenVINO IR, which only OpenVINO reads."""
    return [(BACKEND, variant, None) for variant in variants
            if (profile.tensorrt is None or not tensorrt_bound(variant)) and not openvino_ir(variant)]
