"""The results store: run records appended to SQLite (a file, the default) or any SQLAlchemy database (a team's
PostgreSQL), read back as series per (model, profile, variant, runtime).

Opening a store checks what the database holds before anything is written: an empty database gets the schema
(Alembic migrations, ``edgeopt/history/migrations``, version table ``edgeopt_alembic_version``); one at an older
revision is upgraded; one written by a newer edgeopt, one with edgeopt's tables but no version, one holding only
another application's tables, or a file that is not a database is refused (``HistoryStoreError``, exit 3, naming
the store; a URL's password is never shown).  Each append is one transaction and a run is stored once (its uid).
Concurrent writers (two CI jobs on one store) are safe: on SQLite (in WAL mode, so readers never hold a writer
up; a store on a network file system should be PostgreSQL) each write transaction takes the database's write lock
when it begins (``BEGIN IMMEDIATE``, waiting up to ``BUSY_TIMEOUT_S``), on PostgreSQL the schema
check holds an advisory lock and a second append of the same run meets the uid's unique constraint.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeopt.errors import BackendUnavailableError, InputRejectedError, first_line
from edgeopt.history.records import RunRecord
from edgeopt.history.series import Series, SeriesKey, SeriesPoint

BUSY_TIMEOUT_S = 60.0  # how long a SQLite writer waits for another's transaction
_LOCK_KEY = 0x6564676F  # PostgreSQL advisory lock of the schema check ("edgo")
_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class HistoryStoreError(InputRejectedError):
    """The store cannot be used: not a database, another application's, a newer schema, unreachable."""


@dataclass(frozen=True)
class Appended:
    """What an append did: the run's id in the store, and whether it was new (False: it was stored before)."""

    run_id: int
    added: bool
    results: int


class HistoryStore:
    """A results store at ``location``: a file path (SQLite) or an SQLAlchemy URL (``postgresql://...``,
    ``sqlite:///...``).  ``create``: make a missing SQLite file (writers); readers refuse a missing one."""

    def __init__(self, location: str | Path, *, create: bool = True) -> None:
        sqlalchemy = _import_sqlalchemy()
        self.url = _url(sqlalchemy, str(location))
        self.label = _label(self.url)
        database = self.url.database if self.url.get_backend_name() == "sqlite" else None
        if database and database != ":memory:":
            if Path(database).is_dir():
                raise HistoryStoreError(f"history store {self.label}: a folder, not a database file (give a file "
                                        "path, e.g. results.sqlite)")
            if not create and not Path(database).is_file():
                raise HistoryStoreError(f"history store {self.label}: no such file (nothing was stored there yet)")
            if not Path(database).parent.is_dir():
                raise HistoryStoreError(f"history store {self.label}: folder {Path(database).parent} does not exist")
        try:
            self.engine = _engine(sqlalchemy, self.url)
        except (sqlalchemy.exc.ArgumentError, ImportError, ValueError) as error:
            raise HistoryStoreError(f"history store {self.label}: {first_line(error)}") from error
        try:
            self._prepare(create)
        except BaseException:
            self.engine.dispose()
            raise

    # ------------------------------------------------------------------------------------------ writing

    def append(self, record: RunRecord) -> Appended:
        """Store ``record`` and its results in one transaction.  A record whose uid is stored already adds
        nothing (``added`` False), nor does a result whose measurement document is stored already (a run that
        reused it); a record left with no new result is not stored."""
        from sqlalchemy.exc import IntegrityError

        with contextlib.suppress(IntegrityError):  # a concurrent writer stored this run, or one of its
            return self._append(record)  # measurements, between our check and our insert: check again
        try:
            return self._append(record)
        except IntegrityError as error:
            raise HistoryStoreError(f"history store {self.label}: run {record.source} refused, nothing of it "
                                    f"stored: {_reason(error)}") from error

    def _append(self, record: RunRecord) -> Appended:
        from sqlalchemy import insert, select

        from edgeopt.history.tables import RESULTS, RUNS

        run = {k: v for k, v in asdict(record).items() if k != "results"}
        run["stored_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        run["versions"] = {str(k): str(v) for k, v in (record.versions or {}).items()}
        with self._transaction(write=True) as connection:
            found = connection.execute(select(RUNS.c.id).where(RUNS.c.uid == record.uid)).scalar()
            if found is not None:
                return Appended(int(found), False, 0)
            digests = [r.measurement_sha256 for r in record.results if r.measurement_sha256]
            stored = dict(connection.execute(select(RESULTS.c.measurement_sha256, RESULTS.c.run_id)
                                             .where(RESULTS.c.measurement_sha256.in_(digests))).all()) \
                if digests else {}
            results = [r for r in record.results if r.measurement_sha256 not in stored]
            if record.results and not results:  # every row reused a stored measurement: nothing new
                return Appended(int(next(iter(stored.values()))), False, 0)
            run_id = int(connection.execute(insert(RUNS).values(**run)).inserted_primary_key[0])
            rows = [{**_finite(asdict(result)), "run_id": run_id} for result in results]
            if rows:
                connection.execute(insert(RESULTS), rows)
            return Appended(run_id, True, len(rows))

    # ------------------------------------------------------------------------------------------ reading

    def keys(self, *, model: str | None = None, profile: str | None = None, variant: str | None = None,
             runtime: str | None = None) -> list[SeriesKey]:
        """Every key with at least one result, sorted; each given filter must match exactly."""
        from sqlalchemy import select

        from edgeopt.history.tables import RESULTS

        query = select(RESULTS.c.model, RESULTS.c.profile, RESULTS.c.variant, RESULTS.c.runtime).distinct()
        for column, wanted in (("model", model), ("profile", profile), ("variant", variant), ("runtime", runtime)):
            if wanted is not None:
                query = query.where(RESULTS.c[column] == wanted)
        with self._transaction() as connection:
            return sorted(SeriesKey(*row) for row in connection.execute(query))

    def series(self, key: SeriesKey, *, branch: str | None = None, host_fingerprint: str | None = None,
               last: int | None = None) -> Series:
        """The points of ``key``, oldest first (run time, then store id), only measured ones (a failed row has
        no latency); ``branch``/``host_fingerprint`` keep those runs only; ``last`` keeps the newest N."""
        from sqlalchemy import func, select

        from edgeopt.history.tables import RESULTS, RUNS

        host = func.coalesce(RESULTS.c.host_fingerprint, RUNS.c.host_fingerprint)  # a row's own, else its run's
        query = (select(RUNS.c.id, RUNS.c.recorded_at, RUNS.c.commit, RUNS.c.branch,
                        func.coalesce(RESULTS.c.hostname, RUNS.c.hostname), host, RESULTS.c.p50_ms,
                        RESULTS.c.p50_lower, RESULTS.c.p50_upper,
                        RESULTS.c.p95_ms, RESULTS.c.p95_lower, RESULTS.c.p95_upper, RESULTS.c.samples,
                        RESULTS.c.peak_rss_mb, RESULTS.c.fidelity_cosine, RESULTS.c.verdict, RUNS.c.report)
                 .join(RUNS, RUNS.c.id == RESULTS.c.run_id)
                 .where(RESULTS.c.model == key.model, RESULTS.c.profile == key.profile,
                        RESULTS.c.variant == key.variant, RESULTS.c.runtime == key.runtime,
                        RESULTS.c.p50_ms.is_not(None))
                 .order_by(RUNS.c.recorded_at, RUNS.c.id, RESULTS.c.id))
        if branch is not None:
            query = query.where(RUNS.c.branch == branch)
        if host_fingerprint is not None:
            query = query.where(host == host_fingerprint)
        with self._transaction() as connection:
            points = [SeriesPoint(*row) for row in connection.execute(query)]
        return Series(key, tuple(points[-last:] if last else points))

    def run_count(self) -> int:
        from sqlalchemy import func, select

        from edgeopt.history.tables import RUNS

        with self._transaction() as connection:
            return int(connection.execute(select(func.count()).select_from(RUNS)).scalar() or 0)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ schema

    def _prepare(self, create: bool) -> None:
        """Check what the database holds; create (writers only) or upgrade edgeopt's schema (module docstring).
        The check reads; only a database that needs its schema made or upgraded gets a write transaction (under
        PostgreSQL's advisory lock, or SQLite's write lock), in which it is checked again."""
        with self._transaction() as connection:
            if self._schema_state(connection, create) == "current":
                return
        with self._transaction(write=True) as connection:
            if connection.dialect.name == "postgresql":
                from sqlalchemy import text

                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            if self._schema_state(connection, create) != "current":
                _upgrade(connection)

    def _schema_state(self, connection: Any, create: bool) -> str:
        """``current`` or ``upgrade`` (empty, or an older revision); raises for what may not be used."""
        from alembic.runtime.migration import MigrationContext
        from sqlalchemy import inspect

        from edgeopt.history.tables import VERSION_TABLE

        tables = set(inspect(connection).get_table_names())
        ours = {t for t in tables if t.startswith("edgeopt_")}
        if VERSION_TABLE not in tables:
            if ours:
                names = ", ".join(sorted(ours))
                raise HistoryStoreError(f"history store {self.label}: it has edgeopt tables ({names}) but no "
                                        f"{VERSION_TABLE} (a broken or hand-made store); give another")
            if tables:
                shown = ", ".join(sorted(tables)[:5]) + (" ..." if len(tables) > 5 else "")
                raise HistoryStoreError(f"history store {self.label}: a database of another application "
                                        f"(tables {shown}); give an empty database or a new file")
            if not create:
                raise HistoryStoreError(f"history store {self.label}: an empty database: nothing was stored there "
                                        "yet")
            return "upgrade"
        current = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
        head = _head()
        if current == head:
            return "current"
        if current is not None and current not in _revisions():
            raise HistoryStoreError(f"history store {self.label}: schema revision {current!r} was written by a "
                                    f"newer edgeopt (this one knows up to {head!r}); upgrade edgeopt")
        return "upgrade"

    @contextlib.contextmanager
    def _transaction(self, *, write: bool = False) -> Iterator[Any]:
        """One transaction (a write one takes SQLite's write lock when it begins); database errors become
        ``HistoryStoreError`` naming the store."""
        from sqlalchemy.exc import IntegrityError, SQLAlchemyError

        try:
            with self.engine.connect().execution_options(edgeopt_write=write) as connection, connection.begin():
                yield connection
        except IntegrityError:
            raise
        except SQLAlchemyError as error:
            raise HistoryStoreError(f"history store {self.label}: {_reason(error)}") from error


# ------------------------------------------------------------------------------------------ helpers


def _import_sqlalchemy() -> Any:
    try:
        import alembic  # noqa: F401
        import sqlalchemy
        import sqlalchemy.exc
    except ImportError as error:
        raise BackendUnavailableError(f"the history store needs SQLAlchemy and Alembic ({error}): "
                                      "pip install 'edgeopt[history]'") from error
    return sqlalchemy


def _url(sqlalchemy: Any, location: str) -> Any:
    """An SQLAlchemy URL: a path is a SQLite file; ``postgresql://`` uses psycopg (version 3) when psycopg2 is
    not installed."""
    if "://" not in location:
        return sqlalchemy.engine.make_url("sqlite://").set(database=str(Path(location).expanduser().resolve()))
    try:
        url = sqlalchemy.engine.make_url(location)
        url.render_as_string(hide_password=True)  # a port that is not a number raises here (ValueError)
    except (sqlalchemy.exc.ArgumentError, ValueError) as error:
        raise HistoryStoreError(f"history store {location.split('@')[-1]}: not a database URL ({error})") from error
    if url.drivername in ("postgresql", "postgres"):
        try:
            import psycopg2  # type: ignore[import-untyped]  # noqa: F401
        except ImportError:
            url = url.set(drivername="postgresql+psycopg")
    return url


def _label(url: Any) -> str:
    if url.get_backend_name() == "sqlite" and url.database:
        return str(url.database)
    return str(url.render_as_string(hide_password=True))


def _engine(sqlalchemy: Any, url: Any) -> Any:
    if url.get_backend_name() != "sqlite":
        return sqlalchemy.create_engine(url, pool_pre_ping=True)
    engine = sqlalchemy.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    # pysqlite's own transaction handling would begin late (at the first write): take over, as SQLAlchemy's
    # documentation of the pysqlite driver shows, and begin write transactions IMMEDIATE (write lock first)
    @sqlalchemy.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        with contextlib.suppress(sqlite3.DatabaseError):  # WAL: readers never hold a writer up (not a database:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")  # the first query says so, naming the store)

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        write = connection.get_execution_options().get("edgeopt_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def _head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return str(head)


def _revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}


def _upgrade(connection: Any) -> None:
    from alembic import command

    config = _alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """NaN/Inf become NULL (SQLite stores NaN as NULL anyway; one rule for every database)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}


def _reason(error: Exception) -> str:
    text = first_line(getattr(error, "orig", None) or error)
    if "file is not a database" in text or "malformed" in text:
        return f"not an SQLite database ({text})"
    if "database is locked" in text:
        return f"busy: another writer held it for more than {BUSY_TIMEOUT_S:g} s ({text})"
    return text
