"""Backends by short name, behind one runner lifecycle (see ``base.Runner``).

A backend's runtime is imported only when its runner is built; a missing runtime is reported
as ``unavailable: <reason>`` with the pip extra to install, never as a crash.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from edgeopt.backends.base import Runner
from edgeopt.errors import BackendUnavailableError

# short name → (module, runner class, the import that must succeed, the pip extra that provides it)
_REGISTRY: dict[str, tuple[str, str, str, str]] = {
    "onnxruntime": ("edgeopt.backends.onnxruntime", "OnnxRuntimeRunner", "onnxruntime", "edgeopt"),
    "openvino": ("edgeopt.backends.openvino", "OpenVinoRunner", "openvino", "edgeopt[openvino]"),
}
PLANNED = {"tensorrt": "edgeopt[tensorrt]", "torch": "edgeopt[torch]"}


def availability() -> dict[str, str]:
    """Every backend edgeopt knows, with 'available' or 'unavailable: <reason>'."""
    status: dict[str, str] = {}
    for name, (_, _, requirement, extra) in _REGISTRY.items():
        found = importlib.util.find_spec(requirement) is not None
        status[name] = "available" if found else f"unavailable: {requirement} is not installed (pip install {extra})"
    for name, extra in PLANNED.items():
        status.setdefault(name, f"unavailable: not implemented in this version (later: pip install {extra})")
    return status


def is_available(backend: str) -> bool:
    return availability().get(backend) == "available"


def runner_for(backend: str, model_path: str, settings: dict[str, Any]) -> Runner:
    """A (not yet active) runner of ``backend`` for ``model_path``."""
    if backend not in _REGISTRY:
        raise BackendUnavailableError(f"backend '{backend}': {availability().get(backend, 'unknown backend')}")
    module_name, class_name, requirement, extra = _REGISTRY[backend]
    if importlib.util.find_spec(requirement) is None:
        raise BackendUnavailableError(f"backend '{backend}': {requirement} is not installed (pip install {extra})")
    runner_class = getattr(importlib.import_module(module_name), class_name)
    return runner_class(model_path, settings)  # type: ignore[no-any-return]
