"""outbox: durable jobs; impact on recoveries; stale episodes; the owner filter

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Workers LISTEN on this channel; a statement-level trigger wakes them on every enqueue, so the
# NOTIFY rides along with the INSERT instead of costing the ingest transaction a round trip.
NOTIFY_FUNCTION = """
CREATE FUNCTION recoverlink_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('recoverlink_outbox', '');
  RETURN NULL;
END $$
"""
NOTIFY_TRIGGER = """
CREATE TRIGGER outbox_jobs_notify AFTER INSERT ON outbox_jobs
FOR EACH STATEMENT EXECUTE FUNCTION recoverlink_outbox_notify()
"""

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "outbox_jobs",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("recovery_id", Id, nullable=True),
        sa.Column("payload", Json, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_reason", sa.String(64), nullable=True),
        sa.Column("result", Json, nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("first_started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox_jobs"),
        sa.UniqueConstraint("idempotency_key", name="uq_outbox_jobs_idempotency_key"),
        sa.ForeignKeyConstraint(
            ["recovery_id"], ["recoveries.id"], name="fk_outbox_jobs_recovery_id_recoveries"
        ),
    )
    for columns in (["state", "due_at"], ["recovery_id"], ["kind", "state"]):
        op.create_index(f"ix_outbox_jobs_{'_'.join(columns)}", "outbox_jobs", columns)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        op.execute(NOTIFY_TRIGGER)
    with op.batch_alter_table("recoveries") as batch:
        batch.add_column(sa.Column("impact_sources", Json, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("impact_context", Json, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("impact", Json, nullable=False, server_default="{}"))
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("stale_at", sa.DateTime(), nullable=True))
    op.create_index("ix_recoveries_owner_id", "recoveries", ["owner", "id"])


def downgrade() -> None:
    op.drop_index("ix_recoveries_owner_id", table_name="recoveries")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("stale_at")
    with op.batch_alter_table("recoveries") as batch:
        for column in ("impact", "impact_context", "impact_sources"):
            batch.drop_column(column)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS outbox_jobs_notify ON outbox_jobs")
        op.execute("DROP FUNCTION IF EXISTS recoverlink_outbox_notify()")
    op.drop_table("outbox_jobs")
