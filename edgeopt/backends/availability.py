"""Whether each backend's runtime is installed: ``available``, or ``unavailable: <reason>`` with the pip extra
that provides it.  No module names here (the registry in ``edgeopt.backends`` has them), so a backend's light
settings module may ask without importing the registry back.
"""

from __future__ import annotations

import importlib.util
from typing import NamedTuple

__all__ = ["availability", "is_available", "missing"]


class _Needs(NamedTuple):
    requirement: str  # the import that must succeed
    extra: str  # the pip extra that provides it
    also: tuple[str, ...] = ()  # what else it needs: python modules or "dist:<distribution>"


# in the registry's order (edgeopt.backends._REGISTRY; a test checks both name the same backends)
NEEDS: dict[str, _Needs] = {
    "onnxruntime": _Needs("onnxruntime", "edgeopt"),
    "openvino": _Needs("openvino", "edgeopt[openvino]"),
    "tensorrt": _Needs("tensorrt", "edgeopt[tensorrt]", ("cuda",)),
    "torch": _Needs("torch", "edgeopt[torch]"),
    "onnxruntime-gpu": _Needs("onnxruntime", "edgeopt[gpu]", ("dist:onnxruntime-gpu",)),
}
PLANNED: dict[str, str] = {}


def _module_present(name: str) -> bool:
    """An importable module with code, not an empty namespace package (``tensorrt-stubs`` installs a
    ``tensorrt/`` folder of ``.pyi`` files only, which ``find_spec`` alone reports as importable)."""
    if name.startswith("dist:"):
        from importlib import metadata  # here: ~2 MiB (email, zipfile, csv) a worker pays only for a dist: check

        try:
            metadata.distribution(name[5:])
            return True
        except metadata.PackageNotFoundError:
            return False
    spec = importlib.util.find_spec(name)
    if spec is None:
        return False
    return spec.origin is not None or any(
        importlib.util.find_spec(f"{name}.{sub}") is not None for sub in ("bindings", "cudart"))


def missing(backend: str) -> str | None:
    """Why ``backend`` cannot run here (what is not installed, and the pip extra), or None."""
    needs = NEEDS[backend]
    for needed in [needs.requirement, *needs.also]:
        if not _module_present(needed):
            what = needed.removeprefix("dist:")
            return f"{what} is not installed (pip install {needs.extra})"
    return None


def availability() -> dict[str, str]:
    """Every backend edgeopt knows, with 'available' or 'unavailable: <reason>'.

    Available means the runtime is installed; whether a GPU is present is found out when a runner is
    activated (a clear error then, recorded as a failed measurement)."""
    status: dict[str, str] = {}
    for name in NEEDS:
        reason = missing(name)
        status[name] = "available" if reason is None else f"unavailable: {reason}"
    for name, extra in PLANNED.items():
        status.setdefault(name, f"unavailable: not implemented in this version (later: pip install {extra})")
    return status


def is_available(backend: str) -> bool:
    return availability().get(backend) == "available"
