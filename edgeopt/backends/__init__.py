"""Backends by short name, behind one runner lifecycle (see ``base.Runner``).

A backend's runtime is imported only when its runner is built; a missing runtime is reported
as ``unavailable: <reason>`` with the pip extra to install, never as a crash.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from typing import Any

from edgeopt.backends.base import Runner
from edgeopt.errors import BackendUnavailableError

# short name → (module, runner class, the import that must succeed, the pip extra that provides it)
_REGISTRY: dict[str, tuple[str, str, str, str]] = {
    "onnxruntime": ("edgeopt.backends.onnxruntime", "OnnxRuntimeRunner", "onnxruntime", "edgeopt"),
    "openvino": ("edgeopt.backends.openvino", "OpenVinoRunner", "openvino", "edgeopt[openvino]"),
    "tensorrt": ("edgeopt.backends.tensorrt", "TensorRtRunner", "tensorrt", "edgeopt[tensorrt]"),
    "torch": ("edgeopt.backends.torch_runner", "TorchRunner", "torch", "edgeopt[torch]"),
    "onnxruntime-gpu": ("edgeopt.backends.onnxruntime_gpu", "OnnxRuntimeGpuRunner", "onnxruntime", "edgeopt[gpu]"),
}
PLANNED: dict[str, str] = {}
# what else a backend needs beyond its import: (python module or "dist:<distribution>", pip extra)
_ALSO_NEEDS: dict[str, list[str]] = {
    "tensorrt": ["cuda"],
    "onnxruntime-gpu": ["dist:onnxruntime-gpu"],
}


def _module_present(name: str) -> bool:
    """An importable module with code, not an empty namespace package (``tensorrt-stubs`` installs a
    ``tensorrt/`` folder of ``.pyi`` files only, which ``find_spec`` alone reports as importable)."""
    if name.startswith("dist:"):
        try:
            importlib.metadata.distribution(name[5:])
            return True
        except importlib.metadata.PackageNotFoundError:
            return False
    spec = importlib.util.find_spec(name)
    if spec is None:
        return False
    return spec.origin is not None or any(
        importlib.util.find_spec(f"{name}.{sub}") is not None for sub in ("bindings", "cudart"))


def _missing(backend: str) -> str | None:
    _, _, requirement, extra = _REGISTRY[backend]
    for needed in [requirement, *_ALSO_NEEDS.get(backend, [])]:
        if not _module_present(needed):
            what = needed.removeprefix("dist:")
            return f"{what} is not installed (pip install {extra})"
    return None


def availability() -> dict[str, str]:
    """Every backend edgeopt knows, with 'available' or 'unavailable: <reason>'.

    Available means the runtime is installed; whether a GPU is present is found out when a runner is
    activated (a clear error then, recorded as a failed measurement)."""
    status: dict[str, str] = {}
    for name in _REGISTRY:
        reason = _missing(name)
        status[name] = "available" if reason is None else f"unavailable: {reason}"
    for name, extra in PLANNED.items():
        status.setdefault(name, f"unavailable: not implemented in this version (later: pip install {extra})")
    return status


def is_available(backend: str) -> bool:
    return availability().get(backend) == "available"


def runner_for(backend: str, model_path: str, settings: dict[str, Any]) -> Runner:
    """A (not yet active) runner of ``backend`` for ``model_path``."""
    if backend not in _REGISTRY:
        raise BackendUnavailableError(f"backend '{backend}': {availability().get(backend, 'unknown backend')}")
    module_name, class_name, _, _ = _REGISTRY[backend]
    reason = _missing(backend)
    if reason is not None:
        raise BackendUnavailableError(f"backend '{backend}': {reason}")
    runner_class = getattr(importlib.import_module(module_name), class_name)
    return runner_class(model_path, settings)  # type: ignore[no-any-return]
