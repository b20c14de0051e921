"""The store's tables as SQLAlchemy Core objects (what the queries use); the migrations under ``migrations/``
create them, and a test checks that the two agree (``tests/test_history_store.py``).

``edgeopt_runs``: one row per stored run (its fingerprint); ``edgeopt_results``: one row per measured (variant,
profile) of a run, with the host that measured it and its measurement document's sha256 (unique: a measurement
reused by a later run is one point, not two).  Names carry the ``edgeopt_`` prefix, the Alembic version table
is ``edgeopt_alembic_version``: edgeopt's tables are told apart from any other application's (the store refuses a
database that holds only someone else's).
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text

VERSION_TABLE = "edgeopt_alembic_version"
METADATA = MetaData()

RUNS = Table(
    "edgeopt_runs", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uid", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("recorded_at", String(40), nullable=False),
    Column("stored_at", String(40), nullable=False),
    Column("source", Text, nullable=False),
    Column("commit", String(64)),
    Column("branch", String(255)),
    Column("dirty", Boolean),
    Column("hostname", String(255)),
    Column("host_fingerprint", String(32)),
    Column("cpu_model", String(255)),
    Column("edgeopt_version", String(64)),
    Column("versions", JSON, nullable=False),
    Column("report", Text),
    Column("exit_code", Integer),
    Column("verdict", Text),
)

RESULTS = Table(
    "edgeopt_results", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("edgeopt_runs.id", ondelete="CASCADE"), nullable=False),
    Column("model", String(512), nullable=False),
    Column("profile", String(255), nullable=False),
    Column("variant", String(255), nullable=False),
    Column("runtime", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("verdict", String(32), nullable=False),
    Column("model_sha256", String(64)),
    Column("variant_sha256", String(64)),
    Column("p50_ms", Float),
    Column("p50_lower", Float),
    Column("p50_upper", Float),
    Column("p95_ms", Float),
    Column("p95_lower", Float),
    Column("p95_upper", Float),
    Column("samples", Integer),
    Column("peak_rss_mb", Float),
    Column("size_mb", Float),
    Column("fidelity_cosine", Float),
    Column("host_matches", Boolean),
    Column("proxy", Boolean, nullable=False),
    Column("measurement_sha256", String(64)),
    Column("hostname", String(255)),
    Column("host_fingerprint", String(32)),
    Column("cpu_model", String(255)),
    Index("ix_edgeopt_results_key", "model", "profile", "variant", "runtime"),
    Index("ix_edgeopt_results_run", "run_id"),
    Index("ix_edgeopt_results_measurement", "measurement_sha256", unique=True),
)
