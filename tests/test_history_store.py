"""The results store on SQLite and on a real PostgreSQL server: round trip, one transaction per run, the
migrations' schema equal to the tables the queries use, refusal of broken, foreign and newer databases (exit 3,
password hidden), and concurrent writers (two processes appending at once, into a fresh store) losing nothing.

PostgreSQL: ``EDGEOPT_TEST_POSTGRES`` names a server's URL (``.ci/run`` starts one on 127.0.0.1 with
``scripts/postgres_server.sh``); each test gets a database of its own, dropped after.  Without it those tests
skip, saying so.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy", reason="extra 'history' (SQLAlchemy, Alembic) is not installed")

from sqlalchemy import create_engine, inspect, text  # noqa: E402

from edgeopt.history.records import ResultRecord, RunRecord  # noqa: E402
from edgeopt.history.series import SeriesKey  # noqa: E402
from edgeopt.history.store import HistoryStore, HistoryStoreError  # noqa: E402
from edgeopt.history.tables import METADATA, VERSION_TABLE  # noqa: E402

POSTGRES = os.environ.get("EDGEOPT_TEST_POSTGRES")
ROOT = Path(__file__).resolve().parent.parent


def _postgres_database() -> Iterator[str]:
    if not POSTGRES:
        pytest.skip("EDGEOPT_TEST_POSTGRES is not set (.ci/run starts a server: scripts/postgres_server.sh start)")
    name = f"edgeopt_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store location of each kind."""
    if request.param == "sqlite":
        yield str(tmp_path / "history.sqlite")
    else:
        yield from _postgres_database()


def record(uid: str, *, p50: float = 2.0, commit: str = "c0ffee", rows: int = 2, recorded_at: str | None = None
           ) -> RunRecord:
    results = tuple(ResultRecord(model="tiny.onnx", profile="host-cpu", variant=variant, runtime="onnxruntime",
                                 status="ok", verdict="pass", model_sha256="ab" * 32, variant_sha256="cd" * 32,
                                 p50_ms=p50 * (i + 1), p50_lower=p50 * (i + 1) * 0.98, p50_upper=p50 * (i + 1) * 1.02,
                                 p95_ms=p50 * 1.3, p95_lower=None, p95_upper=None, samples=400, peak_rss_mb=55.5,
                                 size_mb=0.2, fidelity_cosine=0.9999, host_matches=True)
                    for i, variant in enumerate(("fp32", "int8-dynamic")[:rows]))
    return RunRecord(uid=uid, kind="run", recorded_at=recorded_at or "2026-12-07T10:00:00+00:00",
                     source=f"/runs/{uid}", results=results, commit=commit, branch="main", dirty=False,
                     hostname="ci-7", host_fingerprint="0123456789ab", cpu_model="Xeon", edgeopt_version="0.1.0",
                     versions={"onnxruntime": "1.32.0"}, report=f"/runs/{uid}/report.html", exit_code=0,
                     verdict="PASS")


def test_round_trip_and_a_run_is_stored_once(location: str) -> None:
    with HistoryStore(location) as store:
        first = store.append(record("run-1", p50=2.0, commit="a" * 40, recorded_at="2026-12-07T10:00:00+00:00"))
        again = store.append(record("run-1", p50=9.0))
        second = store.append(record("run-2", p50=2.2, commit="b" * 40, recorded_at="2026-12-07T11:00:00+00:00"))
        assert first.added and first.results == 2 and not again.added and again.run_id == first.run_id
        assert second.added and store.run_count() == 2
        keys = store.keys()
        assert keys == [SeriesKey("tiny.onnx", "host-cpu", "fp32", "onnxruntime"),
                        SeriesKey("tiny.onnx", "host-cpu", "int8-dynamic", "onnxruntime")]
        assert store.keys(variant="fp32") == keys[:1] and store.keys(model="other") == []
        series = store.series(keys[0])
    assert [p.p50_ms for p in series.points] == [2.0, 2.2]
    point = series.points[0]
    assert (point.commit, point.branch, point.hostname, point.host_fingerprint) == ("a" * 40, "main", "ci-7",
                                                                                   "0123456789ab")
    assert (point.p50_lower, point.p50_upper, point.p95_lower, point.samples, point.verdict) == (1.96, 2.04, None,
                                                                                                 400, "pass")
    assert point.report == "/runs/run-1/report.html" and point.recorded_at == "2026-12-07T10:00:00+00:00"
    with HistoryStore(location, create=False) as reader:  # a reader sees what the writer committed
        assert reader.series(keys[0], last=1).points[0].p50_ms == 2.2
        assert reader.series(keys[0], branch="dev").points == ()


def test_series_order_by_measuring_time_not_by_arrival(location: str) -> None:
    with HistoryStore(location) as store:
        store.append(record("late", p50=3.0, recorded_at="2026-12-07T12:00:00+00:00"))
        store.append(record("early", p50=1.0, recorded_at="2026-12-07T09:00:00+00:00"))  # imported afterwards
        series = store.series(store.keys()[0])
    assert [p.p50_ms for p in series.points] == [1.0, 3.0]


def test_an_append_is_one_transaction(location: str) -> None:
    unnamed = replace(record("x").results[0], model=None)  # type: ignore[arg-type]  # a NOT NULL column left empty
    broken = replace(record("half"), results=(record("x").results[0], unnamed))
    with HistoryStore(location) as store:
        with pytest.raises(HistoryStoreError) as caught:
            store.append(broken)
        assert caught.value.exit_code == 3
        assert store.run_count() == 0 and store.keys() == []  # the run row went with its failed result
        assert store.append(record("whole")).added and store.run_count() == 1


def test_the_migrations_make_the_tables_the_queries_use(location: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    HistoryStore(location).close()
    url = location if "://" in location else f"sqlite:///{location}"
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        assert context.get_current_revision() == "0002"
        differences = [d for d in compare_metadata(context, METADATA)
                       if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == VERSION_TABLE)]
        assert differences == []
        assert {"edgeopt_runs", "edgeopt_results", VERSION_TABLE} <= set(inspect(connection).get_table_names())
    engine.dispose()


def test_a_store_of_an_older_revision_is_upgraded_keeping_its_runs(location: str) -> None:
    """A store made by the first schema (0001: no per-row host, no measurement sha256) is upgraded in place when a
    writer opens it; its runs read back, and the new columns work (a reused measurement is still one point)."""
    from alembic import command

    from edgeopt.history import store as store_module

    url = location if "://" in location else f"sqlite:///{location}"
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:  # the schema as edgeopt made it at revision 0001, with one run in it
        config = store_module._alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(text(
            "INSERT INTO edgeopt_runs (uid, kind, recorded_at, stored_at, source, versions, hostname, "
            "host_fingerprint) VALUES ('old', 'run', '2026-12-01T10:00:00+00:00', '2026-12-01T10:00:00+00:00', "
            "'/runs/old', '{}', 'ci-1', 'aaaaaaaaaaaa')"))
        connection.execute(text(
            "INSERT INTO edgeopt_results (run_id, model, profile, variant, runtime, status, verdict, p50_ms, proxy) "
            "VALUES (1, 'tiny.onnx', 'host-cpu', 'fp32', 'onnxruntime', 'ok', 'pass', 1.5, false)"))
    engine.dispose()
    with HistoryStore(location) as store:
        [old] = store.series(SeriesKey("tiny.onnx", "host-cpu", "fp32", "onnxruntime")).points
        assert (old.p50_ms, old.hostname, old.host_fingerprint) == (1.5, "ci-1", "aaaaaaaaaaaa")  # the run's host
        new = replace(record("new"), results=tuple(replace(r, measurement_sha256="ee" * 32)
                                                   for r in record("new").results[:1]))
        assert store.append(new).added
        assert not store.append(replace(new, uid="reused")).added  # same measurement, another run: no new point
        assert len(store.series(SeriesKey("tiny.onnx", "host-cpu", "fp32", "onnxruntime")).points) == 2
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as connection:
        assert connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == "0002"
    engine.dispose()


def _write_sql(location: str, *statements: str) -> None:
    url = location if "://" in location else f"sqlite:///{location}"
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    engine.dispose()


@pytest.mark.parametrize(("statements", "words"), [
    (["CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)"], "a database of another application (tables "
     "invoices)"),
    (["CREATE TABLE edgeopt_runs (id INTEGER PRIMARY KEY)"], "it has edgeopt tables (edgeopt_runs) but no "
     "edgeopt_alembic_version"),
    (["CREATE TABLE edgeopt_alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
      "INSERT INTO edgeopt_alembic_version VALUES ('0099')"], "schema revision '0099' was written by a newer "
     "edgeopt"),
], ids=["foreign", "no-version", "newer"])
def test_foreign_broken_and_newer_databases_are_refused(location: str, statements: list[str], words: str) -> None:
    _write_sql(location, *statements)
    with pytest.raises(HistoryStoreError) as caught:
        HistoryStore(location)
    assert caught.value.exit_code == 3 and words in str(caught.value)
    label = location.rsplit("@", 1)[-1]
    assert label in str(caught.value)


def test_a_file_that_is_not_a_database_is_exit_3_naming_it(tmp_path: Path) -> None:
    junk = tmp_path / "results.sqlite"
    junk.write_bytes(b"PK\x03\x04 this is a zip, not SQLite" * 100)
    with pytest.raises(HistoryStoreError) as caught:
        HistoryStore(junk)
    assert caught.value.exit_code == 3 and f"history store {junk}: not an SQLite database" in str(caught.value)
    assert junk.read_bytes().startswith(b"PK\x03\x04")  # untouched
    with pytest.raises(HistoryStoreError, match="no such file"):
        HistoryStore(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()


def test_an_unreachable_server_is_exit_3_without_its_password() -> None:
    pytest.importorskip("psycopg", reason="psycopg (extra 'postgres') is not installed")
    with pytest.raises(HistoryStoreError) as caught:
        HistoryStore("postgresql://ci:s3cret-pw@127.0.0.1:9/edgeopt")  # the discard port: nothing listens
    assert caught.value.exit_code == 3
    assert "s3cret-pw" not in str(caught.value) and "ci:***@127.0.0.1:9/edgeopt" in str(caught.value)


WRITER = textwrap.dedent("""
    import sys
    import time
    from dataclasses import replace
    from pathlib import Path
    from edgeopt.history.store import HistoryStore
    from tests.test_history_store import record
    location, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ready, go = Path(sys.argv[4]), Path(sys.argv[5])
    ready.touch()  # imported and about to open the store: waiting for the other writer
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit(f"writer {name}: no go signal ({go}) in 60 s")
        time.sleep(0.005)
    with HistoryStore(location) as store:  # both open the empty store at once: the schema creation races too
        for i in range(count):
            store.append(record(f"{name}-{i}", p50=1.0 + i / 100, commit=f"{name}{i:04d}"))
            store.append(record(f"shared-{i}", p50=5.0))  # both writers append these: stored once
""")


def test_two_concurrent_writers_lose_nothing(location: str, tmp_path: Path) -> None:
    count = 40
    go = tmp_path / "go"
    ready = {name: tmp_path / f"ready-{name}" for name in ("a", "b")}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, location, name, str(count), str(ready[name]), str(go)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name in ready]
    try:
        # a barrier: once both writers have imported everything and signalled, they open the empty store and
        # append at the same moment (the schema is made once, under the lock)
        deadline = time.monotonic() + 60
        while not all(path.exists() for path in ready.values()):
            exited = [w for w in writers if w.poll() is not None]
            assert not exited, f"a writer ended before the start: {exited[0].communicate()[1][-3000:]}"
            assert time.monotonic() < deadline, "the writers did not signal ready in 60 s"
            time.sleep(0.005)
        go.touch()
        for writer in writers:
            out, err = writer.communicate(timeout=300)
            assert writer.returncode == 0, err[-3000:]
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.communicate()
    with HistoryStore(location, create=False) as store:
        assert store.run_count() == 2 * count + count
        points = store.series(SeriesKey("tiny.onnx", "host-cpu", "fp32", "onnxruntime")).points
    commits = sorted(p.commit or "" for p in points if p.commit != "c0ffee")
    assert commits == sorted(f"{name}{i:04d}" for name in ("a", "b") for i in range(count))
    assert len(points) == 3 * count


def test_sqlite_store_survives_a_reader_holding_it(tmp_path: Path) -> None:
    """A reader in the middle of a transaction (a dashboard being built) delays a writer, never fails it."""
    path = tmp_path / "history.sqlite"
    HistoryStore(path).close()
    reader = sqlite3.connect(path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM edgeopt_runs").fetchall()
    with HistoryStore(path) as store:
        assert store.append(record("while-read")).added
    reader.rollback()
    reader.close()
