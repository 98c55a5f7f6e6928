"""recoveries: indexes for storm mode's window count and parent lookup

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STORM_PARENT = sa.text("storm AND open_key IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_recoveries_team_opened_at", "recoveries", ["team", "opened_at"])
    op.create_index("ix_recoveries_service_opened_at", "recoveries", ["service", "opened_at"])
    for column in ("team", "service"):
        op.create_index(
            f"ix_recoveries_storm_parent_{column}",
            "recoveries",
            [column, "id"],
            sqlite_where=STORM_PARENT,
            postgresql_where=STORM_PARENT,
        )


def downgrade() -> None:
    for name in ("storm_parent_service", "storm_parent_team", "service_opened_at", "team_opened_at"):
        op.drop_index(f"ix_recoveries_{name}", table_name="recoveries")
