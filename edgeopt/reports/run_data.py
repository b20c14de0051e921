"""A finished run read back: the run folder (``summary.json`` and its measurements) as one value, for the reports.

A run folder is what ``edgeopt run`` writes: ``summary.json`` plus ``measurements/*.json`` (with the
raw samples).  :func:`load_run` reads it into a :class:`RunData`; the writers in
:mod:`edgeopt.reports.html_report`, :mod:`edgeopt.reports.junit_xml` and :mod:`edgeopt.reports.csv_table` take that
value; :func:`render_run_markdown` rebuilds the PR-comment Markdown.  :func:`write_run_reports` is
what a pipeline run calls to leave ``report.html``, ``junit.xml`` and ``results.csv`` beside
``summary.json``.

It imports only the standard library at module level (``edgeopt report`` must start fast); everything
else is imported when a report is made.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgeopt.errors import ConfigError

if TYPE_CHECKING:
    from edgeopt.evaluate.gate import GateResult
    from edgeopt.measure.results import Measurement
    from edgeopt.reports.run_summary import RunSummary
    from edgeopt.reports.table import Row


HTML_NAME, JUNIT_NAME, CSV_NAME = "report.html", "junit.xml", "results.csv"

# what neither XML 1.0 allows nor an HTML page should carry raw: C0 controls but tab, newline and carriage return,
# DEL, C1 controls, lone surrogates (a non-UTF-8 file name read back), U+FFFE and U+FFFF
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def shown_controls(text: str) -> str:
    """``text`` with each control character (see ``_CONTROLS``) written as its escape, ``\\x1b`` or ``\\udc80``:
    what the JUnit XML and the HTML report show of a model or file name that holds them."""
    return _CONTROLS.sub(lambda m: ascii(m[0])[1:-1], text)


@dataclass(frozen=True)
class RunData:
    """One run folder, read back: the typed run document and every measurement it names."""

    directory: Path
    summary: RunSummary
    measurements: dict[tuple[str, str], Measurement] = field(default_factory=dict)  # (variant, profile)

    @property
    def rows(self) -> list[Row]:
        return list(self.summary.rows)

    @property
    def profiles(self) -> list[str]:
        return list(self.summary.profiles)

    def gate(self, variant: str, profile: str) -> GateResult | None:
        return next((g for g in self.summary.gates if g.variant == variant and g.profile == profile), None)

    def rows_for(self, profile: str) -> list[Row]:
        return [r for r in self.rows if r.profile == profile]

    @property
    def unmade(self) -> list[Row]:
        """Rows of variants that could not be made (``profile`` is ``"-"``)."""
        return [r for r in self.rows if r.profile == "-"]

    def first_measurement(self, profile: str) -> Measurement | None:
        found = [m for (_, p), m in self.measurements.items() if p == profile]
        return next((m for m in found if m.ok), found[0] if found else None)


def load_run(run_dir: Path) -> RunData:
    """Read ``run_dir/summary.json`` and the measurement documents of its rows.

    ``run_dir`` may also be the ``summary.json`` file itself.  A missing, unreadable or invalid file
    raises InputRejectedError (exit 3) naming it (:mod:`edgeopt.measure.stored`, :mod:`edgeopt.reports.run_summary`).
    """
    from edgeopt.measure.stored import load_measurement
    from edgeopt.reports.run_summary import RunLayout, load_summary

    layout = RunLayout.of(run_dir)
    summary = load_summary(layout.root)
    measurements = {(variant, profile): load_measurement(layout.measurement(variant, profile))
                    for variant, profile in summary.measured_rows()}
    return RunData(layout.root, summary, measurements)


def host_summary(measurement: Measurement | None) -> str:
    if measurement is None:
        return "unknown host"
    from edgeopt.core.host import HostFingerprint

    return HostFingerprint.from_dict(measurement.host).summary()


def profile_header(run: RunData, profile: str) -> list[str]:
    """The header lines of one profile's table, as ``edgeopt run`` prints them."""
    from edgeopt.reports.table import header_lines, settings_line

    first = run.first_measurement(profile)
    if first is None:
        return [f"profile {profile}: nothing measured"]
    lines = header_lines(profile, host_summary(first), first.host_matches, list(first.mismatch_reasons), first.proxy)
    if first.ok:
        lines.append(settings_line(first))
    return lines


def render_run_markdown(run: RunData) -> str:
    """The run's Markdown for a PR comment or ``$GITHUB_STEP_SUMMARY``: ``edgeopt.reports.table.render_markdown``
    (verdict, recommended rows, per-profile headers, GitHub table, failed/undecided details), then every budget
    check in a collapsed ``<details>`` block."""
    from edgeopt.reports.table import markdown_text, render_markdown

    sections = [(profile_header(run, p), run.rows_for(p)) for p in run.profiles]
    if run.unmade:
        sections.append((["variants that could not be made"], run.unmade))
    text = render_markdown(sections, run.summary.verdict,
                           [str(r.get("line", "")) for r in run.summary.recommendations])
    checks = [(g.variant, g.profile, c) for g in run.summary.gates for c in g.checks]
    if checks:
        lines = ["", f"<details><summary>All budget checks ({len(checks)})</summary>", ""]
        lines += [f"- {markdown_text(v)} on {markdown_text(p)}: **{c.verdict.value}**: {markdown_text(c.sentence)}"
                  for v, p, c in checks]
        lines += ["", "</details>", ""]
        text = text.rstrip("\n") + "\n" + "\n".join(lines)
    return text


def append_github_summary(markdown: str, environ: dict[str, str] | None = None) -> Path:
    """Append ``markdown`` to the file named by ``$GITHUB_STEP_SUMMARY``.

    ConfigError (exit 2) naming the file when it is unset, not a regular file (checked with ``os.stat`` before
    opening: a FIFO would block, a device is no summary) or cannot be written (a full disk)."""
    from edgeopt.core.fileio import open_stream, regular_file

    target = (environ if environ is not None else dict(os.environ)).get("GITHUB_STEP_SUMMARY")
    if not target:
        raise ConfigError("--github-summary: $GITHUB_STEP_SUMMARY is not set (it is set inside GitHub Actions jobs)")
    path = Path(target)
    text = markdown if markdown.endswith("\n") else markdown + "\n"
    try:
        with contextlib.suppress(FileNotFoundError):
            regular_file(path)  # a missing file is created
        with open_stream(path, append=True) as handle:
            handle.write(text.encode("utf-8"))
    except OSError as error:
        raise ConfigError(f"--github-summary: $GITHUB_STEP_SUMMARY {path}: cannot append the summary: "
                          f"{error.strerror or error}") from error
    return path
