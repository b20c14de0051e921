"""``edgeopt history`` and ``--history`` end to end on real runs, and issue 25's acceptance: a 40-run history with
a 2 %-per-run creep from run 25 (real measurement documents, raw samples included) that ``compare`` passes at
every neighbouring step and ``history --check`` flags by run 30, while a flat noisy history raises no alarm."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sqlalchemy", reason="extra 'history' (SQLAlchemy, Alembic) is not installed")
pytest.importorskip("ruptures", reason="extra 'history' (ruptures) is not installed")

from edgeopt.evaluate.compare import compare_paths  # noqa: E402
from edgeopt.history.changepoints import check_newest  # noqa: E402
from edgeopt.history.collect import record_from_measurements  # noqa: E402
from edgeopt.history.store import HistoryStore  # noqa: E402
from edgeopt.measure.results import Latency, Measurement  # noqa: E402
from tests import zoo  # noqa: E402
from tests.profiles import write_profile  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
COMMIT = "1f" * 20


def edgeopt(*args: object, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "GITHUB_SHA": COMMIT, "GITHUB_REF_NAME": "feature/x", **(env or {})}
    environment.pop("EDGEOPT_HISTORY", None)
    return subprocess.run([sys.executable, "-m", "edgeopt", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=environment)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model, a fast profile, one `run` and one `profile`, both stored with --history."""
    base = tmp_path_factory.mktemp("history")
    zoo.tiny_conv_model(base / "tiny.onnx")
    write_profile(base, "fast", max_seconds=0.2, worker_timeout_s=60)
    done = edgeopt("run", base / "tiny.onnx", "--profile", base / "fast.yaml", "--out", base / "run1", "--variant",
                   "fp32", "--variant", "int8-dynamic", "--history", base / "h.sqlite")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "history: stored as run 1 in" in done.stderr and "(2 row(s))" in done.stderr
    done = edgeopt("profile", base / "tiny.onnx", "--profile", base / "fast.yaml", "--out", base / "prof",
                   "--history", base / "h.sqlite")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "history: stored as run 2" in done.stderr
    return base


def test_run_and_profile_rows_are_stored_with_their_revision(runs: Path) -> None:
    done = edgeopt("history", "--store", runs / "h.sqlite", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(done.stdout)
    keys = {(s["key"]["model"], s["key"]["variant"]): s for s in document["series"]}
    assert set(keys) == {("tiny.onnx", "fp32"), ("tiny.onnx", "int8-dynamic"), ("tiny.onnx", "as-is")}
    fp32 = keys[("tiny.onnx", "fp32")]["points"]
    assert len(fp32) == 1 and len(keys[("tiny.onnx", "as-is")]["points"]) == 1  # profile: the file as it is
    summary = json.loads((runs / "run1" / "summary.json").read_text())
    measurement = json.loads((runs / "run1" / "measurements" / "fp32__fast.json").read_text())
    first = fp32[0]
    assert summary["revision"] == {"commit": COMMIT, "branch": "feature/x", "dirty": None, "source": "GITHUB_SHA"}
    assert (first["commit"], first["branch"]) == (COMMIT, "feature/x")
    assert first["p50_ms"] == measurement["latency"]["summary_ms"]["percentiles"]["p50"]["value"]
    assert first["report"] == str((runs / "run1" / "report.html").resolve())
    assert first["verdict"] == "pass" and first["host_fingerprint"]
    text = edgeopt("history", "--store", runs / "h.sqlite", "--variant", "fp32")
    assert text.returncode == 0 and "tiny.onnx · fast · fp32@onnxruntime: 1 run(s)" in text.stdout
    assert "too few runs" in text.stdout.lower() and "1 series, 0 slowdown alarm(s)" in text.stdout


def test_import_of_a_stored_run_adds_nothing(runs: Path) -> None:
    done = edgeopt("history", "import", runs / "run1", runs / "prof", "--store", runs / "h.sqlite")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("already stored") == 2 and "0 new run(s) of 2" in done.stdout


def test_html_and_plot(runs: Path, tmp_path: Path) -> None:
    page = tmp_path / "dash" / "index.html"
    page.parent.mkdir()
    done = edgeopt("history", "--store", runs / "h.sqlite", "--html", page)
    assert done.returncode == 0, done.stderr[-3000:]
    text = page.read_text()
    assert text.count('<figure class="chart"') == 3 and "../" in text  # links to the run's report, relative
    done = edgeopt("history", "--store", runs / "h.sqlite", "--plot", tmp_path / "s.png")
    assert done.returncode == 2 and "--plot draws one series and the filters keep 3" in done.stderr
    done = edgeopt("history", "--store", runs / "h.sqlite", "--variant", "int8-dynamic", "--plot", tmp_path / "s.png")
    assert done.returncode == 0 and (tmp_path / "s.png").read_bytes().startswith(b"\x89PNG")


def test_a_foreign_store_is_refused_before_anything_is_measured(runs: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "app.sqlite"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    connection.close()
    done = edgeopt("run", runs / "tiny.onnx", "--profile", runs / "fast.yaml", "--out", tmp_path / "out",
                   "--variant", "fp32", "--history", foreign)
    assert done.returncode == 3 and f"history store {foreign}: a database of another application" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out" / "measurements").exists()
    done = edgeopt("history", "--store", tmp_path / "none.sqlite")
    assert done.returncode == 3 and "no such file" in done.stderr
    done = edgeopt("history", "--store", runs / "h.sqlite", "--model", "nope.onnx")
    assert done.returncode == 3 and "no stored results for model 'nope.onnx' (2 run(s) stored)" in done.stderr


# ------------------------------------------------------------------------------------------ acceptance


def _series_files(runs: Path, folder: Path, levels: np.ndarray, seed: int) -> list[Path]:
    """One real measurement document per run: the tiny model's fp32 measurement with new raw samples (lognormal,
    cv 4 %, 1000 per run) around each run's level, an hour apart."""
    template = Measurement.load(runs / "run1" / "measurements" / "fp32__fast.json")
    rng = np.random.default_rng(seed)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    folder.mkdir()
    paths = []
    for i, level in enumerate(levels):
        samples = (level * rng.lognormal(0.0, 0.04, 1000) * 1e6).astype(np.int64).tolist()
        latency = Latency.from_samples(samples, "max_iterations", int(sum(samples)), 0.95)
        created = (start + timedelta(hours=i)).isoformat(timespec="seconds")
        path = folder / f"run{i + 1:02d}.json"
        template.model_copy(update={"latency": latency, "created_at": created}).save(path)
        paths.append(path)
    return paths


def _store(paths: list[Path], location: Path) -> None:
    with HistoryStore(location) as store:
        for i, path in enumerate(paths):
            store.append(record_from_measurements([path], {"commit": f"{i + 1:02d}" + "c" * 38, "branch": "main"}))


def _levels(seed: int, creep_from: int | None) -> np.ndarray:
    noise = np.random.default_rng(1000 + seed).lognormal(0.0, 0.01, 40)  # 1 % run-to-run level noise
    levels = 2.0 * noise
    if creep_from is not None:
        steps = np.clip(np.arange(1, 41) - creep_from + 1, 0, None)  # run 25 is 2 % slower, run 26 4 %...
        levels *= 1.02 ** steps
    return levels


def test_a_creep_every_step_of_which_compare_passes_is_flagged_by_run_30(runs: Path, tmp_path: Path) -> None:
    paths = _series_files(runs, tmp_path / "creep", _levels(0, creep_from=25), seed=0)
    for before, after in zip(paths, paths[1:], strict=False):
        comparison = compare_paths(before, after)
        assert comparison.exit_code == 0, (before.name, after.name, comparison.render())
    done = edgeopt("compare", paths[28], paths[29])  # run 29 -> 30 on the command line, too
    assert done.returncode == 0, done.stdout + done.stderr
    _store(paths, tmp_path / "all.sqlite")
    with HistoryStore(tmp_path / "all.sqlite", create=False) as store:
        series = store.series(store.keys()[0])
    alarms = [check_newest(type(series)(series.key, series.points[:k])) for k in range(1, 41)]
    assert not any(check.alarm for check in alarms[:24]), [c.sentence for c in alarms[:24] if c.alarm]
    first = next(k for k, check in enumerate(alarms, 1) if check.alarm)
    assert 25 <= first <= 30, [c.sentence for c in alarms]
    change = alarms[first - 1].change
    assert change is not None and 25 <= change.index + 1 <= 28 and change.lower > 1.0
    assert all(check.alarm for check in alarms[first - 1:]), "the alarm stays while the creep goes on"

    _store(paths[:first], tmp_path / "first.sqlite")  # the CI job of that run
    done = edgeopt("history", "--store", tmp_path / "first.sqlite", "--check")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ALARM: " in done.stdout and change.commit is not None and change.commit[:10] in done.stdout
    _store(paths[:24], tmp_path / "before.sqlite")
    done = edgeopt("history", "--store", tmp_path / "before.sqlite", "--check")
    assert done.returncode == 0 and "0 slowdown alarm(s)" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_flat_noisy_history_raises_no_alarm(runs: Path, tmp_path: Path, seed: int) -> None:
    paths = _series_files(runs, tmp_path / "flat", _levels(seed, creep_from=None), seed=seed)
    _store(paths, tmp_path / "flat.sqlite")
    with HistoryStore(tmp_path / "flat.sqlite", create=False) as store:
        series = store.series(store.keys()[0])
    checks = [check_newest(type(series)(series.key, series.points[:k])) for k in range(1, 41)]
    assert not any(check.alarm for check in checks), [c.sentence for c in checks if c.alarm]
    done = edgeopt("history", "--store", tmp_path / "flat.sqlite", "--check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_since_accepts_a_slowdown_as_the_new_normal(runs: Path, tmp_path: Path) -> None:
    paths = _series_files(runs, tmp_path / "creep", _levels(4, creep_from=25), seed=4)
    _store(paths[:32], tmp_path / "h.sqlite")
    assert edgeopt("history", "--store", tmp_path / "h.sqlite", "--check").returncode == 1
    accepted = edgeopt("history", "--store", tmp_path / "h.sqlite", "--check", "--since", "25cc")
    assert accepted.returncode == 0 and "8 run(s)" in accepted.stdout, accepted.stdout + accepted.stderr
    dated = edgeopt("history", "--store", tmp_path / "h.sqlite", "--since", "2026-11-02T00:00:00", "--json")
    assert len(json.loads(dated.stdout)["series"][0]["points"]) == 8


def test_ab_stores_its_candidate_and_a_tree_of_old_runs_imports_once(runs: Path, tmp_path: Path) -> None:
    store = tmp_path / "ab.sqlite"
    done = edgeopt("ab", runs / "tiny.onnx", runs / "tiny.onnx", "--profile", runs / "fast.yaml", "--out",
                   tmp_path / "ab", "--max-seconds", "1", "--history", store)
    assert done.returncode in (0, 5), done.stdout + done.stderr
    assert "history: stored as run 1" in done.stderr and "(1 row(s))" in done.stderr
    listed = json.loads(edgeopt("history", "--store", store, "--json").stdout)
    [series] = listed["series"]
    assert series["key"] == {"model": "tiny.onnx", "profile": "fast", "variant": "as-is", "runtime": "onnxruntime"}
    assert series["points"][0]["commit"] == COMMIT and series["points"][0]["samples"] > 0
    tree = tmp_path / "artifacts"  # what a CI keeps: run folders and result files at any depth
    (tree / "job-1").mkdir(parents=True)
    for name in ("run1", "prof"):
        subprocess.run(["cp", "-r", str(runs / name), str(tree / "job-1" / name)], check=True)
    subprocess.run(["cp", "-r", str(tmp_path / "ab"), str(tree / "ab")], check=True)
    done = edgeopt("history", "import", tree, "--store", store, "--commit", "abc123", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    imported = json.loads(done.stdout)
    assert [r["added"] for r in imported["runs"]] == [False, True, True]  # the ab run was stored by the command
    again = json.loads(edgeopt("history", "import", tree, "--store", store, "--json").stdout)
    assert again["added"] == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    done = edgeopt("history", "import", empty, "--store", store)
    assert done.returncode == 3 and "no edgeopt run folder (summary.json), measurement or ab file in it" in done.stderr


def test_a_repeated_run_adds_no_second_point_for_a_reused_measurement(runs: Path, tmp_path: Path) -> None:
    store, out = tmp_path / "re.sqlite", tmp_path / "out"
    args = ("run", runs / "tiny.onnx", "--profile", runs / "fast.yaml", "--out", out, "--variant", "fp32",
            "--history", store)
    first = edgeopt(*args)
    assert first.returncode == 0 and "history: stored as run 1" in first.stderr, first.stderr[-2000:]
    again = edgeopt(*args)  # resumes: the measurement is reused, summary.json written anew
    assert again.returncode == 0 and "history: already stored as run 1" in again.stderr, again.stderr[-2000:]
    [series] = json.loads(edgeopt("history", "--store", store, "--json").stdout)["series"]
    measurement = json.loads((out / "measurements" / "fp32__fast.json").read_text())
    assert len(series["points"]) == 1 and series["points"][0]["recorded_at"] == measurement["created_at"]


def test_a_profile_of_two_files_imports_as_the_run_it_stored(runs: Path, tmp_path: Path) -> None:
    zoo.tiny_conv_model(tmp_path / "b_model.onnx")
    zoo.tiny_conv_model(tmp_path / "a_model.onnx")
    store = tmp_path / "p.sqlite"
    done = edgeopt("profile", tmp_path / "b_model.onnx", tmp_path / "a_model.onnx", "--profile", runs / "fast.yaml",
                   "--out", tmp_path / "prof", "--history", store)
    assert done.returncode == 0 and "(2 row(s))" in done.stderr, done.stderr[-2000:]
    again = edgeopt("history", "import", tmp_path / "prof", "--store", store)
    assert again.returncode == 0 and "0 new run(s) of 1" in again.stdout, again.stdout + again.stderr


def test_filters_that_keep_nothing_are_exit_3_and_since_reads_times(runs: Path, tmp_path: Path) -> None:
    store = runs / "h.sqlite"
    for extra in (("--since", "deadbeef"), ("--since", "2030-01-01"), ("--branch", "nosuch"),
                  ("--host-fingerprint", "000000000000")):
        done = edgeopt("history", "--store", store, "--check", *extra)
        assert done.returncode == 3 and "no stored results for" in done.stderr, (extra, done.stdout, done.stderr)
    done = edgeopt("history", "--store", store, "--since", "2026-13-45")
    assert done.returncode == 2 and "--since '2026-13-45': not a commit nor an ISO 8601 date" in done.stderr
    listed = json.loads(edgeopt("history", "--store", store, "--variant", "fp32", "--json").stdout)
    recorded = listed["series"][0]["points"][0]
    moment = datetime.fromisoformat(recorded["recorded_at"])
    for text in (moment.isoformat(), moment.strftime("%Y-%m-%d %H:%M:%S"), moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 moment.astimezone(timezone(timedelta(hours=2))).isoformat()):  # one moment, four spellings
        kept = json.loads(edgeopt("history", "--store", store, "--variant", "fp32", "--since", text, "--json").stdout)
        assert len(kept["series"][0]["points"]) == 1, text


def test_bad_store_urls_and_sources_are_exit_3_naming_them(runs: Path, tmp_path: Path) -> None:
    done = edgeopt("history", "--store", "postgresql://u:s3cret@127.0.0.1:notaport/x")
    assert done.returncode == 3 and "history store" in done.stderr and "s3cret" not in done.stderr, done.stderr
    done = edgeopt("history", "--store", tmp_path)
    assert done.returncode == 3 and "a folder, not a database file" in done.stderr
    junk = tmp_path / "junk.json"
    junk.write_text('{"kind": "ab", "candidate": ')
    done = edgeopt("history", "import", junk, "--store", tmp_path / "s.sqlite")
    assert done.returncode == 3 and f"{junk}: not a readable JSON document" in done.stderr, done.stderr
    done = edgeopt("history", "import", runs / "tiny.onnx", "--store", tmp_path / "s.sqlite")
    assert done.returncode == 3 and "tiny.onnx: not a readable JSON document" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


def test_the_commands_write_a_postgresql_store(runs: Path, tmp_path: Path) -> None:
    """run, profile, ab and import into a real PostgreSQL server (EDGEOPT_TEST_POSTGRES), then --check and --html."""
    from tests.test_history_store import _postgres_database

    for url in _postgres_database():
        assert edgeopt("run", runs / "tiny.onnx", "--profile", runs / "fast.yaml", "--out", tmp_path / "run",
                       "--variant", "fp32", "--history", url).returncode == 0
        assert edgeopt("profile", runs / "tiny.onnx", "--profile", runs / "fast.yaml", "--out", tmp_path / "prof",
                       "--history", url).returncode == 0
        done = edgeopt("ab", runs / "tiny.onnx", runs / "tiny.onnx", "--profile", runs / "fast.yaml", "--out",
                       tmp_path / "ab", "--max-seconds", "1", "--history", url)
        assert done.returncode in (0, 5) and "history: stored as run 3" in done.stderr, done.stderr[-2000:]
        done = edgeopt("history", "import", runs / "run1", tmp_path / "run", "--store", url)
        assert done.returncode == 0 and "1 new run(s) of 2" in done.stdout, done.stdout + done.stderr
        done = edgeopt("history", "--store", url, "--check", "--html", tmp_path / "h.html", "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        document = json.loads(done.stdout)
        points = {s["key"]["variant"]: len(s["points"]) for s in document["series"]}
        # run1 adds its fp32 and int8-dynamic rows; ab's candidate and profile's file are one file as it is
        assert points == {"fp32": 2, "int8-dynamic": 1, "as-is": 2}
        assert (tmp_path / "h.html").read_text().count('<figure class="chart"') == 3
