"""Backends by short name, behind one runner lifecycle (see ``base.Runner``).

A backend's runtime is imported only when its runner is built; a missing runtime is reported
as ``unavailable: <reason>`` with the pip extra to install, never as a crash.  What a backend knows
that the parent needs (its typed settings built from a profile, the (variant, precision) cells it offers a
profile, its cache folder) lives in a light ``<name>_settings`` module that never imports the runtime.  Whether a
runtime is installed is :mod:`edgeopt.backends.availability` (which names no module: the settings modules ask it
without importing this registry back).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

from edgeopt.backends.availability import availability, is_available, missing
from edgeopt.backends.base import BackendSettings, Runner
from edgeopt.errors import BackendUnavailableError

if TYPE_CHECKING:
    from edgeopt.models.variants import Variant
    from edgeopt.profiles.schema import HardwareProfile

__all__ = ["PROFILE_BACKENDS", "availability", "cache_folder", "cells_for", "is_available", "runner_for",
           "settings_for"]


class _Entry(NamedTuple):
    module: str  # the runner's module (imports the runtime)
    runner: str  # the runner class in it
    settings: str  # the light module: settings_for, cells, CACHE_FOLDER
    in_profiles: bool  # a name a profile's runtime.backend(s) may use (edgeopt.profiles.schema.BackendName)


_REGISTRY: dict[str, _Entry] = {
    "onnxruntime": _Entry("edgeopt.backends.onnxruntime", "OnnxRuntimeRunner", "edgeopt.backends.onnxruntime_settings",
                          True),
    "openvino": _Entry("edgeopt.backends.openvino", "OpenVinoRunner", "edgeopt.backends.openvino_settings", True),
    "tensorrt": _Entry("edgeopt.backends.tensorrt.runner", "TensorRtRunner", "edgeopt.backends.tensorrt.settings",
                       True),
    "torch": _Entry("edgeopt.backends.torch_runner", "TorchRunner", "edgeopt.backends.torch_settings", True),
    # reached through a profile's onnxruntime row when it asks for GPU providers (onnxruntime_settings)
    "onnxruntime-gpu": _Entry("edgeopt.backends.onnxruntime_gpu", "OnnxRuntimeGpuRunner",
                              "edgeopt.backends.onnxruntime_settings", False),
}
# the names a profile may use, in registry order; tests check they equal profiles.schema.BackendName
PROFILE_BACKENDS: tuple[str, ...] = tuple(name for name, entry in _REGISTRY.items() if entry.in_profiles)
Cell = tuple[str, "Variant", str | None]  # (backend, variant, precision) of one measured row


def runner_for(backend: str, model_path: str, settings: Mapping[str, Any] | BackendSettings) -> Runner[Any]:
    """A (not yet active) runner of ``backend`` for ``model_path``; ``settings`` are the job's session dict
    (read back into the backend's settings dataclass) or that dataclass itself."""
    if backend not in _REGISTRY:
        raise BackendUnavailableError(f"backend '{backend}': {availability().get(backend, 'unknown backend')}")
    entry = _REGISTRY[backend]
    reason = missing(backend)
    if reason is not None:
        raise BackendUnavailableError(f"backend '{backend}': {reason}")
    runner_class = getattr(importlib.import_module(entry.module), entry.runner)
    return runner_class(model_path, settings)  # type: ignore[no-any-return]


def _settings_module(backend: str, profile_name: str) -> ModuleType:
    entry = _REGISTRY.get(backend)
    if entry is None or not entry.in_profiles:
        raise BackendUnavailableError(f"profile {profile_name}: runtime.backend '{backend}': "
                                      f"{availability().get(backend, 'unknown backend')}")
    return importlib.import_module(entry.settings)


def settings_for(profile: HardwareProfile, backend: str | None = None, precision: str | None = None, *,
                 input_shapes: dict[str, list[int]] | None = None, cache_dir: Path | None = None,
                 variant_kind: str | None = None) -> BackendSettings:
    """The typed runner settings of one (profile, backend, precision) row; ``backend`` defaults to the profile's.
    ``to_dict()`` of the result is the worker job's ``session``."""
    module = _settings_module(backend or profile.runtime.backend, profile.name)
    settings: BackendSettings = module.settings_for(profile, precision, input_shapes=input_shapes,
                                                    cache_dir=cache_dir, variant_kind=variant_kind)
    return settings


def cache_folder(backend: str) -> str:
    """The folder (under the measurement folder) where ``backend`` keeps its caches."""
    entry = _REGISTRY.get(backend)
    module = importlib.import_module(entry.settings) if entry else None
    return str(getattr(module, "CACHE_FOLDER", ".gpu-cache"))


def cells_for(profile: HardwareProfile, variants: list[Variant], factory: str | None = None) -> list[Cell]:
    """(backend, variant, precision) for every row ``profile`` asks for: each of its runtimes, reference first,
    offers the cells its settings module's ``cells`` gives."""
    found: list[Cell] = []
    for backend in profile.runtime.runtimes:
        found += _settings_module(backend, profile.name).cells(profile, variants, factory)
    return found
