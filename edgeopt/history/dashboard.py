"""The regression-history dashboard: one static, self-contained HTML page (``edgeopt history --html OUT``) and the
PNG of one series (``edgeopt history --plot OUT.png``).

The page has an index of the keys, then per key one chart, inline SVG drawn by matplotlib (extra ``report``,
imported only when a chart is drawn; no pyplot): the statistic (p50 or p95, ms) of every stored run against its
run number, oldest first (tick labels: run number and short commit), each point's 95 % interval as an error bar
and its colour its gate verdict; each point is a link to its run's report (to its row of the table below when the
store has no report for it); each change point is a vertical dashed line at the first run of the new level,
labelled ``×ratio [lower, upper]``, with the segments' levels drawn flat.  Under the chart: the
``history --check`` sentence (an alarm in red), one line per change point and the table of the runs.

Nothing is fetched from anywhere: no external script, style, font or image (text is drawn by the browser's own
fonts); the only links are the runs' reports, made relative to the page's folder when both are local paths.
Every name is HTML-escaped and control characters are written as their escapes.  The SVG ids of each chart get
the chart's own prefix (``k3-``), so that charts never share one.  A small inline script counts what the browser
parsed and sets ``data-charts``, ``data-points``, ``data-changes`` and ``data-errors`` on ``<body>``.
"""

from __future__ import annotations

import html
import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from edgeopt.errors import BackendUnavailableError, ConfigError
from edgeopt.history.changepoints import ChangePoint, HistoryCheck
from edgeopt.history.series import Series, SeriesPoint
from edgeopt.reports.run_data import shown_controls

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STATISTICS = ("p50", "p95")
_VERDICT_COLOURS = {"pass": "#2ca02c", "fail": "#d62728", "inconclusive": "#ff7f0e"}
_OTHER_COLOUR = "#7f7f7f"
_CHANGE_COLOURS = {"slowdown": "#b2182b", "speedup": "#2166ac"}
_MAX_TICKS = 10


@dataclass(frozen=True)
class DashboardEntry:
    """One key of the dashboard: its series, the change points found in it and its ``history --check``."""

    series: Series
    changes: tuple[ChangePoint, ...]
    check: HistoryCheck | None


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError as error:
        raise BackendUnavailableError(f"history charts need matplotlib ({error}): pip install 'edgeopt[report]'") \
            from error
    return matplotlib


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _draw(entry: DashboardEntry, statistic: str, urls: Sequence[str | None], *, width: float) -> Figure:
    """The chart of ``entry`` on a fresh figure (no pyplot); ``urls[i]`` is the link of ``points[i]``."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    points = entry.series.points
    fig = Figure(figsize=(width, 3.6), layout="constrained")
    ax = fig.subplots()
    shown = [i for i, p in enumerate(points) if _finite(p.value(statistic))]
    values = [float(points[i].value(statistic) or 0.0) for i in shown]
    with_ci = [(i, v) for i, v in zip(shown, values, strict=True)
               if all(_finite(bound) for bound in points[i].interval(statistic))]
    if with_ci:
        bounds = [points[i].interval(statistic) for i, _ in with_ci]
        ax.errorbar([i + 1 for i, _ in with_ci], [v for _, v in with_ci], fmt="none", ecolor="#555555",
                    capsize=2.5, linewidth=0.9, zorder=2, label="95 % interval",
                    yerr=[[max(0.0, v - float(lo or 0.0)) for (_, v), (lo, _) in zip(with_ci, bounds, strict=True)],
                          [max(0.0, float(hi or 0.0) - v) for (_, v), (_, hi) in zip(with_ci, bounds, strict=True)]])
    colours = [_VERDICT_COLOURS.get(points[i].verdict, _OTHER_COLOUR) for i in shown]
    markers = ax.scatter([i + 1 for i in shown], values, s=36, c=colours, edgecolors="black", linewidths=0.5,
                         zorder=3, gid="points")
    markers.set_urls([urls[i] for i in shown])
    for verdict in sorted({points[i].verdict for i in shown}):
        ax.plot([], [], "o", color=_VERDICT_COLOURS.get(verdict, _OTHER_COLOUR), markeredgecolor="black",
                markeredgewidth=0.5, label=shown_controls(verdict))
    changes = sorted(entry.changes, key=lambda c: c.index)
    if changes:
        starts = [0, *(c.index for c in changes)]
        ends = [*(c.index for c in changes), len(points)]
        levels = [changes[0].before_ms, *(c.after_ms for c in changes)]
        ax.hlines(levels, [s + 0.6 for s in starts], [e + 0.4 for e in ends], colors="#9467bd", linewidth=1.2,
                  zorder=1, label="segment levels", gid="levels")
    for k, change in enumerate(changes, 1):
        colour = _CHANGE_COLOURS.get(change.direction, _OTHER_COLOUR)
        ax.axvline(change.index + 1, color=colour, linestyle="--", linewidth=1.2, zorder=1, gid=f"changeline-{k}")
        ax.text(change.index + 1, 0.97, f" ×{change.ratio:.3g} [{change.lower:.3g}, {change.upper:.3g}] ",
                transform=ax.get_xaxis_transform(), rotation=90, va="top", fontsize=7, color=colour,
                ha="right" if change.ratio >= 1 else "left",  # beside the lower level, clear of the points
                parse_math=False, gid=f"changelabel-{k}")
    if not shown:
        ax.text(0.5, 0.5, f"no run has a {statistic}", transform=ax.transAxes, ha="center", va="center")
    ticks = [int(t) for t in MaxNLocator(nbins=_MAX_TICKS, integer=True).tick_values(1, max(len(points), 1))
             if 1 <= t <= len(points)]
    ax.set_xticks(ticks, [f"{t}\n{shown_controls(points[t - 1].short_commit()[:7])}" for t in ticks],
                  fontsize=7, parse_math=False)
    ax.set_xlim(0.3, max(len(points), 1) + 0.7)
    ax.set_xlabel("run (oldest first) and commit", fontsize=8)
    ax.set_ylabel(f"{statistic} latency (ms)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(shown_controls(entry.series.key.label()), fontsize=9, parse_math=False)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=7, loc="best")
    return fig


def _href(report: str | None, base: Path | None) -> str | None:
    """The link to a run's report: an http(s) or file URL as it is, a local path relative to ``base`` (the page's
    folder; a ``file:`` URL when there is none); None without a report or for any other scheme (``javascript:``)."""
    if not report:
        return None
    scheme = urlsplit(report).scheme.lower()
    if scheme in ("http", "https", "file"):
        return report
    if len(scheme) > 1:  # a one-letter scheme is a Windows drive
        return None
    path = Path(report).absolute()
    if base is None:
        return path.as_uri()
    return quote(Path(os.path.relpath(path, base)).as_posix())


def _svg(entry: DashboardEntry, statistic: str, urls: Sequence[str | None], prefix: str) -> str:
    """The chart as an SVG element to inline: no prolog, DOCTYPE or metadata, every id (and reference to it)
    prefixed, each point's link of class ``point``."""
    matplotlib = _matplotlib()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "edgeopt-history"}):
        fig = _draw(entry, statistic, urls, width=11.0)
        raw = io.StringIO()
        fig.savefig(raw, format="svg", metadata={"Date": None})
    svg = raw.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.S)
    ids = set(re.findall(r'\bid="([^"]+)"', svg))
    svg = re.sub(r'(\bid="|url\(#|href="#)([^")]+)',
                 lambda m: f"{m[1]}{prefix}{m[2]}" if m[2] in ids else m[0], svg)
    svg = svg.replace("<a xlink:href=", '<a class="point" xlink:href=')
    return re.sub(r'(<a class="point" xlink:href="#[^"]*") target="_blank"', r"\1", svg)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _estimate(point: SeriesPoint, statistic: str) -> str:
    value = point.value(statistic)
    if value is None:
        return "-"
    lower, upper = point.interval(statistic)
    interval = f" [{lower:#.4g}, {upper:#.4g}]" if lower is not None and upper is not None else ""
    return f"{value:#.4g}{interval}"


def _table(points: Sequence[SeriesPoint], anchors: Sequence[str], links: Sequence[str | None],
           starts: set[int]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("run", "recorded", "commit", "host", "p50 ms [95 % CI]",
                                            "p95 ms [95 % CI]", "samples", "verdict", "report"))
    rows = []
    for i, (point, anchor, link) in enumerate(zip(points, anchors, links, strict=True)):
        commit = _e(point.short_commit()) + (f" <small>{_e(point.branch)}</small>" if point.branch else "")
        host = _e(point.hostname or "-") + (f" <small>{_e(point.host_fingerprint)}</small>"
                                             if point.host_fingerprint else "")
        report = f'<a href="{_e(link)}">report</a>' if link else _e(point.report or "-")
        marked = ' class="change"' if i in starts else ""
        rows.append(f'<tr id="{anchor}"{marked}><td class="num">{i + 1}</td>'
                    f"<td>{_e(point.recorded_at)}</td><td><code>{commit}</code></td><td>{host}</td>"
                    f'<td class="num">{_e(_estimate(point, "p50"))}</td>'
                    f'<td class="num">{_e(_estimate(point, "p95"))}</td>'
                    f'<td class="num">{_e(point.samples if point.samples is not None else "-")}</td>'
                    f'<td class="v-{_e(point.verdict)}">{_e(point.verdict)}</td><td>{report}</td></tr>')
    return f'<table class="runs"><tr>{head}</tr>{"".join(rows)}</table>'


def _section(n: int, entry: DashboardEntry, statistic: str, base: Path | None) -> str:
    points = entry.series.points
    anchors = [f"k{n}-run-{i + 1}" for i in range(len(points))]
    links = [_href(p.report, base) for p in points]
    svg = _svg(entry, statistic, [link or f"#{anchor}" for link, anchor in zip(links, anchors, strict=True)],
               f"k{n}-")
    plotted = sum(1 for p in points if _finite(p.value(statistic)))
    label = entry.series.key.label()
    missing = f"; {len(points) - plotted} without a {statistic} are in the table only" if plotted < len(points) else ""
    parts = [f'<section id="key-{n}"><h2>{_e(label)}</h2>',
             f'<figure class="chart" data-key="{_e(label)}" data-points="{plotted}" '
             f'data-changes="{len(entry.changes)}">{svg}'
             f"<figcaption>{_e(statistic)} of {len(points)} runs, oldest first{_e(missing)}"
             "; a point links to its run's report (to its row below when there is none)</figcaption></figure>"]
    if entry.check is not None:
        parts.append(f'<p class="check {"alarm" if entry.check.alarm else "ok"}">{_e(entry.check.sentence)}</p>')
    changes = sorted(entry.changes, key=lambda c: c.index)
    if changes:
        parts.append('<ul class="changes">' + "".join(
            f'<li class="{_e(c.direction)}"><a href="#{anchors[c.index]}">{_e(c.sentence())}</a></li>'
            for c in changes) + "</ul>")
    parts.append(f"<details open><summary>{len(points)} runs</summary>"
                 f"{_table(points, anchors, links, {c.index for c in changes})}</details></section>")
    return "\n".join(parts)


def _index(entries: Sequence[DashboardEntry], statistic: str) -> str:
    rows = []
    for n, entry in enumerate(entries, 1):
        points = entry.series.points
        check = entry.check
        state = "-" if check is None else ("ALARM" if check.alarm else "ok")
        rows.append(f'<tr><td><a href="#key-{n}">{_e(entry.series.key.label())}</a></td>'
                    f'<td class="num">{len(points)}</td>'
                    f'<td class="num">{_e(_estimate(points[-1], statistic) if points else "-")}</td>'
                    f'<td class="num">{len(entry.changes)}</td>'
                    f'<td class="{"alarm" if check is not None and check.alarm else ""}">{state}</td></tr>')
    return (f"<table><tr><th>key</th><th>runs</th><th>newest {_e(statistic)} ms [95 % CI]</th><th>change points</th>"
            f"<th>check</th></tr>{''.join(rows)}</table>")


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;max-width:1320px;padding:0 1em;
color:#1b1b1b;line-height:1.4}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em;font-size:1.2em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .5em;
text-align:left;vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.v-pass{background:#d9f2d9}.v-fail{background:#f8d0d0}.v-inconclusive{background:#fff0c2}
.v-not-applicable,.v-invalid,.v-n\\/a{background:#e8e8e8}
tr.change td{border-top:2px dashed #b2182b}tr:target{outline:2px solid #1f77b4}
figure.chart{margin:.6em 0}figure.chart svg{width:100%;height:auto;display:block;border:1px solid #eee}
figcaption{font-size:.8em;color:#555}
p.check{padding:.4em .7em;border-radius:4px;display:inline-block}p.check.ok{background:#d9f2d9}
p.check.alarm,td.alarm{background:#f8d0d0;font-weight:600}
ul.changes{padding-left:1.2em}ul.changes li.slowdown a{color:#b2182b}ul.changes li.speedup a{color:#2166ac}
details{margin:.5em 0}summary{cursor:pointer}code{font-size:.9em}footer{margin-top:3em;color:#555;font-size:.85em}
"""

_ERROR_COUNTER = "window.__edgeoptErrors=0;window.addEventListener('error',function(){window.__edgeoptErrors++;},true);"

_SCRIPT = """
window.addEventListener('load', function () {
  var charts = document.querySelectorAll('figure.chart'), points = 0, changes = 0;
  Array.prototype.forEach.call(charts, function (chart) {
    points += chart.querySelectorAll('svg a.point').length;
    changes += chart.querySelectorAll('svg g[id*="-changeline-"]').length;
  });
  document.body.dataset.charts = String(charts.length);
  document.body.dataset.points = String(points);
  document.body.dataset.changes = String(changes);
  document.body.dataset.errors = String(window.__edgeoptErrors || 0);
});
"""


def _checked(statistic: str) -> str:
    if statistic not in STATISTICS:
        raise ConfigError(f"history: statistic {statistic!r} is none of {', '.join(STATISTICS)}")
    return statistic


def render_dashboard(entries: Sequence[DashboardEntry], *, title: str, store: str, statistic: str,
                     generated_at: str, base: Path | None = None) -> str:
    """The dashboard of ``entries`` (one chart per key, in their order) as one HTML string; report links are
    made relative to ``base`` (the page's folder) when given, else local reports are linked as ``file:`` URLs."""
    _checked(statistic)
    _matplotlib()
    sections = [_section(n, entry, statistic, base) for n, entry in enumerate(entries, 1)]
    alarms = sum(1 for entry in entries if entry.check is not None and entry.check.alarm)
    summary = (f"{len(entries)} keys, {sum(len(e.series.points) for e in entries)} runs, "
               f"{sum(len(e.changes) for e in entries)} change points, {alarms} alarms")
    return shown_controls("\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        'style-src \'unsafe-inline\'; script-src \'unsafe-inline\'">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        f"<script>{_ERROR_COUNTER}</script>",
        "</head>",
        "<body>",
        f"<header><h1>{_e(title)}</h1>",
        f"<p>store <code>{_e(store)}</code>, statistic {_e(statistic)}, generated {_e(generated_at)}: "
        f"{_e(summary)}</p>",
        _index(entries, statistic) if entries else "<p>The store holds no series.</p>",
        "</header>",
        *sections,
        "<footer>Error bars are each run's 95% interval of the statistic; point colours are the gate's verdict. "
        "A dashed line marks the first run of a new level (a change point), labelled with the ratio of the new "
        "level to the old and its 95% interval; flat lines are the segments' levels.</footer>",
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
        "",
    ]))


def write_dashboard(path: Path | str, entries: Sequence[DashboardEntry], *, title: str, store: str, statistic: str,
                    generated_at: str) -> Path:
    """Write the dashboard to ``path`` atomically, report links relative to its folder; returns ``path``."""
    from edgeopt.core.fileio import write_text_atomic

    path = Path(path)
    page = render_dashboard(entries, title=title, store=store, statistic=statistic, generated_at=generated_at,
                            base=path.absolute().parent)
    write_text_atomic(path, page)
    return path


def plot_series(entry: DashboardEntry, path: Path, *, statistic: str) -> None:
    """The chart of one key as a PNG at ``path`` (written atomically); the points' links are left out."""
    from edgeopt.core.fileio import write_bytes_atomic

    _checked(statistic)
    _matplotlib()
    fig = _draw(entry, statistic, [None] * len(entry.series.points), width=10.0)
    raw = io.BytesIO()
    fig.savefig(raw, format="png", dpi=110, facecolor="white")
    write_bytes_atomic(Path(path), raw.getvalue())
