"""The regression-history dashboard (``edgeopt history --html``) and the series plot (``--plot``).

Three synthetic series: 40 runs with two change points (a slowdown, then a partial speed-up), 5 runs without any,
and 4 runs of a model named like a script, without intervals, one without a commit, some without a report.  The page
is checked as text (self-contained, escaped, one chart and one link per point) and opened in headless Chromium
(loads without errors, window errors counted by the page and console messages, CSP violations included, logged by
Chromium; the counts the page's script finds); the series plot must be a PNG.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import BackendUnavailableError, ConfigError
from edgeopt.history.changepoints import ChangePoint, HistoryCheck
from edgeopt.history.dashboard import DashboardEntry, plot_series, render_dashboard, write_dashboard
from edgeopt.history.series import Series, SeriesKey, SeriesPoint

HOSTILE = "<script>alert(1)</script>"
START = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)


def _chromium() -> str | None:  # as tests/test_reports.py (importing it would build its whole run's imports)
    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))),
                None)


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=5000",
                  "--enable-logging=stderr", "--v=0"]  # the page's console messages on stderr
# how Chromium logs a console message (console.error/log, an uncaught error, a CSP violation) on stderr:
# [pid:tid:date:INFO:CONSOLE:1649] "boom", source: file:///.../history.html (1649)  (older: CONSOLE(1649))
CONSOLE_LINE = re.compile(r"^\[[^\]]*:CONSOLE\b[^\]]*\].*$", re.M)


def _console_messages(stderr: str) -> list[str]:
    return CONSOLE_LINE.findall(stderr)


def _points(levels: list[float], *, seed: int, runs: Path | None, intervals: bool = True,
            first_run_id: int = 1) -> tuple[SeriesPoint, ...]:
    """One point per level (ms): lognormal samples around it, p50/p95 with a rough interval, a report under ``runs``."""
    rng = np.random.default_rng(seed)
    points = []
    for i, level in enumerate(levels):
        samples = level * rng.lognormal(0.0, 0.05, size=200)
        p50, p95 = (float(v) for v in np.percentile(samples, [50, 95]))
        run_id = first_run_id + i
        points.append(SeriesPoint(
            run_id=run_id, recorded_at=(START + timedelta(hours=6 * i)).isoformat().replace("+00:00", "Z"),
            commit=f"{rng.integers(16**12):012x}{i:028x}", branch="main", hostname="ci-runner-3",
            host_fingerprint="a1b2c3d4", p50_ms=p50, p50_lower=p50 * 0.98 if intervals else None,
            p50_upper=p50 * 1.02 if intervals else None, p95_ms=p95, p95_lower=p95 * 0.96 if intervals else None,
            p95_upper=p95 * 1.05 if intervals else None, samples=len(samples), peak_rss_mb=80.0,
            fidelity_cosine=0.999, verdict="pass" if level < 12 else "fail",
            report=str(runs / f"run-{run_id}" / "report.html") if runs is not None else None))
    return tuple(points)


def _change(points: tuple[SeriesPoint, ...], index: int, before: float, after: float) -> ChangePoint:
    ratio = after / before
    return ChangePoint(index=index, run_id=points[index].run_id, commit=points[index].commit,
                       recorded_at=points[index].recorded_at, statistic="p50", before_ms=before, after_ms=after,
                       ratio=ratio, lower=ratio * 0.97, upper=ratio * 1.03, p_value=1e-6,
                       direction="slowdown" if ratio > 1 else "speedup",
                       notes=("the host fingerprint changed at this run",) if index == 30 else ())


def _entries(runs: Path) -> list[DashboardEntry]:
    """40 runs with 2 change points, 5 runs with none, 4 runs of a hostile name without intervals."""
    first = Series(SeriesKey("resnet18", "rpi5", "int8-static-minmax", "onnxruntime"),
                   _points([10.0] * 15 + [13.0] * 15 + [11.0] * 10, seed=1, runs=runs))
    changes = (_change(first.points, 15, 10.0, 13.0), _change(first.points, 30, 13.0, 11.0))
    second = Series(SeriesKey("resnet18", "jetson-orin", "fp16", "tensorrt-fp16"),
                    _points([4.0] * 5, seed=2, runs=runs, first_run_id=100))
    third_points = list(_points([7.0, 7.1, 6.9, 12.5], seed=3, runs=runs, intervals=False, first_run_id=200))
    third_points[1] = SeriesPoint(**{**third_points[1].to_dict(), "commit": None, "branch": None, "report": None})
    third_points[2] = SeriesPoint(**{**third_points[2].to_dict(), "report": "javascript:alert(2)"})
    third = Series(SeriesKey(HOSTILE, "x86-avx2", "fp32", "onnxruntime"), tuple(third_points))
    return [
        DashboardEntry(first, changes, HistoryCheck(first.key, False, None, first.points[-1], 40,
                                                    "no slowdown: the newest run is at the level since run #31")),
        DashboardEntry(second, (), None),
        DashboardEntry(third, (), HistoryCheck(third.key, True, None, third.points[-1], 4,
                                               f"ALARM {HOSTILE}: the newest run is 1.8x slower")),
    ]


POINTS = (40, 5, 4)
CHANGES = (2, 0, 0)


def _page(tmp_path: Path) -> tuple[Path, str]:
    page = write_dashboard(tmp_path / "site" / "history.html", _entries(tmp_path / "runs"), title="edgeopt history",
                           store=str(tmp_path / "history.sqlite"), statistic="p50",
                           generated_at="2025-03-12T10:00:00Z")
    return page, page.read_text(encoding="utf-8")


def _charts(text: str) -> list[tuple[dict[str, str], str]]:
    """Each ``<figure class="chart">``: its attributes and its inner HTML."""
    return [(dict(re.findall(r'([\w-]+)="([^"]*)"', attributes)), inner)
            for attributes, inner in re.findall(r'<figure class="chart"([^>]*)>(.*?)</figure>', text, re.S)]


def test_dashboard_is_self_contained_with_one_chart_and_one_link_per_point(tmp_path: Path) -> None:
    _, text = _page(tmp_path)
    assert "<link" not in text and "@import" not in text and "src=" not in text
    assert text.count("url(") == text.count("url(#") > 0  # only the SVGs' own clip paths
    hrefs = re.findall(r"""href\s*=\s*["']([^"']*)""", text)
    outside = [h for h in hrefs if not h.startswith("#")]
    assert outside and all(re.fullmatch(r"\.\./runs/run-\d+/report\.html", h) for h in outside), outside
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids)) > 100  # the charts' SVG ids are prefixed per chart: none shared
    charts = _charts(text)
    assert len(charts) == 3
    for (attributes, inner), points, changes in zip(charts, POINTS, CHANGES, strict=True):
        assert attributes["data-points"] == str(points) and attributes["data-changes"] == str(changes)
        assert inner.count("<svg") == 1 and "<?xml" not in inner and "DOCTYPE" not in inner
        assert len(re.findall(r'<a class="point" xlink:href="[^"]+"', inner)) == points
        assert len(re.findall(r'<g id="k\d-changeline-\d+"', inner)) == changes
    # every point of the first two links to its report; the third's without one (or with a javascript: one) to
    # its row of the table
    first, _, third = (inner for _, inner in charts)
    assert 'xlink:href="../runs/run-1/report.html" target="_blank"' in first
    assert re.findall(r'<a class="point" xlink:href="(#[^"]+)"', third) == ["#k3-run-2", "#k3-run-3"]
    assert 'id="k3-run-2"' in text and 'id="k3-run-3"' in text
    assert "×1.3 [1.26, 1.34]" in first and "×0.846 [0.821, 0.872]" in first  # the change points' labels
    assert "slowdown at run 16 (id 16" in text and "speedup at run 31 (id 31" in text  # ChangePoint.sentence()
    assert "the host fingerprint changed at this run" in text
    assert text.count('<p class="check alarm">') == 1 and text.count('<p class="check ok">') == 1
    assert len(re.findall(r'<tr id="k1-run-(?:16|31)" class="change">', text)) == 2
    assert len(text) < 1_500_000


def test_a_model_named_like_a_script_is_escaped(tmp_path: Path) -> None:
    _, text = _page(tmp_path)
    assert HOSTILE not in text and not re.search(r"href=[\"']javascript:", text)  # shown, not linked
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert text.count("<script") == 2  # the error counter and the counting script, nothing else
    assert 'data-key="&lt;script&gt;alert(1)&lt;/script&gt; · x86-avx2 · fp32@onnxruntime"' in text
    # the control character of a name is shown as its escape, never written raw
    entry = _entries(tmp_path)[1]
    escaped = DashboardEntry(Series(SeriesKey("evil\x1bname", "p", "fp32", "onnxruntime"), entry.series.points), (),
                             None)
    page = render_dashboard([escaped], title="t", store="s", statistic="p50", generated_at="now")
    assert "\x1b" not in page and "evil\\x1bname" in page


def test_a_statistic_that_is_not_p50_or_p95_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="p75"):
        render_dashboard(_entries(tmp_path), title="t", store="s", statistic="p75", generated_at="now")


def test_without_matplotlib_the_error_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(BackendUnavailableError, match=re.escape("pip install 'edgeopt[report]'")):
        render_dashboard(_entries(tmp_path), title="t", store="s", statistic="p50", generated_at="now")


@pytest.mark.slow
def test_dashboard_opens_in_headless_chromium_with_every_chart_and_point(tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); the page was not opened in a browser")
    from PIL import Image

    page, _ = _page(tmp_path)
    common = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = _console_messages(dom.stderr)
    assert not console, "the page logged to the console:\n" + "\n".join(console)
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body is not None, dom.stdout[:2000]
    attributes = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    assert attributes.get("data-errors") == "0", attributes
    assert attributes.get("data-charts") == "3", attributes
    assert attributes.get("data-points") == str(sum(POINTS)), attributes
    assert attributes.get("data-changes") == str(sum(CHANGES)), attributes
    charts = _charts(dom.stdout)  # as the browser parsed them
    assert len(charts) == 3
    for (_, inner), points, changes in zip(charts, POINTS, CHANGES, strict=True):
        assert len(re.findall(r"<a\b[^>]*>", inner)) == points
        assert len(re.findall(r'<g id="k\d-changeline-\d+"', inner)) == changes

    shot = tmp_path / "history.png"
    result = subprocess.run([*common, "--hide-scrollbars", "--window-size=1400,2000", f"--screenshot={shot}",
                             page.as_uri()], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    console = _console_messages(result.stderr)
    assert not console, "the page logged to the console:\n" + "\n".join(console)
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.shape[0] >= 1000 and pixels.std() > 20  # not blank: text, tables and charts
    assert np.mean(pixels < 200) > 0.02


@pytest.mark.slow
def test_console_messages_of_a_page_are_caught(tmp_path: Path) -> None:
    """The check above can fail: Chromium's log of a console.error and of a CSP violation matches CONSOLE_LINE (a
    Chromium that logged them otherwise would let a broken page pass unseen)."""
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); the page was not opened in a browser")
    page = tmp_path / "broken.html"
    page.write_text('<!doctype html><html><head><meta http-equiv="Content-Security-Policy" content="default-src '
                    "'none'; script-src 'unsafe-inline'\"></head><body><script>console.error(\"boom\")</script>"
                    '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="></body></html>', encoding="utf-8")
    result = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                             page.as_uri()], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    console = _console_messages(result.stderr)
    assert len(console) == 2, result.stderr[-4000:]
    assert '"boom", source: ' + page.as_uri() in console[0] and "Content Security Policy" in console[1], console


def test_plot_series_writes_a_png(tmp_path: Path) -> None:
    from PIL import Image

    for entry, name in zip(_entries(tmp_path / "runs"), ("changes", "plain", "hostile"), strict=True):
        target = tmp_path / f"{name}.png"
        plot_series(entry, target, statistic="p95")
        with Image.open(target) as image:
            assert image.format == "PNG" and image.size[0] >= 800 and image.size[1] >= 300
            pixels = np.asarray(image.convert("L"))
        assert pixels.std() > 10  # something is drawn
        assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary left beside it
