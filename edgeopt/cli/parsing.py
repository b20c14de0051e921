"""How every ``edgeopt`` parser is built: the global options, each subcommand's help page, the exit codes.

- **Global options** (``--debug``, ``-v/--verbose``, ``-q/--quiet``, ``--log-file``) are declared once in
  :data:`GLOBAL_OPTIONS` and reach both the top-level parser and every subcommand through argparse's
  ``parents=``, so ``edgeopt --debug run ...`` and ``edgeopt run --debug ...`` mean the same.  The subcommand's
  copy has ``default=argparse.SUPPRESS``: an option not given after the subcommand leaves the value set before
  it (or the top-level default) alone instead of overwriting it.
- **Subcommands** are added with :func:`add_command_parser`, which takes a one-paragraph description and an
  example and keeps the example's layout (``RawDescriptionHelpFormatter``).
- **Exit codes** in ``edgeopt --help`` come from the ``EXIT_*`` constants of :mod:`edgeopt.errors`.

Standard library and :mod:`edgeopt.errors` only: imported by every ``edgeopt`` call.
"""

from __future__ import annotations

import argparse
import signal
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeopt import errors

__all__ = ["GLOBAL_OPTIONS", "GlobalOption", "add_command_parser", "exit_code_lines", "global_options_parent"]

WIDTH = 100  # description paragraphs are wrapped to this width (RawDescriptionHelpFormatter keeps them as given)


@dataclass(frozen=True)
class GlobalOption:
    """One option accepted before or after the subcommand: its flags, its top-level default and argparse's
    other keyword arguments (``action``, ``help``, ``metavar``, ...)."""

    flags: tuple[str, ...]
    default: Any
    attrs: dict[str, Any] = field(default_factory=dict)


#: The options every subcommand takes too (what the logging ones do: :mod:`edgeopt.cli.output`).
GLOBAL_OPTIONS: tuple[GlobalOption, ...] = (
    GlobalOption(("--debug",), False, {"action": "store_true",
                                        "help": "show the traceback of an error (default: one line)"}),
    GlobalOption(("-v", "--verbose"), 0, {
        "action": "count", "help": "also show debug lines and the runtimes' warnings (ONNX Runtime, OpenVINO, the "
        "quantizer) on stderr (default: one line per step; the warnings are counted and kept in the run's run.log)"}),
    GlobalOption(("-q", "--quiet"), False, {
        "action": "store_true", "help": "only errors on stderr and no progress bars; stdout keeps the command's "
        "result, for run only the verdict line (default: one line per step on stderr, bars on a terminal)"}),
    GlobalOption(("--log-file",), None, {
        "type": Path, "metavar": "PATH", "help": "append every log line, at debug level with timestamps, to PATH "
        "(default: none)"}),
)


def global_options_parent(*, in_subcommand: bool) -> argparse.ArgumentParser:
    """A parent parser (``parents=[...]``) holding :data:`GLOBAL_OPTIONS`.

    ``in_subcommand=True`` gives each option ``default=argparse.SUPPRESS``: argparse copies every attribute a
    subparser sets into the top-level namespace, so a real default there would undo ``edgeopt --debug run``."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("global options (before or after the subcommand)")
    for option in GLOBAL_OPTIONS:
        group.add_argument(*option.flags, default=argparse.SUPPRESS if in_subcommand else option.default,
                           **option.attrs)
    return parent


def add_command_parser(subparsers: Any, name: str, *, summary: str, description: str, example: str,
                       notes: str | None = None) -> argparse.ArgumentParser:
    """Add subcommand ``name``: ``summary`` is its line in ``edgeopt --help``; ``description`` (one paragraph,
    wrapped here) heads ``edgeopt NAME --help``; ``example`` (one command per line, kept as written) and then
    ``notes`` (one paragraph, e.g. the command's exit codes, wrapped here) close it.  The global options come
    with it."""
    epilog = "example:\n" + textwrap.indent(textwrap.dedent(example).strip("\n"), "  ")
    if notes:
        epilog += "\n\n" + textwrap.fill(" ".join(notes.split()), WIDTH, subsequent_indent="  ")
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=summary, description=textwrap.fill(" ".join(description.split()), WIDTH), epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter, parents=[global_options_parent(in_subcommand=True)])
    return parser


#: What each exit code means, by the constant that defines it.
EXIT_MEANINGS: dict[int, str] = {
    errors.EXIT_OK: "every budget passed, or is not applicable (the host is not the profile's hardware)",
    errors.EXIT_BUDGET_FAILED: "a budget failed: its whole confidence interval is over the limit",
    errors.EXIT_USAGE: "usage or configuration error (bad option, invalid profile, unwritable or busy --out)",
    errors.EXIT_INPUT_REJECTED: "input rejected (model file, calibration or eval data, a stored result file)",
    errors.EXIT_BACKEND_FAILURE: "a backend, quantizer, exporter or worker failed (or a runtime is missing)",
    errors.EXIT_INCONCLUSIVE: "inconclusive (an interval straddles a budget) or an invalid (unstable) measurement",
}


def exit_code_lines() -> str:
    """The exit codes of ``edgeopt``, one per line, from :mod:`edgeopt.errors` and the signal numbers."""
    codes = sorted(value for name, value in vars(errors).items() if name.startswith("EXIT_") and isinstance(value, int))
    lines = [f"  {code:<6} {EXIT_MEANINGS[code]}" for code in codes]
    lines.append(f"  128+N  stopped by signal N, orderly ({128 + signal.SIGINT} after Ctrl-C, "
                 f"{128 + signal.SIGTERM} after SIGTERM)")
    lines.append("  when several apply: 1, then 4, then 5, then 0")
    return "exit codes:\n" + "\n".join(lines)
