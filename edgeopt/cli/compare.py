"""CLI subcommands ``compare``, ``ab`` and ``rerun`` (added to ``edgeopt`` through ``COMMAND_MODULES``).

``compare`` exits 0 (no regression), 1 (a statistic regressed), 2 (a bad option, e.g. a malformed
``--threshold``), 3 (a results file or folder that is missing, unreadable, corrupt or of another schema:
exit 3 for an unreadable results file everywhere, as under ``report``, ``gate`` and ``rerun``), 4 (a stored
measurement had failed) or 5 (inconclusive).

Light to import: the handlers import numpy, onnxruntime and friends when they run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edgeopt.cli import options


def add_command(subparsers: Any) -> None:
    """Add ``compare``, ``ab`` and ``rerun`` to the ``edgeopt`` subparsers."""
    p = subparsers.add_parser(
        "compare", help="compare stored results: change ratios with intervals and verdicts",
        epilog="exit codes: 0 no regression, 1 a statistic regressed, 2 a bad option, 3 a results file or folder "
               "that is missing, unreadable, corrupt or of another schema, 4 a stored measurement had failed, "
               "5 inconclusive")
    p.add_argument("baseline", type=Path, help="measurement JSON, run folder, folder of JSON, or pytest-benchmark "
                   "JSON (saved with --benchmark-save-data)")
    p.add_argument("candidate", type=Path)
    options.add_threshold_options(p.add_argument)
    p.add_argument("--allow-cross-host", action="store_true", help="judge latency thresholds under 10%% even when "
                   "the two were measured on different hosts")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the comparison as JSON")
    p.set_defaults(handler=handle_compare)

    p = subparsers.add_parser("ab", help="interleaved same-host A/B of two ONNX files (the CI regression gate)")
    p.add_argument("base", type=Path, help="baseline ONNX file (A)")
    p.add_argument("candidate", type=Path, help="candidate ONNX file (B); may be the same file with --profile-b")
    options.add_profile_options(p.add_argument, required=True, note="whose runtime and bench settings A runs with")
    p.add_argument("--profile-b", help="profile whose runtime settings B runs with (default: --profile)")
    options.add_threshold_options(p.add_argument, default=options.AB_THRESHOLDS)
    options.add_input_options(p.add_argument)
    p.add_argument("--max-seconds", type=float, help="time cap of the interleaved loop (default: 4x the "
                   "profile's bench.max_seconds: two arms and a tail-percentile ratio need more samples)")
    options.add_out_options(p.add_argument, default=Path("edgeopt-out/ab"), what="folder for the JSON result")
    p.set_defaults(handler=handle_ab)

    p = subparsers.add_parser("rerun", help="re-measure a stored result under the same settings; report agreement")
    p.add_argument("result", type=Path, help="a measurement JSON file")
    p.add_argument("--times", type=int, default=1, help="how many re-measurements (default 1)")
    options.add_out_options(p.add_argument, what="folder for the re-measurements", default_help="a temporary folder")
    p.set_defaults(handler=handle_rerun)


def handle_compare(args: argparse.Namespace) -> int:
    from edgeopt.evaluate.compare import compare_paths

    comparison = compare_paths(args.baseline, args.candidate, args.threshold, allow_cross_host=args.allow_cross_host)
    for line in comparison.warnings:
        print(f"WARNING: {line}", file=sys.stderr)
    text = comparison.render().splitlines()
    print("\n".join(line for line in text if not line.startswith("WARNING: ")))
    if args.json:
        from edgeopt.core.fileio import write_json_atomic

        write_json_atomic(args.json, comparison.to_dict())
    return comparison.exit_code


def handle_ab(args: argparse.Namespace) -> int:
    from edgeopt.models.modelref import parse_input_spec
    from edgeopt.profiles.schema import load_profile
    from edgeopt.workflows.ab import run_ab

    profile = load_profile(args.profile)
    profile_b = load_profile(args.profile_b) if args.profile_b else None
    result = run_ab(args.base, args.candidate, profile, profile_b=profile_b, thresholds=args.threshold,
                    out_dir=args.out, max_seconds=args.max_seconds,
                    inputs=[parse_input_spec(text) for text in args.input or []])
    print(result.render())
    if result.path is not None:
        print(f"result: {result.path}")
    return result.exit_code


def handle_rerun(args: argparse.Namespace) -> int:
    from edgeopt.workflows.rerun import rerun_measurement

    report = rerun_measurement(args.result, times=args.times, out_dir=args.out)
    print(report.render())
    return report.exit_code
