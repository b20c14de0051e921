"""edgeopt: export, quantize and profile neural networks for edge hardware, with decision-grade gates.

``import edgeopt`` is light: it imports neither torch nor onnxruntime.  The public names below
are loaded on first use, and so is ``__version__``: the installed distribution's version
(``importlib.metadata``), part of every measurement's cache key.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    # errors
    "EdgeoptError": "edgeopt.errors",
    # models: read, export, calibrate, quantize
    "load_model": "edgeopt.models.graph",
    "inspect_model": "edgeopt.models.graph",
    "export_onnx": "edgeopt.models.export",
    "ParityTolerance": "edgeopt.models.export",
    "InputSpec": "edgeopt.models.input_spec",
    "CalibrationSet": "edgeopt.models.calibration",
    "load_calibration": "edgeopt.models.calibration",
    "Recipe": "edgeopt.models.recipes",
    "Variant": "edgeopt.models.variants",
    "make_variant": "edgeopt.models.quantize",
    "make_variants": "edgeopt.models.quantize",
    # hardware profiles and the host
    "HardwareProfile": "edgeopt.profiles.schema",
    "load_profile": "edgeopt.profiles.schema",
    "list_profiles": "edgeopt.profiles.schema",
    "match_identity": "edgeopt.profiles.schema",
    "host_fingerprint": "edgeopt.core.host",
    "summarize": "edgeopt.core.stats",
    # measure
    "prepare_timing_inputs": "edgeopt.measure.launcher",
    "Cell": "edgeopt.measure.cell",
    "CellContext": "edgeopt.measure.cell",
    "measure_cell": "edgeopt.measure.cell",
    "Measurement": "edgeopt.measure.results",
    "load_measurement": "edgeopt.measure.stored",
    # judge
    "gate_measurement": "edgeopt.evaluate.gate",
    "evaluate_budgets": "edgeopt.evaluate.gate",
    "Verdict": "edgeopt.evaluate.gate",
    "GateResult": "edgeopt.evaluate.gate",
    # the run folder
    "RunLayout": "edgeopt.reports.run_summary",
    "RunSummary": "edgeopt.reports.run_summary",
    "load_summary": "edgeopt.reports.run_summary",
    # the whole run (edgeopt run, bench.py)
    "RunConfig": "edgeopt.workflows.plan",
    "RunPlan": "edgeopt.workflows.plan",
    "plan_run": "edgeopt.workflows.plan",
    "RunResult": "edgeopt.workflows.pipeline",
    "run_pipeline": "edgeopt.workflows.pipeline",
    # the regression history
    "HistoryStore": "edgeopt.history.store",
    "collect": "edgeopt.history.collect",
    "record_from_run_folder": "edgeopt.history.collect",
    "Series": "edgeopt.history.series",
    "SeriesKey": "edgeopt.history.series",
    "analyse": "edgeopt.history.changepoints",
    "detect_changes": "edgeopt.history.changepoints",
    "check_newest": "edgeopt.history.changepoints",
    "write_dashboard": "edgeopt.history.dashboard",
}

__all__ = sorted([*_PUBLIC, "__version__"])


def _installed_version() -> str:
    """pyproject.toml's ``version`` (the one literal), read from the installed distribution's metadata."""
    import importlib.metadata  # here, not at the top: 30-60 ms and the email package, which a worker never needs

    try:
        return importlib.metadata.version("edgeopt")
    except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()["__version__"] = version = _installed_version()
        return version
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeopt' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
