"""itsm: the linked incident on recoveries, applied ITSM changes, job priorities and claim order

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
CLAIMABLE = sa.text("state IN ('pending', 'running')")
INCIDENT_COLUMNS = (
    ("itsm_system", sa.String(16)),
    ("incident_id", sa.String(255)),
    ("incident_number", sa.String(255)),
    ("incident_url", sa.Text()),
    ("incident_status", sa.String(16)),
    ("incident_sequence", sa.BigInteger()),
)


def upgrade() -> None:
    with op.batch_alter_table("recoveries") as batch:
        for name, kind in INCIDENT_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    op.create_index("ix_recoveries_incident", "recoveries", ["itsm_system", "incident_id"])
    with op.batch_alter_table("outbox_jobs") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="5"))
    op.create_index(
        "ix_outbox_jobs_claimable",
        "outbox_jobs",
        ["priority", "due_at", "id"],
        sqlite_where=CLAIMABLE,
        postgresql_where=CLAIMABLE,
    )
    op.create_table(
        "itsm_changes",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("system", sa.String(16), nullable=False),
        sa.Column("dedup_key", sa.String(255), nullable=False),
        sa.Column("recovery_id", Id, nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_itsm_changes"),
        sa.UniqueConstraint("system", "dedup_key", name="uq_itsm_changes_system_dedup_key"),
        sa.ForeignKeyConstraint(
            ["recovery_id"], ["recoveries.id"], name="fk_itsm_changes_recovery_id_recoveries"
        ),
    )


def downgrade() -> None:
    op.drop_table("itsm_changes")
    op.drop_index("ix_outbox_jobs_claimable", table_name="outbox_jobs")
    with op.batch_alter_table("outbox_jobs") as batch:
        batch.drop_column("priority")
    op.drop_index("ix_recoveries_incident", table_name="recoveries")
    with op.batch_alter_table("recoveries") as batch:
        for name, _ in reversed(INCIDENT_COLUMNS):
            batch.drop_column(name)
