"""``edgeopt trt-check MODEL --tensorrt 10.3|10.x|11``: would TensorRT's ONNX parser take this model, statically.

The check lives in :mod:`edgeopt.backends.tensorrt.readiness`; this module holds the parser and the handler.
It is imported by ``edgeopt.cli.main`` to add the subcommand, so it imports only the standard library at module
level.  Exit codes: 0 statically ready, 1 blocked, 2 unknown TensorRT version, 3 unreadable model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgeopt.cli.parsing import add_command_parser

#: Findings of one rule printed before "... and N more" (``--all`` prints every one).
SHOWN_PER_RULE = 5


def add_command(subparsers: Any) -> None:
    """Add ``edgeopt trt-check`` to the ``edgeopt`` command's subparsers."""
    p = add_command_parser(
        subparsers, "trt-check", summary="static TensorRT readiness of an ONNX file (no GPU, no TensorRT needed)",
        description="Check every node of MODEL against the operator table of TensorRT's ONNX parser for the "
        "given release (shipped, from onnx-tensorrt docs/operators.md) and its Q/DQ against TensorRT's explicit-"
        "quantization rules. Passing is necessary, not sufficient: no engine is built.",
        example="edgeopt trt-check variants/int8-trt-qdq.onnx --tensorrt 10.3 --tensorrt 11",
        notes="exit codes: 0 statically ready, 1 blocked, 2 unknown TensorRT version, 3 unreadable model")
    p.add_argument("model", type=Path, metavar="MODEL", help="the ONNX file to check")
    p.add_argument("--tensorrt", action="append", metavar="VERSION",
                   help="TensorRT release: 10.3, 10.x (newest 10), 11 (newest 11) or any N.M; repeatable "
                   "(default: 10.x)")
    p.add_argument("--json", action="store_true", help="print the result as JSON with schema_version (one "
                   "document, a list when several --tensorrt are given) (default: the findings as text)")
    p.add_argument("--all", action="store_true", help=f"print every finding (default: {SHOWN_PER_RULE} per rule)")
    p.add_argument("--notes", action="store_true", help="also print the notes: operators.md restrictions of each "
                   "operator used, which are not checked statically (default: only their count)")
    p.set_defaults(handler=handle_trt_check)


def handle_trt_check(args: argparse.Namespace) -> int:
    """Check MODEL for each --tensorrt; 0 when every target is statically ready, else 1."""
    from edgeopt.backends.tensorrt.readiness import check_tensorrt_readiness
    from edgeopt.backends.tensorrt.support import resolve_target

    targets = [resolve_target(v) for v in (args.tensorrt or ["10.x"])]  # ConfigError (exit 2) before any work
    results = [check_tensorrt_readiness(args.model, target) for target in targets]
    if args.json:
        documents = [r.to_dict() for r in results]
        print(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2))
    else:
        for index, result in enumerate(results):
            if index:
                print()
            _print(result, every=args.all, notes=args.notes)
    return 0 if all(results) else 1


def _print(result: Any, *, every: bool, notes: bool) -> None:
    target = result.target
    print(f"{result.model}: opset {result.opset}, {result.nodes} nodes ({result.qdq_nodes} Q/DQ)")
    print(f"{target.name}: operator data from {target.describe()}")
    if notes and target.table.note:
        print(f"  table note: {target.table.note}")
    shown: dict[str, int] = {}
    hidden: dict[str, int] = {}
    for finding in result.findings:
        if finding.severity == "note" and not notes:
            continue
        key = f"{finding.severity} {finding.rule}"
        if not every and shown.get(key, 0) >= SHOWN_PER_RULE:
            hidden[key] = hidden.get(key, 0) + 1
            continue
        shown[key] = shown.get(key, 0) + 1
        print(f"  {finding.severity.upper():7s} {finding.sentence()}")
    for key, count in hidden.items():
        print(f"  ... and {count} more {key} finding{'s' * (count != 1)} (--all prints them)")
    skipped = len(result.of("note"))
    if skipped and not notes:
        print(f"  ({skipped} note{'s' * (skipped != 1)}: operators.md restrictions not checked statically; --notes "
              "prints them)")
    print(result.verdict())
