"""The arguments of ``edgeopt run`` (``edgeopt lab run`` takes the same) and the ``RunConfig`` they ask for."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeopt.cli import options
from edgeopt.cli.json_output import add_json_option
from edgeopt.errors import ConfigError

if TYPE_CHECKING:
    from edgeopt.workflows.plan import RunConfig

__all__ = ["add_run_arguments", "run_config"]


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """MODEL and every option of ``edgeopt run`` (``edgeopt lab run`` takes the same)."""
    p.add_argument("model", metavar="MODEL", help="package.module:factory or path/to/model.onnx")
    options.add_profile_options(p.add_argument, repeatable=True, required=True)
    options.add_budget_options(p.add_argument)
    options.add_proxy_options(p.add_argument)
    options.add_out_options(p.add_argument, default=Path("edgeopt-out"))
    options.add_calibration_options(p.add_argument, sample_limits=True)
    options.add_eval_options(p.add_argument, default_help="none: no task metric")
    p.add_argument("--metric", action="append", help="task metric on --eval, repeatable: top1, top5, mae, rmse, "
                   "cosine_to_fp32, retrieval_agreement@K or package.module:function (default: top1 with "
                   "integer labels, mae with targets, else cosine_to_fp32); the first is the table's column")
    p.add_argument("--shift", action="append", help="also evaluate on shifted eval images, repeatable: brightness, "
                   "contrast, noise, blur (NAME:SEVERITY to change the default) or all (default: no shift)")
    p.add_argument("--shift-range", metavar="LOW:HIGH", help="pixel value range the shifts act in (default: from "
                   "the calibration manifest's normalisation, else [0,1] when the eval values fit, else min:max)")
    p.add_argument("--decision-threshold", type=float, default=0.5, metavar="T",
                   help="threshold of the decision agreement reported for outputs in [0, 1] (default: %(default)s)")
    options.add_variant_options(p.add_argument)
    options.add_keep_float_options(p.add_argument)
    options.add_export_options(p.add_argument)
    options.add_force_options(p.add_argument)
    options.add_history_options(p.add_argument)
    p.add_argument("--wait-for-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="before each measurement, wait up to SECONDS (with progress) until the load average per core "
                        "is within the profile's stability.max_load_avg_per_core (default: 0, measure at once; a "
                        "busy host then gives invalid rows)")
    add_json_option(p, "the run summary (summary.json)")


def _shift_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    low, _, high = text.partition(":")
    try:
        return float(low), float(high)
    except ValueError:
        pass
    raise ConfigError(f"--shift-range {text!r}: expected LOW:HIGH, e.g. 0:1 or 0:255")


def run_config(args: argparse.Namespace, **extra: Any) -> RunConfig:
    """The ``RunConfig`` the run options (``add_run_arguments``) ask for; ``extra`` fields added (``lab run``)."""
    from edgeopt.models.modelref import parse_inputs
    from edgeopt.workflows.plan import RunConfig

    declared = parse_inputs(args.input or [])
    return RunConfig(
        model=args.model, profiles=tuple(args.profile), out_dir=args.out, calibration=args.calibration,
        variants=tuple(args.variant or ()), keep_float=tuple(args.keep_float or ()), eval_set=args.eval_set,
        inputs=declared.specs, dim_sizes=dict(declared.sizes), opset=args.opset, exporter=args.exporter,
        with_past=args.with_past,
        budgets=options.parse_budgets(args.budget), proxy=args.proxy, force=args.force,
        min_calibration_samples=options.sample_limits(args)[0],
        max_calibration_samples=options.sample_limits(args)[1],
        metrics=tuple(args.metric or ()), shifts=tuple(args.shift or ()), shift_range=_shift_range(args.shift_range),
        decision_threshold=args.decision_threshold, wait_for_quiet_s=args.wait_for_quiet, **extra)
