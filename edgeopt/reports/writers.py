"""Write every file report of a finished run beside its ``summary.json``: HTML, JUnit XML and CSV."""

from __future__ import annotations

import logging
from pathlib import Path

from edgeopt.reports.csv_table import write_results_csv
from edgeopt.reports.junit_xml import write_junit
from edgeopt.reports.run_data import CSV_NAME, HTML_NAME, JUNIT_NAME, load_run

__all__ = ["write_run_reports"]

logger = logging.getLogger(__name__)


def write_run_reports(run_dir: Path, *, html: bool = True) -> list[Path]:
    """Write ``report.html``, ``junit.xml`` and ``results.csv`` beside ``run_dir/summary.json``.

    Without matplotlib (extra ``report``) the HTML report is skipped with a note; the others need
    only the standard library.
    """
    run = load_run(run_dir)
    written = [write_junit(run, run.directory / JUNIT_NAME), write_results_csv(run, run.directory / CSV_NAME)]
    if html:
        from edgeopt.reports.html_report import matplotlib_missing, write_html

        missing = matplotlib_missing()
        if missing:
            logger.warning(f"report: {HTML_NAME} skipped: {missing}")
        else:
            written.append(write_html(run, run.directory / HTML_NAME))
    return written
