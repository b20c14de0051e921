"""Each result keeps the host that measured it (a lab run's rows come from different boards) and its measurement
document's sha256, unique: a measurement a later run reused is one point, not two.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = (("measurement_sha256", 64), ("hostname", 255), ("host_fingerprint", 32), ("cpu_model", 255))


def upgrade() -> None:
    for name, length in _COLUMNS:
        op.add_column("edgeopt_results", sa.Column(name, sa.String(length)))
    op.create_index("ix_edgeopt_results_measurement", "edgeopt_results", ["measurement_sha256"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_edgeopt_results_measurement", table_name="edgeopt_results")
    with op.batch_alter_table("edgeopt_results") as batch:  # SQLite drops columns by copying the table
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
