"""Which ONNX Runtime build is installed, and one clear error when none or several are.

ONNX Runtime ships as several distributions that all install the same ``onnxruntime`` import package:
``onnxruntime`` (CPU), ``onnxruntime-gpu`` (CUDA and TensorRT execution providers; on a Jetson, NVIDIA's
JetPack wheel), ``onnxruntime-openvino``, ``onnxruntime-directml``, ``onnxruntime-qnn``.  Two of them installed
side by side overwrite each other's files, and which one a program then gets is an accident.  edgeopt
therefore depends on none of them directly: the flavour is an explicit choice, ``pip install 'edgeopt[cpu]'``
or ``pip install 'edgeopt[gpu]'`` (or the board vendor's wheel), and the ``edgeopt`` command checks that
exactly one is present (:func:`flavour_problem`) and names the fix when a command finds none
(:func:`missing_runtime_message`).

Standard library only (``importlib.metadata``): called on every ``edgeopt`` command.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable

__all__ = ["FLAVOURS", "flavour_problem", "installed_flavours", "missing_runtime_message"]

#: The distributions that provide the ``onnxruntime`` import package.
FLAVOURS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml", "onnxruntime-qnn")

INSTALL_HINT = ("pip install 'edgeopt[cpu]' (CPU), pip install 'edgeopt[gpu]' (NVIDIA CUDA/TensorRT), or on a "
                "Jetson the onnxruntime-gpu wheel that matches your JetPack")


def installed_flavours(version: Callable[[str], str] = importlib.metadata.version) -> dict[str, str]:
    """``{distribution: version}`` of every ONNX Runtime distribution installed (``version`` looks one up)."""
    found: dict[str, str] = {}
    for name in FLAVOURS:
        try:
            found[name] = version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def flavour_problem(installed: dict[str, str]) -> str | None:
    """One line saying what is wrong when several ONNX Runtime distributions are installed, else None
    (none installed is reported when a command needs the runtime: :func:`missing_runtime_message`)."""
    if len(installed) < 2:
        return None
    listed = ", ".join(f"{name} {version}" for name, version in installed.items())
    return (f"several ONNX Runtime builds are installed ({listed}); they overwrite each other's files, so which "
            f"one runs is an accident. Keep one: pip uninstall -y {' '.join(installed)}, then {INSTALL_HINT}")


def missing_runtime_message(installed: dict[str, str], detail: str) -> str:
    """The error for ``import onnxruntime`` failing (``detail``: the ImportError's message)."""
    if installed:
        listed = ", ".join(f"{name} {version}" for name, version in installed.items())
        return (f"ONNX Runtime is installed ({listed}) but cannot be imported ({detail}); reinstall it: "
                f"{INSTALL_HINT}")
    return f"ONNX Runtime is not installed ({detail}); edgeopt needs one build of it: {INSTALL_HINT}"
