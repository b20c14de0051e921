"""The results store: edgeopt_runs (one row per run and its fingerprint) and edgeopt_results (one row per measured
variant and profile).

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edgeopt_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("recorded_at", sa.String(40), nullable=False),
        sa.Column("stored_at", sa.String(40), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("commit", sa.String(64)),
        sa.Column("branch", sa.String(255)),
        sa.Column("dirty", sa.Boolean),
        sa.Column("hostname", sa.String(255)),
        sa.Column("host_fingerprint", sa.String(32)),
        sa.Column("cpu_model", sa.String(255)),
        sa.Column("edgeopt_version", sa.String(64)),
        sa.Column("versions", sa.JSON, nullable=False),
        sa.Column("report", sa.Text),
        sa.Column("exit_code", sa.Integer),
        sa.Column("verdict", sa.Text),
    )
    op.create_table(
        "edgeopt_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("edgeopt_runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model", sa.String(512), nullable=False),
        sa.Column("profile", sa.String(255), nullable=False),
        sa.Column("variant", sa.String(255), nullable=False),
        sa.Column("runtime", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("model_sha256", sa.String(64)),
        sa.Column("variant_sha256", sa.String(64)),
        sa.Column("p50_ms", sa.Float),
        sa.Column("p50_lower", sa.Float),
        sa.Column("p50_upper", sa.Float),
        sa.Column("p95_ms", sa.Float),
        sa.Column("p95_lower", sa.Float),
        sa.Column("p95_upper", sa.Float),
        sa.Column("samples", sa.Integer),
        sa.Column("peak_rss_mb", sa.Float),
        sa.Column("size_mb", sa.Float),
        sa.Column("fidelity_cosine", sa.Float),
        sa.Column("host_matches", sa.Boolean),
        sa.Column("proxy", sa.Boolean, nullable=False),
    )
    op.create_index("ix_edgeopt_results_key", "edgeopt_results", ["model", "profile", "variant", "runtime"])
    op.create_index("ix_edgeopt_results_run", "edgeopt_results", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_edgeopt_results_run", table_name="edgeopt_results")
    op.drop_index("ix_edgeopt_results_key", table_name="edgeopt_results")
    op.drop_table("edgeopt_results")
    op.drop_table("edgeopt_runs")
