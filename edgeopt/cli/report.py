"""``edgeopt report RUN_DIR``: read a finished run folder and write the reports a human or a CI reads.

The run document and the writers live in :mod:`edgeopt.reports`; this module holds the parser and the
handler.  It is imported by ``edgeopt.cli.main`` to add the subcommand, so it imports only the standard
library and :mod:`edgeopt.reports.run_data` (itself light) at module level.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from edgeopt.cli.parsing import add_command_parser
from edgeopt.reports.run_data import (
    CSV_NAME,
    HTML_NAME,
    JUNIT_NAME,
    append_github_summary,
    load_run,
    render_run_markdown,
)

# ------------------------------------------------------------------------------------------------ the command


def add_command(subparsers: Any) -> None:
    """Add ``edgeopt report`` to the ``edgeopt`` command's subparsers."""
    p = add_command_parser(
        subparsers, "report", summary="write HTML, JUnit XML, CSV or Markdown reports of a finished run",
        description="Read RUN_DIR (the --out folder of 'edgeopt run': summary.json and measurements/*.json) and "
        f"write the reports asked for; with no option, write {HTML_NAME}, {JUNIT_NAME} and {CSV_NAME} into "
        "RUN_DIR. The run's verdict is inside the reports: the command exits 0 once they are written.",
        example="edgeopt report out/ --html report.html --junit junit.xml --github-summary")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the --out folder of 'edgeopt run' (or its "
                   "summary.json)")
    written = "not written unless no report option is given: then RUN_DIR/{{}}"
    p.add_argument("--html", type=Path, metavar="FILE", help="self-contained HTML report with plots (needs "
                   f"matplotlib: pip install 'edgeopt[report]') (default: {written.format(HTML_NAME)})")
    p.add_argument("--junit", type=Path, metavar="FILE", help="JUnit XML, one test case per (variant, profile, "
                   f"budget) (default: {written.format(JUNIT_NAME)})")
    p.add_argument("--csv", type=Path, metavar="FILE", help="one row per (variant, profile) with every statistic "
                   f"(default: {written.format(CSV_NAME)})")
    p.add_argument("--samples-csv", type=Path, metavar="FILE", help="long format: one row per latency sample "
                   "(default: not written)")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="Markdown for a PR comment ('-' prints it) "
                   "(default: not written)")
    p.add_argument("--github-summary", action="store_true", help="append the Markdown to $GITHUB_STEP_SUMMARY "
                   "(default: off)")
    p.set_defaults(handler=handle_report)


def handle_report(args: argparse.Namespace) -> int:
    """Write the reports asked for; 0 when written (the run's own verdict is inside the reports).

    Writing into the run folder (the default) holds its lock (``edgeopt.core.run_lock``): not while a run
    still writes there, and the folder is read whole."""
    from edgeopt.core.run_lock import run_lock

    chosen = [args.html, args.junit, args.csv, args.samples_csv, args.markdown]
    into_run = not any(chosen) and not args.github_summary
    folder = args.run_dir if args.run_dir.is_dir() else args.run_dir.parent  # RUN_DIR may name its summary.json
    with run_lock(folder, "report") if into_run and folder.is_dir() else contextlib.nullcontext():
        return _write_reports(args, into_run)


def _write_reports(args: argparse.Namespace, into_run: bool) -> int:
    from edgeopt.core.fileio import own_descriptor, write_text_atomic

    run = load_run(args.run_dir)
    html, junit, csv = args.html, args.junit, args.csv
    if into_run:
        html, junit, csv = (run.directory / HTML_NAME, run.directory / JUNIT_NAME, run.directory / CSV_NAME)
    written: list[Path] = []
    if junit:
        from edgeopt.reports.junit_xml import write_junit

        written.append(write_junit(run, junit))
    if csv:
        from edgeopt.reports.csv_table import write_results_csv

        written.append(write_results_csv(run, csv))
    if args.samples_csv:
        from edgeopt.reports.csv_table import write_samples_csv

        written.append(write_samples_csv(run, args.samples_csv))
    if args.markdown or args.github_summary:
        markdown = render_run_markdown(run)
        if args.markdown and str(args.markdown) == "-":
            print(markdown)
        elif args.markdown:
            write_text_atomic(args.markdown, markdown)
            written.append(args.markdown)
        if args.github_summary:
            written.append(append_github_summary(markdown))
    if html:
        from edgeopt.reports.html_report import write_html

        written.append(write_html(run, html))
    for path in written:
        if own_descriptor(path) is None:  # the report itself went to this process's stdout (or stderr)
            print(f"wrote {path}")
    return 0
