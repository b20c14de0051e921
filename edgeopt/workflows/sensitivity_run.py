"""``edgeopt sensitivity``: rank the quantized nodes of a QDQ variant by the error they introduce, and write the
ranking (``sensitivity.json``) and its plot (``sensitivity.png``) into the output folder.

The inputs run are the first ``samples`` of the eval set when one is given, else of the calibration set; the fp32
model compared is the one the QDQ variant was made from (:func:`edgeopt.evaluate.sensitivity.reference_model_for`).
With ``isolated`` N, N more variants each keep one of the top N nodes in float and report the output SQNR each
wins back (:func:`edgeopt.evaluate.sensitivity.isolated_gains`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgeopt.core.fileio import write_json_atomic
from edgeopt.evaluate.sensitivity import (
    SensitivityReport,
    analyse_sensitivity,
    isolated_gains,
    plot_sensitivity,
    reference_model_for,
)
from edgeopt.models.calibration import load_calibration, load_eval_split
from edgeopt.models.graph import input_specs, load_model
from edgeopt.models.inputs import stacked_feeds
from edgeopt.models.recipes import Recipe

__all__ = ["SensitivityConfig", "SensitivityRun", "run_sensitivity"]


@dataclass(frozen=True)
class SensitivityConfig:
    model: Path  # the fp32 ONNX model the QDQ variant was made from
    qdq: Path  # the QDQ variant
    calibration: str | Path  # calibration folder or factory (the inputs run without an eval set; --isolated's)
    out_dir: Path
    eval_set: str | Path | None = None  # its images are the inputs run when given
    samples: int = 64  # inputs run
    top: int = 20  # nodes in the plot
    isolated: int = 0  # top nodes to try alone in float (one quantizer run each)
    recipe: str = "int8-static-minmax"  # the QDQ variant's recipe, for ``isolated``


@dataclass(frozen=True)
class SensitivityRun:
    """The ranking and where it was written."""

    report: SensitivityReport
    float_model: Path  # the fp32 model compared (the source, or edgeopt's pre-processed copy of it)
    inputs: str  # which inputs were run, in words
    json_path: Path
    plot_path: Path

    def to_dict(self) -> dict[str, Any]:
        """The document written as ``sensitivity.json``."""
        return {**self.report.to_dict(), "inputs": self.inputs}


def run_sensitivity(config: SensitivityConfig) -> SensitivityRun:
    """Analyse ``config.qdq`` against its fp32 model on the chosen inputs; write ``sensitivity.json`` and
    ``sensitivity.png`` into ``config.out_dir`` (work files under ``.work``, isolated variants under
    ``isolated``)."""
    model = Path(config.model)
    specs = input_specs(load_model(model))
    load_model(config.qdq)
    calibration = load_calibration(config.calibration, expected_inputs=specs)
    if config.eval_set:
        images, _ = load_eval_split(config.eval_set)
        stacked = stacked_feeds(images[:config.samples], specs[0], str(config.eval_set))
        feeds = [{specs[0].name: sample} for sample in stacked]
        where = f"{len(feeds)} samples of {config.eval_set}"
    else:
        feeds = list(calibration.take(min(config.samples, calibration.count)).feeds())
        where = f"{len(feeds)} samples of calibration set {calibration.name}"
    out = Path(config.out_dir)
    float_model = reference_model_for(model.resolve(), config.qdq, out / ".work")
    report = analyse_sensitivity(float_model, config.qdq, feeds, out / ".work")
    if config.isolated:
        rows = isolated_gains(model.resolve(), Recipe.parse(config.recipe), calibration,
                              report.ranked_nodes()[:config.isolated], feeds, out / "isolated")
        report = replace(report, isolated=tuple(rows))
    run = SensitivityRun(report, float_model, where, out / "sensitivity.json", out / "sensitivity.png")
    write_json_atomic(run.json_path, run.to_dict())
    plot_sensitivity(report, run.plot_path, config.top)
    return run
