"""A self-contained HTML report of a run: one file, plots embedded as PNG, nothing fetched from anywhere.

Per profile: the header (whether this host is the profile, PROXY or NOT APPLICABLE; estimator, CI
method, settings), the host fingerprint and versions, the variant table (the terminal table's
columns), the trade-off plot (p50 latency vs model size, colour = accuracy or fidelity, error bars =
95 % CIs) and, per variant, the gate sentences and one figure with the latency ECDF, the histogram
(budgets as vertical lines, p50/p95 CIs shaded) and the sample timeline (block medians show drift
and throttling).  Plots use matplotlib's Agg canvas without pyplot (extra ``report``), imported only
when a report is drawn; huge sample arrays are thinned for drawing only, statistics use every sample.
A small inline script sets ``data-plots-ok`` on ``<body>`` to the number of plots the browser decoded.
Every text is HTML-escaped, and a control character (a raw ESC in a file name) is written as its escape
(``\x1b``): the page never carries one raw.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edgeopt.errors import ConfigError
from edgeopt.reports.recommendation import Recommendation, row_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from edgeopt.evaluate.fidelity import OutputFidelity
    from edgeopt.measure.results import Measurement
    from edgeopt.reports.run_data import RunData
    from edgeopt.reports.table import Row

MAX_PLOT_POINTS = 3000  # per series; the PNGs stay small whatever the sample count
DPI = 96
_LATENCY_BUDGETS = ("p50_ms", "p90_ms", "p95_ms", "p99_ms")
_CI_COLOURS = {"p50": "#1f77b4", "p95": "#d62728"}
_BUDGET_COLOUR = "#111111"


def matplotlib_missing() -> str | None:
    """None when matplotlib can be imported, else why not and what to install."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        if "initialization failed" in str(error):  # installed, but its native module failed (or a stop hit it)
            raise
        return f"matplotlib is not installed ({error}): pip install 'edgeopt[report]'"
    return None


def _figure(width: float, height: float, layout: Literal["constrained"] | None = "constrained") -> Any:
    """An Agg figure; ``layout=None`` for the per-variant figures, whose fixed margins
    (``subplots_adjust``) cost nothing where constrained layout takes about half their drawing time."""
    missing = matplotlib_missing()
    if missing:
        raise ConfigError(f"HTML report: {missing}")
    from matplotlib.figure import Figure  # Agg canvas, no pyplot, no global state

    return Figure(figsize=(width, height), dpi=DPI, layout=layout)


def _png_data_uri(figure: Any) -> str:
    """The figure as a ``data:`` URI of a palette PNG (about a third the size of the RGBA one)."""
    from PIL import Image

    raw = io.BytesIO()
    figure.savefig(raw, format="png", dpi=DPI, facecolor="white")
    raw.seek(0)
    with Image.open(raw) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _thin(n: int, limit: int = MAX_PLOT_POINTS) -> np.ndarray:
    """At most ``limit`` evenly spread indices of ``range(n)`` (all of them when n is small)."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def _latency_budgets(run: RunData, measurement: Measurement) -> list[tuple[str, float]]:
    gate = run.gate(measurement.variant_name, measurement.profile_name)
    if gate is not None:
        pairs = [(c.metric, c.limit) for c in gate.checks]
    else:
        budgets = measurement.profile.budgets
        pairs = [(str(k), float(v)) for k, v in budgets.items() if v is not None]
    return [(metric[:-3], limit) for metric, limit in pairs if metric in _LATENCY_BUDGETS]


def _view(x_sorted: np.ndarray, cis: list[tuple[float, float]],
          budgets: list[tuple[str, float]]) -> tuple[float, float]:
    """Axis range: the bulk of the samples (0.1 % to 99.9 %) and the CIs, stretched to a budget only
    when it lies within half that range of it; farther budgets are named in the legend instead."""
    n = len(x_sorted)
    lo = float(x_sorted[int(0.001 * (n - 1))])
    hi = float(x_sorted[int(math.ceil(0.999 * (n - 1)))])
    hi = max([hi, *(u for _, u in cis)])
    lo = min([lo, *(low for low, _ in cis)])
    near = 0.5 * (hi - lo) if hi > lo else 0.05 * abs(hi)
    for _, limit in budgets:  # judged against the data's own range, so one budget does not pull in another
        if x_sorted[0] - near <= limit <= hi + near:
            lo, hi = min(lo, limit), max(hi, limit)
    pad = 0.04 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1e-9)
    return lo - pad, hi + pad


def _draw_budgets(ax: Axes, budgets: list[tuple[str, float]], lo: float, hi: float, *, vertical: bool) -> None:
    """Budgets inside the axis as black lines; those outside as legend entries with an arrow."""
    for name, limit in budgets:
        if lo <= limit <= hi:
            line = ax.axvline if vertical else ax.axhline
            line(limit, color=_BUDGET_COLOUR, linewidth=1.6, linestyle="-", label=f"{name} budget {limit:g} ms")
        else:
            arrow = ("→" if limit > hi else "←") if vertical else ("↑" if limit > hi else "↓")
            ax.plot([], [], " ", label=f"{name} budget {limit:g} ms {arrow} (off the axis)")


def _shade_cis(ax: Axes, estimates: dict[str, Any]) -> None:
    for name, colour in _CI_COLOURS.items():
        est = estimates.get(name)
        if est is None:
            continue
        if est.lower is not None and est.upper is not None:
            ax.axvspan(est.lower, est.upper, color=colour, alpha=0.22, linewidth=0,
                       label=f"{name} {est.value:.4g} ms, 95% CI [{est.lower:.4g}, {est.upper:.4g}]")
            ax.axvline(est.value, color=colour, linewidth=1, linestyle="--")
        else:
            ax.axvline(est.value, color=colour, linewidth=1, linestyle="--", label=f"{name} {est.value:.4g} ms (no CI)")


def latency_figure_uri(run: RunData, measurement: Measurement) -> str:
    """ECDF | histogram | timeline of one measurement's samples, as a PNG data URI."""
    assert measurement.latency is not None
    samples = np.asarray(measurement.latency.samples_ns, dtype=np.float64) / 1e6
    x = np.sort(samples)
    n = len(x)
    summary = measurement.latency.summary()
    estimates = summary.percentiles
    cis = [(e.lower, e.upper) for k, e in estimates.items()
           if k in _CI_COLOURS and e.lower is not None and e.upper is not None]
    budgets = _latency_budgets(run, measurement)
    lo, hi = _view(x, cis, budgets)  # type: ignore[arg-type]
    outside = int(np.sum((x < lo) | (x > hi)))
    fig = _figure(13.0, 3.7, layout=None)
    ecdf, hist, timeline = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.25]})
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.14, top=0.91, wspace=0.22)
    # ECDF: exact at the kept ranks
    keep = _thin(n)
    ecdf.step(x[keep], (keep + 1) / n, where="post", color="#333333", linewidth=1.2)
    _shade_cis(ecdf, estimates)
    _draw_budgets(ecdf, budgets, lo, hi, vertical=True)
    ecdf.set(xlim=(lo, hi), ylim=(0, 1.01), xlabel="latency (ms)", ylabel="share of calls ≤ x",
             title=f"ECDF (n = {n})")
    ecdf.grid(alpha=0.3)
    ecdf.legend(fontsize=7, loc="best")
    # histogram over the view range, from every sample
    bins = int(min(80, max(10, math.sqrt(n))))
    hist.hist(np.clip(x, lo, hi), bins=bins, range=(lo, hi), color="#7f7f7f", edgecolor="white", linewidth=0.3)
    _shade_cis(hist, estimates)
    _draw_budgets(hist, budgets, lo, hi, vertical=True)
    clipped = f"; {outside} outside the axis, drawn at its ends" if outside else ""
    hist.set(xlim=(lo, hi), xlabel="latency (ms)", ylabel="calls", title=f"histogram{clipped}")
    hist.title.set_fontsize(9 if outside else 10)
    # timeline: sample index vs latency, thinned, with block medians
    idx = _thin(n)
    timeline.plot(idx, np.clip(samples[idx], lo, hi), ".", markersize=2, color="#7f7f7f", alpha=0.6,
                  label="calls" + (" (thinned)" if len(idx) < n else ""))
    blocks = int(min(40, max(1, n // 25)))
    edges = np.linspace(0, n, blocks + 1).round().astype(np.int64)
    medians = [float(np.median(samples[a:b])) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    centres = [(a + b - 1) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    timeline.plot(centres, medians, "-o", color="#ff7f0e", markersize=3, linewidth=1.5,
                  label=f"block medians ({blocks} blocks)")
    _draw_budgets(timeline, budgets, lo, hi, vertical=False)
    timeline.set(ylim=(lo, hi), xlim=(0, max(n - 1, 1)), xlabel="call index (timed loop, in order)",
                 ylabel="latency (ms)", title=f"timeline (stop: {measurement.latency.stop_reason})")
    timeline.grid(alpha=0.3)
    timeline.legend(fontsize=7, loc="best")
    return _png_data_uri(fig)


def _worst_headline(fidelity: tuple[OutputFidelity, ...]) -> float | None:
    """The lowest most-meaningful figure (agreement or cosine) across a row's outputs, None without one."""
    figures = [h[1] for entry in fidelity if (h := entry.headline()) is not None]
    return min(figures, key=lambda v: (not math.isnan(v), v)) if figures else None  # NaN is the worst


def tradeoff_figure_uri(run: RunData, profile: str) -> str | None:
    """p50 latency vs model size of every measured variant of ``profile`` (None when fewer than one)."""
    rows = [r for r in run.rows_for(profile) if r.status == "ok" and r.p50_ms and r.size_mb]
    if not rows:
        return None
    accuracy = all(r.accuracy for r in rows)
    worst_figure = [_worst_headline(r.fidelity) for r in rows]
    fidelity = all(v is not None and math.isfinite(v) for v in worst_figure)  # a NaN has no colour: none then
    fig = _figure(7.5, 4.6)
    ax = fig.subplots()
    p50_ms = [r.p50_ms or {} for r in rows]  # every row kept has its p50 and size: "or" only narrows the type
    sizes = np.array([float(r.size_mb or 0.0) for r in rows])
    p50 = np.array([float(e["value"]) for e in p50_ms])
    low = np.array([float(e["lower"] if e["lower"] is not None else e["value"]) for e in p50_ms])
    high = np.array([float(e["upper"] if e["upper"] is not None else e["value"]) for e in p50_ms])
    ax.errorbar(sizes, p50, yerr=[p50 - low, high - p50], fmt="none", ecolor="#555555", capsize=4, linewidth=1)
    if accuracy or fidelity:
        if accuracy:
            colour = np.array([100 * r.accuracy.value for r in rows if r.accuracy is not None])
            label = "top-1 accuracy (%)"
        else:
            colour = np.array([float(v or 0.0) for v in worst_figure])
            label = "fidelity vs fp32 (worst output: agreement or cosine)"
        vmin, vmax = float(colour.min()), float(colour.max())
        if vmax - vmin < 1e-9:  # one value for every variant: say it instead of a one-colour colour bar
            ax.scatter(sizes, p50, s=90, zorder=3, color="#21918c", edgecolors="black", linewidths=0.6,
                       label=f"{label}: {vmin:.4g} for every variant")
        else:
            points = ax.scatter(sizes, p50, c=colour, cmap="viridis", vmin=vmin, vmax=vmax, s=90, zorder=3,
                                edgecolors="black", linewidths=0.6)
            bar = fig.colorbar(points, ax=ax, label=label)
            bar.formatter.set_useOffset(False)  # type: ignore[attr-defined]
            bar.update_ticks()
    else:
        ax.scatter(sizes, p50, s=90, zorder=3, color="#1f77b4", edgecolors="black", linewidths=0.6)
    first = run.first_measurement(profile)
    budgets = _latency_budgets(run, first) if first is not None and first.ok else []
    top = float(high.max()) * 1.15
    for name, limit in budgets:
        if name != "p50":
            continue
        if limit <= top * 1.5:
            ax.axhline(limit, color=_BUDGET_COLOUR, linewidth=1.4, label=f"p50 budget {limit:g} ms")
            top = max(top, limit * 1.05)
        else:
            ax.plot([], [], " ", label=f"p50 budget {limit:g} ms ↑ (off the axis)")
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=8, loc="best")
    ax.set(xlabel="model size (MiB)", ylabel="p50 latency (ms), 95% CI", ylim=(0, top),
           xlim=(0, float(sizes.max()) * 1.2), title=f"variant trade-off on {profile}")
    _label_points(ax, [r.variant for r in rows], sizes, p50, float(sizes.max()) * 1.2, top)
    ax.grid(alpha=0.3)
    return _png_data_uri(fig)


def pareto_figure_uri(run: RunData, profile: str, recommended: str | None) -> str | None:
    """p50 latency vs fidelity (the worst output's agreement or cosine vs fp32) of every timed row of ``profile``:
    rows that pass every budget filled, the others hollow, the Pareto front (no row both faster and more
    faithful) joined, the recommended row (``variant@runtime``) starred.  None without two rows that have both."""
    rows = [r for r in run.rows_for(profile) if r.status == "ok" and r.p50_ms]
    fidelity = [1.0 if r.variant.split("@")[0] == "fp32" and not r.fidelity else _worst_headline(r.fidelity)
                for r in rows]
    kept = [(r, float(f)) for r, f in zip(rows, fidelity, strict=True) if f is not None and math.isfinite(f)]
    if len(kept) < 2:
        return None
    fig = _figure(7.5, 4.6)
    ax = fig.subplots()
    xs = np.array([f for _, f in kept])
    p50 = np.array([float((r.p50_ms or {})["value"]) for r, _ in kept])
    passed = np.array([r.verdict == "pass" for r, _ in kept])
    ax.scatter(xs[passed], p50[passed], s=80, zorder=3, color="#21918c", edgecolors="black", linewidths=0.6,
               label="passes every budget")
    ax.scatter(xs[~passed], p50[~passed], s=80, zorder=3, facecolors="none", edgecolors="#b2182b", linewidths=1.2,
               label="fails or undecided")
    order = np.lexsort((p50, -xs))  # most faithful first, then fastest
    front, best = [], math.inf
    for index in order:
        if p50[index] < best:
            front.append(index)
            best = p50[index]
    ax.plot(xs[front], p50[front], color="#555555", linewidth=1, linestyle="--", zorder=2, label="Pareto front")
    names = [row_label(r) for r, _ in kept]
    if recommended in names:
        i = names.index(recommended)
        ax.scatter([xs[i]], [p50[i]], marker="*", s=380, zorder=4, color="#fde725", edgecolors="black",
                   linewidths=0.8, label=f"recommended: {recommended}")
    ax.legend(fontsize=8, loc="best")
    x_low = float(xs.min())
    span = max(1.0 - x_low, 0.01)
    ax.ticklabel_format(axis="x", useOffset=False)
    ax.set(xlabel="fidelity vs fp32 (worst output: agreement or cosine)", ylabel="p50 latency (ms)",
           xlim=(x_low - 0.1 * span, 1.0 + 0.05 * span), ylim=(0, float(p50.max()) * 1.2),
           title=f"latency vs fidelity on {profile}")
    _label_points(ax, names, xs, p50, 1.15 * span, float(p50.max()) * 1.2)
    ax.grid(alpha=0.3)
    return _png_data_uri(fig)


def _label_points(ax: Axes, names: list[str], xs: np.ndarray, ys: np.ndarray, x_span: float, y_span: float) -> None:
    """Name each point; labels of points close together are stacked instead of drawn over each other."""
    placed: list[tuple[float, float]] = []
    for name, x, y in sorted(zip(names, xs, ys, strict=True), key=lambda item: (item[1], item[2])):
        stack = sum(1 for px, py in placed if abs(px - x) < 0.08 * x_span and abs(py - y) < 0.06 * y_span)
        placed.append((float(x), float(y)))
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(8, 4 + 11 * stack), fontsize=8,
                    arrowprops={"arrowstyle": "-", "color": "#999999", "linewidth": 0.5} if stack else None)


# ------------------------------------------------------------------------------------------------ HTML

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;max-width:1320px;padding:0 1em;
color:#1b1b1b;line-height:1.4}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .5em;
text-align:left;vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.v-pass{background:#d9f2d9}.v-fail{background:#f8d0d0}.v-inconclusive{background:#fff0c2}
.v-not-applicable,.v-invalid,.v-n\\/a{background:#e8e8e8}.v-error{background:#f1b5b5}
.verdict{font-size:1.15em;font-weight:600;padding:.4em .7em;display:inline-block;border-radius:4px}
.label{font-size:.7em;padding:.15em .5em;border-radius:3px;vertical-align:middle;margin-left:.4em}
.label.proxy{background:#ffd28a}.label.na{background:#d0d0d0}.label.target{background:#bfe6bf}
img.plot{max-width:100%;height:auto;display:block;margin:.4em 0;border:1px solid #eee}
ul.checks{padding-left:1.2em}ul.checks li{margin:.15em 0;padding:.05em .3em}
article{border-top:1px solid #eee;margin-top:1.2em}details{margin:.5em 0}summary{cursor:pointer}
code{font-size:.9em}footer{margin-top:3em;color:#555;font-size:.85em}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var plots = Array.prototype.slice.call(document.querySelectorAll('img.plot'));
  var ok = plots.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.plotsOk = String(ok);
  document.body.dataset.errors = String(window.__edgeoptErrors || 0);
});
"""

_ERROR_COUNTER = "window.__edgeoptErrors=0;window.addEventListener('error',function(){window.__edgeoptErrors++;},true);"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _kv_table(items: list[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items if v not in (None, "", [], {}))
    return f"<table>{rows}</table>"


def _variant_table(rows: list[Row]) -> str:
    from edgeopt.reports.table import HEADERS, _cells

    head = "".join(f"<th>{_e(h)}</th>" for h in HEADERS)
    body = []
    for row in rows:
        cells = _cells(row)
        verdict = row.verdict
        tds = [f'<td class="num">{_e(c)}</td>' if 2 <= i <= 7 else f"<td>{_e(c)}</td>"
               for i, c in enumerate(cells[:-1])]
        tds.append(f'<td class="v-{_e(verdict)}">{_e(cells[-1])}</td>')
        body.append(f"<tr>{''.join(tds)}</tr>")
    return f'<table class="variants"><tr>{head}</tr>{"".join(body)}</table>'


def _robustness_table(rows: list[Row]) -> str:
    """The robustness table (metric under each input shift, paired change vs fp32), or "" without shifts."""
    from edgeopt.reports.table import render_robustness

    text = render_robustness(rows, tablefmt="html")
    if not text:
        return ""
    title, _, table = text.partition("\n")
    table = table.replace("<table>", '<table class="variants">', 1)
    return f"<h3>robustness under input shift</h3><p>{_e(title)}</p>{table}"


def _label(measurement: Measurement | None) -> str:
    if measurement is None:
        return ""
    if measurement.host_matches:
        return '<span class="label target">this host is the profile</span>'
    if measurement.proxy:
        return '<span class="label proxy">PROXY</span>'
    return '<span class="label na">NOT APPLICABLE</span>'


def _measurement_details(m: Measurement) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = [("created", m.created_at), ("commit", m.commit),
                                    ("providers active", ", ".join(m.providers_active)),
                                    ("load (ms)", None if m.load_ms is None else f"{m.load_ms:.1f}"),
                                    ("first inference (ms)",
                                     None if m.first_inference_ms is None else f"{m.first_inference_ms:.2f}")]
    if m.latency is not None:
        s = m.latency.summary()
        items += [("samples", s.n), ("stop reason", m.latency.stop_reason),
                  ("mean / std (ms)", f"{s.mean:.4g} / {s.std:.3g} (cv {s.cv:.3f})"),
                  ("min / max (ms)", f"{s.min:.4g} / {s.max:.4g}"),
                  ("throughput (sequential calls/s)", f"{m.latency.throughput_per_s:.1f}")]
        for name in ("p90", "p99"):
            e = s.percentiles.get(name)
            if e is not None:
                ci = f"[{e.lower:.4g}, {e.upper:.4g}]" if e.lower is not None and e.upper is not None else "(no CI)"
                items.append((f"{name} (ms)", f"{e.value:.4g} {ci}"))
    if m.memory:
        items.append(("memory (MiB)", f"peak RSS {m.memory.peak_rss_mb:.1f}, "
                                      f"model added {m.memory.model_added_mb or 0:.1f}"))
    return items


def _profile_section(run: RunData, profile: str, plots: list[str]) -> str:
    from edgeopt.reports.run_data import profile_header

    first = run.first_measurement(profile)
    parts = [f"<section><h2>profile <code>{_e(profile)}</code>{_label(first)}</h2>",
             "<ul>" + "".join(f"<li>{_e(line)}</li>" for line in profile_header(run, profile)) + "</ul>"]
    if first is not None:
        host = first.host
        fingerprint = [(k, ", ".join(map(str, v)) if isinstance(v, list) and k != "cpu_flags" else v)
                       for k, v in sorted(host.items()) if k != "cpu_flags"]
        fingerprint.append(("cpu_flags", f"{len(host.get('cpu_flags') or [])} flags"))
        reasons = [("identity", "; ".join(first.mismatch_reasons))]
        versions = [(f"version {k}", v) for k, v in sorted(first.versions.items())]
        settings = [(f"session {k}", v) for k, v in sorted(first.session.items())]
        settings += [(f"bench {k}", v) for k, v in sorted(first.bench.items())]
        budgets = first.profile.budgets
        settings += [(f"budget {k}", v) for k, v in budgets.items()]
        if first.latency is not None:
            s = first.latency.summary()
            settings += [("estimator", s.estimator), ("CI method", f"{s.ci_method}, {s.confidence:.0%}")]
        parts.append("<details><summary>host fingerprint, versions and settings</summary>"
                     f"{_kv_table(fingerprint + reasons + versions + settings)}</details>")
    rows = run.rows_for(profile)
    parts.append(_variant_table(rows))
    parts.append(_robustness_table(rows))
    recommendation = next((r for r in run.summary.recommendations if r.get("profile") == profile), None)
    if recommendation is not None:
        parts.append(f'<p class="recommendation"><b>{_e(recommendation.get("line", ""))}</b></p>')
        chosen = Recommendation.from_dict(recommendation).label if recommendation.get("variant") else None
        pareto = pareto_figure_uri(run, profile, chosen)
        if pareto is not None:
            plots.append(pareto)
            parts.append(f'<h3>latency vs fidelity</h3><img class="plot" alt="p50 latency vs fidelity on '
                         f'{_e(profile)}, the Pareto front and the recommended row" src="{pareto}">')
    tradeoff = tradeoff_figure_uri(run, profile)
    if tradeoff is not None:
        plots.append(tradeoff)
        parts.append(f'<h3>variant trade-off</h3><img class="plot" alt="p50 latency vs model size on {_e(profile)}" '
                     f'src="{tradeoff}">')
    for row in rows:
        variant = row.variant
        m = run.measurements.get((variant, profile))
        verdict = row.verdict
        shown = ("PROXY " if row.proxy else "") + verdict
        parts.append(f'<article><h3><code>{_e(variant)}</code> on <code>{_e(profile)}</code>: '
                     f'<span class="v-{_e(verdict)}">{_e(shown)}</span></h3>')
        gate = run.gate(variant, profile)
        checks = gate.checks if gate is not None else ()
        invalid = gate.invalid_reasons if gate is not None else ()
        if invalid:
            parts.append('<ul class="checks">' + "".join(
                f'<li class="v-invalid"><b>invalid measurement</b>: {_e(r)}</li>' for r in invalid) + "</ul>")
        if row.stability:
            parts.append(f"<p>stability: {_e(row.stability)}</p>")
        if checks:
            parts.append('<ul class="checks">' + "".join(
                f'<li class="v-{_e(c.verdict.value)}"><b>{_e(c.verdict.value)}</b>: {_e(c.sentence)}</li>'
                for c in checks) + "</ul>")
        if row.failure:
            parts.append(f'<p class="v-error">error: {_e(row.failure)}</p>')
        problems = row.problems()  # outputs or metric scores holding NaN/Inf
        if problems:
            parts.append('<ul class="checks">' + "".join(
                f'<li class="v-fail"><b>not a number</b>: {_e(p)}</li>' for p in problems) + "</ul>")
        if row.notes():  # outputs not compared with fp32, and why
            parts.append('<ul class="checks">' + "".join(
                f"<li><b>not compared</b>: {_e(n)}</li>" for n in row.notes()) + "</ul>")
        if m is not None and m.failure is not None and m.failure.stderr_tail:
            parts.append(f"<details><summary>worker output</summary><pre>{_e(m.failure.stderr_tail)}</pre></details>")
        if m is not None and m.latency is not None and m.latency.samples_ns:
            uri = latency_figure_uri(run, m)
            plots.append(uri)
            parts.append(f'<img class="plot" alt="latency ECDF, histogram and timeline of {_e(variant)}" src="{uri}">')
        if m is not None:
            parts.append(f"<details><summary>measurement details</summary>{_kv_table(_measurement_details(m))}"
                         "</details>")
        parts.append("</article>")
    parts.append("</section>")
    return "\n".join(parts)


def render_html(run: RunData) -> str:
    """The whole report as one HTML string (plots embedded; no external resources)."""
    if matplotlib_missing():
        raise ConfigError(f"HTML report: {matplotlib_missing()}")
    summary = run.summary
    plots: list[str] = []
    sections = [_profile_section(run, p, plots) for p in run.profiles]
    if run.unmade:
        items = "".join(f"<li><code>{_e(r.variant)}</code>: {_e(r.failure)}</li>" for r in run.unmade)
        sections.append(f'<section><h2>variants that could not be made</h2><ul class="checks">{items}</ul></section>')
    exit_code = summary.exit_code
    verdict_class = {0: "pass", 1: "fail", 5: "inconclusive"}.get(exit_code, "error")
    if exit_code == 0 and "NOT APPLICABLE" in summary.verdict:
        verdict_class = "not-applicable"
    calibration = summary.calibration or {}
    run_items = [("model", summary.model), ("model file", summary.model_path),
                 ("calibration", f"{calibration.get('name')} ({calibration.get('count')} samples, "
                                 f"sha256 {str(calibration.get('content_hash'))[:12]})" if calibration else None),
                 ("profiles", ", ".join(run.profiles)), ("run folder", run.directory)]
    from edgeopt.core.stats import CI_METHOD, ESTIMATOR
    from edgeopt.reports.run_data import shown_controls

    return shown_controls("\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        'style-src \'unsafe-inline\'; script-src \'unsafe-inline\'">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>edgeopt report: {_e(summary.model)}</title>",
        f"<style>{_CSS}</style>",
        f"<script>{_ERROR_COUNTER}</script>",
        "</head>",
        f'<body data-plots="{len(plots)}">',
        "<header><h1>edgeopt report</h1>",
        f'<p class="verdict v-{verdict_class}">{_e(summary.verdict)}</p>',
        _kv_table(run_items),
        "</header>",
        *sections,
        f"<footer>Latency percentiles: {_e(ESTIMATOR)}, 95% CI {_e(CI_METHOD)}; shaded bands are the p50 and "
        "p95 CIs, black lines the budgets. Speed-up intervals are conservative (two 95% CIs). A budget is "
        "pass only when its whole CI is at or under it, fail when wholly over, inconclusive otherwise. "
        "Plots are thinned for drawing; every statistic uses every sample.</footer>",
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
        "",
    ]))  # a control character in a name (a raw ESC) is shown as its escape, never written raw


def write_html(run: RunData, path: Path) -> Path:
    """Write the HTML report of ``run`` to ``path`` atomically; returns ``path``."""
    from edgeopt.core.fileio import write_text_atomic

    path = Path(path)
    write_text_atomic(path, render_html(run))
    return path
