"""PyTorch's settings and rows, without importing torch (the parent builds these; the runner reads them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgeopt.backends.base import OMIT_IF_NONE, BackendSettings

if TYPE_CHECKING:
    from edgeopt.models.variants import Variant
    from edgeopt.profiles.schema import HardwareProfile

BACKEND = "torch"
CACHE_FOLDER = ".gpu-cache"
Cell = tuple[str, "Variant", str | None]


@dataclass(frozen=True)
class TorchSettings(BackendSettings):
    """``device`` (cpu|cuda), ``precision`` (fp32|fp16|bf16), ``mode`` (eager|compile), ``compile_mode``
    (torch.compile mode), ``cuda_graphs``, ``inputs`` ([(name, shape, dtype)], else the factory's input_spec())."""

    backend: ClassVar[str] = "torch"
    device: str = "cpu"
    precision: str = "fp32"
    mode: str = "eager"
    cuda_graphs: bool = False
    intra_op_threads: int = 1
    compile_mode: str | None = field(default=None, metadata=OMIT_IF_NONE)
    inputs: list[Any] | None = field(default=None, metadata=OMIT_IF_NONE)


def settings_for(profile: HardwareProfile, precision: str | None = None, *,
                 input_shapes: dict[str, list[int]] | None = None, cache_dir: Path | None = None,
                 variant_kind: str | None = None) -> TorchSettings:
    device = "cuda" if profile.identity.gpu_name_regex else "cpu"
    return TorchSettings(device=device, precision=precision or "fp32",
                         intra_op_threads=profile.runtime.intra_op_threads)


def cells(profile: HardwareProfile, variants: list[Variant], factory: str | None = None) -> list[Cell]:
    """The PyTorch model itself, next to its fp32 export (factory references only), at fp32 and each
    of bf16/fp16 the profile runs natively."""
    fp32 = next((v for v in variants if v.provenance.get("recipe", {}).get("kind") == "fp32"), None)
    if fp32 is None or factory is None:
        return []
    native = profile.runtime.native_precisions
    return [(BACKEND, fp32, p) for p in ("fp32", "bf16", "fp16") if p == "fp32" or p in native]
