"""edgeopt: export, quantize and profile neural networks for edge hardware, with decision-grade gates.

``import edgeopt`` is light: it imports neither torch nor onnxruntime.  The public names below
are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "EdgeoptError": "edgeopt.errors",
    "export_onnx": "edgeopt.export",
    "ParityTolerance": "edgeopt.export",
    "inspect_model": "edgeopt.graph",
    "load_model": "edgeopt.graph",
    "Recipe": "edgeopt.quantize",
    "Variant": "edgeopt.quantize",
    "make_variant": "edgeopt.quantize",
    "make_variants": "edgeopt.quantize",
    "load_calibration": "edgeopt.calibration",
    "CalibrationSet": "edgeopt.calibration",
    "InputSpec": "edgeopt.calibration",
    "HardwareProfile": "edgeopt.profiles",
    "load_profile": "edgeopt.profiles",
    "list_profiles": "edgeopt.profiles",
    "match_identity": "edgeopt.profiles",
    "host_fingerprint": "edgeopt.host",
    "summarize": "edgeopt.stats",
    "evaluate_budgets": "edgeopt.gate",
    "Verdict": "edgeopt.gate",
    "GateResult": "edgeopt.gate",
    "Measurement": "edgeopt.results",
    "measure_variant": "edgeopt.measure",
    "run_pipeline": "edgeopt.pipeline",
}

__all__ = sorted([*_PUBLIC, "__version__"])


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeopt' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
