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
from edgeopt.cli.json_output import add_json_option, json_document, print_json
from edgeopt.cli.parsing import add_command_parser
from edgeopt.errors import (
    EXIT_BACKEND_FAILURE,
    EXIT_BUDGET_FAILED,
    EXIT_INCONCLUSIVE,
    EXIT_INPUT_REJECTED,
    EXIT_OK,
    EXIT_USAGE,
)


def add_command(subparsers: Any) -> None:
    """Add ``compare``, ``ab`` and ``rerun`` to the ``edgeopt`` subparsers."""
    p = add_command_parser(
        subparsers, "compare", summary="compare stored results: change ratios with intervals and verdicts",
        description="Compare the stored latency samples and figures of CANDIDATE with those of BASELINE, row by "
        "row (variant, profile): the ratio of each statistic with its bootstrap interval and a verdict (regressed, "
        "improved, unchanged, inconclusive) against --threshold. Nothing is measured; results from different hosts "
        "are compared with a warning, tight latency thresholds only with --allow-cross-host.",
        example="edgeopt compare baseline-run/ candidate-run/ --threshold p95:5%",
        notes=_exit_codes({EXIT_OK: "no regression", EXIT_BUDGET_FAILED: "a statistic regressed",
                           EXIT_USAGE: "a bad option", EXIT_INPUT_REJECTED: "a results file or folder that is "
                           "missing, unreadable, corrupt or of another schema",
                           EXIT_BACKEND_FAILURE: "a stored measurement had failed",
                           EXIT_INCONCLUSIVE: "inconclusive"}))
    p.add_argument("baseline", type=Path, metavar="BASELINE", help="measurement JSON, run folder, folder of JSON, "
                   "or pytest-benchmark JSON (saved with --benchmark-save-data)")
    p.add_argument("candidate", type=Path, metavar="CANDIDATE", help="the same kinds as BASELINE")
    options.add_threshold_options(p.add_argument)
    p.add_argument("--allow-cross-host", action="store_true", help="judge latency thresholds under 10%% even when "
                   "the two were measured on different hosts (default: refuse them across hosts)")
    p.add_argument("--json", nargs="?", const="-", type=str, metavar="FILE",
                   help="the comparison as one JSON document with schema_version: --json alone prints it instead "
                   "of the sentences, --json FILE also writes it to FILE (default: sentences only)")
    p.set_defaults(handler=handle_compare)

    p = add_command_parser(
        subparsers, "ab", summary="interleaved same-host A/B of two ONNX files (the CI regression gate)",
        description="Measure BASE (A) and CANDIDATE (B) in alternating ABBA blocks in one worker process, "
        "re-opening both sessions between segments, so that machine drift cancels; report the p50 and p95 "
        "ratios of B to A with segment-bootstrap intervals and a verdict. The same file under two profiles "
        "(--profile-b) compares runtime settings.",
        example="edgeopt ab main.onnx pr.onnx --profile x86-avx512vnni-2core",
        notes="exit codes: as compare (1 regressed, 5 inconclusive)")
    p.add_argument("base", type=Path, metavar="BASE", help="baseline ONNX file (A)")
    p.add_argument("candidate", type=Path, metavar="CANDIDATE", help="candidate ONNX file (B); may be the same "
                   "file with --profile-b")
    options.add_profile_options(p.add_argument, required=True, note="whose runtime and bench settings A runs with")
    p.add_argument("--profile-b", metavar="NAME_OR_YAML", help="profile whose runtime settings B runs with "
                   "(default: --profile)")
    options.add_threshold_options(p.add_argument, default=options.AB_THRESHOLDS)
    options.add_input_options(p.add_argument)
    p.add_argument("--max-seconds", type=float, metavar="S", help="time cap of the interleaved loop (default: 4x "
                   "the profile's bench.max_seconds: two arms and a tail-percentile ratio need more samples)")
    options.add_out_options(p.add_argument, default=Path("edgeopt-out/ab"), what="folder for the JSON result")
    add_json_option(p, "the A/B document (the one written to --out)")
    options.add_history_options(p.add_argument)
    p.set_defaults(handler=handle_ab)

    p = add_command_parser(
        subparsers, "rerun", summary="re-measure a stored result under the same settings; report agreement",
        description="Measure the variant of a stored measurement again, --times times, under the profile "
        "settings and input shapes stored in it, and report whether each rerun's p50 and p95 agree with the "
        "stored ones (within 2%, with intervals): does the result reproduce on this host?",
        example="edgeopt rerun out/measurements/fp32__host-cpu.json --times 3",
        notes="exit codes: 0 every rerun agrees, 4 a re-measurement failed, 5 not reproducible")
    p.add_argument("result", type=Path, metavar="RESULT", help="a measurement JSON file")
    p.add_argument("--times", type=int, default=1, metavar="N", help="how many re-measurements (default: "
                   "%(default)s)")
    options.add_out_options(p.add_argument, what="folder for the re-measurements", default_help="a temporary folder")
    add_json_option(p, "the agreement of each rerun")
    p.set_defaults(handler=handle_rerun)


def _exit_codes(meanings: dict[int, str]) -> str:
    return "exit codes: " + ", ".join(f"{code} {text}" for code, text in sorted(meanings.items()))


def handle_compare(args: argparse.Namespace) -> int:
    from edgeopt.evaluate.compare import compare_paths

    comparison = compare_paths(args.baseline, args.candidate, args.threshold, allow_cross_host=args.allow_cross_host)
    for line in comparison.warnings:
        print(f"WARNING: {line}", file=sys.stderr)
    document = json_document("comparison", comparison.to_dict())
    if args.json == "-":
        print_json("comparison", document)
        return comparison.exit_code
    text = comparison.render().splitlines()
    print("\n".join(line for line in text if not line.startswith("WARNING: ")))
    if args.json:
        from edgeopt.core.fileio import write_json_atomic

        write_json_atomic(Path(args.json), document)
    return comparison.exit_code


def handle_ab(args: argparse.Namespace) -> int:
    from edgeopt.cli.history import open_history, store_record
    from edgeopt.core.revision import project_revision
    from edgeopt.history.collect import record_from_ab_document
    from edgeopt.models.modelref import parse_input_spec
    from edgeopt.profiles.schema import load_profile
    from edgeopt.workflows.ab import run_ab

    profile = load_profile(args.profile)
    profile_b = load_profile(args.profile_b) if args.profile_b else None
    history = open_history(args.history)
    result = run_ab(args.base, args.candidate, profile, profile_b=profile_b, thresholds=args.threshold,
                    out_dir=args.out, max_seconds=args.max_seconds,
                    inputs=[parse_input_spec(text) for text in args.input or []])
    if args.json:
        print_json("ab", result.document)
    else:
        print(result.render())
        if result.path is not None:
            print(f"result: {result.path}")
    store_record(history, lambda: record_from_ab_document(result.document, str(result.path or "ab"),
                                                          project_revision()), str(result.path or args.out))
    return result.exit_code


def handle_rerun(args: argparse.Namespace) -> int:
    from edgeopt.workflows.rerun import rerun_measurement

    report = rerun_measurement(args.result, times=args.times, out_dir=args.out)
    if args.json:
        print_json("rerun", {"source": str(report.source), "rows": list(report.rows),
                             "failures": list(report.failures), "tolerance": report.tolerance,
                             "agreed": report.agreed, "sentences": list(report.sentences),
                             "exit_code": report.exit_code})
        return report.exit_code
    print(report.render())
    return report.exit_code
