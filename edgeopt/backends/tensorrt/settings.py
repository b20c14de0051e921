"""TensorRT's settings and rows, without importing tensorrt (the parent builds these; the runner reads them).

The runner reads the profile's ``tensorrt`` section back as a :class:`TensorRtSection`, not as the pydantic
``edgeopt.profiles.schema.TensorRtSettings`` the parent validated it with: the worker imports no pydantic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgeopt.backends.base import BackendSettings
from edgeopt.errors import ConfigError

if TYPE_CHECKING:
    from edgeopt.models.variants import Variant
    from edgeopt.profiles.schema import HardwareProfile

BACKEND = "tensorrt"
CACHE_FOLDER = ".gpu-cache"  # under the measurement folder: engines and timing caches
Cell = tuple[str, "Variant", str | None]


@dataclass(frozen=True)
class TensorRtRunSettings(BackendSettings):
    """``precision`` to build, ``variant_kind`` of the ONNX file, ``tensorrt`` (the profile's section as a dict),
    ``input_shapes`` (the timing inputs' shapes), ``cache_dir`` (engines, timing cache)."""

    backend: ClassVar[str] = "tensorrt"
    precision: str = "fp32"
    variant_kind: str = "fp32"
    tensorrt: dict[str, Any] = field(default_factory=dict)
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    cache_dir: str | None = None


@dataclass(frozen=True)
class ShapeBounds:
    """One input's optimisation-profile shapes (``edgeopt.profiles.schema.ShapeRange``, read without pydantic)."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class TensorRtSection:
    """The fields of the profile's ``tensorrt`` section a build reads, as the worker's job carries them
    (``TensorRtRunSettings.tensorrt``: ``TensorRtSettings.model_dump``, validated in the parent).  The defaults are
    ``TensorRtSettings``'s, for a section given in part (a test holds the two equal)."""

    version_family: int
    precisions: tuple[str, ...] = ("fp32",)
    workspace_mb: float | None = None
    builder_optimization_level: int = 3
    timing_cache: bool = True
    shape_profile: dict[str, ShapeBounds] | None = None
    power_mode: str | None = None

    @classmethod
    def from_dict(cls, section: Mapping[str, Any]) -> TensorRtSection:
        """The section of a job's settings; keys a build does not read (``version``) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in section.items() if k in names}
        if "precisions" in values:
            values["precisions"] = tuple(values["precisions"])
        if values.get("shape_profile") is not None:
            values["shape_profile"] = {name: ShapeBounds(tuple(r["min"]), tuple(r["opt"]), tuple(r["max"]))
                                       for name, r in values["shape_profile"].items()}
        return cls(**values)


def settings_for(profile: HardwareProfile, precision: str | None = None, *,
                 input_shapes: dict[str, list[int]] | None = None, cache_dir: Path | None = None,
                 variant_kind: str | None = None) -> TensorRtRunSettings:
    if profile.tensorrt is None:
        raise ConfigError(f"profile {profile.name}: backend tensorrt needs a 'tensorrt' section")
    return TensorRtRunSettings(precision=precision or "fp32", variant_kind=variant_kind or "fp32",
                               tensorrt=profile.tensorrt.model_dump(mode="json"), input_shapes=input_shapes or {},
                               cache_dir=str(cache_dir) if cache_dir else None)


def cells(profile: HardwareProfile, variants: list[Variant], factory: str | None = None) -> list[Cell]:
    """fp32 (and fp16 by builder flag on 10.x) from the fp32 variant, fp16 from the fp16 variant on 11.x
    (strongly typed), int8 from each TensorRT-bound Q/DQ variant (recipe target ``tensorrt``: symmetric, no
    INT32 bias dequantization; explicit quantization on both): ``int8-trt-qdq`` and, when asked for, ModelOpt's
    ``int8-trt-modelopt``.  ONNX Runtime's own INT8 files are not offered:
    TensorRT's parser refuses their INT32 bias DequantizeLinear (onnx/onnx-tensorrt#850)."""
    settings = profile.tensorrt
    if settings is None:
        return []
    found: list[Cell] = []
    for variant in variants:
        recipe = variant.provenance.get("recipe", {})
        kind = recipe.get("kind")
        if kind == "fp32":
            found += [(BACKEND, variant, p) for p in settings.precisions
                      if p == "fp32" or (p == "fp16" and settings.version_family == 10)]
        elif kind == "fp16" and "fp16" in settings.precisions and settings.version_family == 11:
            found.append((BACKEND, variant, "fp16"))
        elif kind == "int8-static" and recipe.get("target") == BACKEND and "int8" in settings.precisions:
            found.append((BACKEND, variant, "int8"))
    return found
