"""``edgeopt log-mlflow RUN_DIR --tracking-uri URI --experiment NAME``: log a finished run folder to MLflow.

Imported by ``edgeopt.cli.main`` to add the subcommand, so only the standard library is imported here;
:mod:`edgeopt.reports.mlflow_tracking` (and mlflow) load when the command runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from edgeopt.cli.parsing import add_command_parser


def add_command(subparsers: Any) -> None:
    """Add ``log-mlflow`` to the ``edgeopt`` subcommands (``handler`` is its function)."""
    p = add_command_parser(
        subparsers, "log-mlflow", summary="log a finished run folder to MLflow (params, metrics, reports; extra "
        "'tracking')",
        description="Log an edgeopt run folder to MLflow: one parent run for the folder, one nested run per "
                    "(variant, profile) with params, metrics (percentiles with CI bounds, memory, size, "
                    "speed-up, fidelity, accuracy) and the reports as artifacts. Needs pip install "
                    "'edgeopt[tracking]'; a file store needs MLFLOW_ALLOW_FILE_STORE=true (MLflow 3).",
        example="""
            edgeopt log-mlflow out/ --tracking-uri http://mlflow.internal:5000 --experiment detector
            MLFLOW_ALLOW_FILE_STORE=true edgeopt log-mlflow out/ --tracking-uri "file://$PWD/mlruns"
            """)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the --out folder of 'edgeopt run'")
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                   help="MLflow tracking URI: http(s)://server, databricks, sqlite:///mlflow.db (full mlflow), "
                        "file:///path (needs MLFLOW_ALLOW_FILE_STORE=true) (default: $MLFLOW_TRACKING_URI)")
    p.add_argument("--experiment", default=os.environ.get("MLFLOW_EXPERIMENT_NAME", "edgeopt"),
                   help="experiment name, created when missing (default: $MLFLOW_EXPERIMENT_NAME or edgeopt)")
    p.set_defaults(handler=handle_log_mlflow)


def handle_log_mlflow(args: argparse.Namespace) -> int:
    from edgeopt.errors import ConfigError
    from edgeopt.reports.mlflow_tracking import log_run

    if not args.tracking_uri:
        raise ConfigError("log-mlflow: give --tracking-uri URI (or set MLFLOW_TRACKING_URI)")
    tracked = log_run(args.run_dir, args.tracking_uri, args.experiment)
    print(f"logged {args.run_dir} to MLflow {tracked.tracking_uri}, experiment {args.experiment!r} "
          f"(id {tracked.experiment_id}): parent run {tracked.parent_run_id}, "
          f"{len(tracked.child_run_ids)} nested run(s)")
    return 0
