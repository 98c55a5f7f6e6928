"""recoveries: the recovery record, its alerts and the append-only audit trail

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "recoveries",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("correlation_key", sa.String(255), nullable=False),
        sa.Column("open_key", sa.String(255), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("service", sa.String(255), nullable=True),
        sa.Column("service_ref", sa.String(255), nullable=True),
        sa.Column("team", sa.String(255), nullable=True),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("state_changed_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("milestones", Json, nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("escalation_bounces", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("reopen_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("incident_resolved", sa.Boolean(), nullable=False, server_default="0"),
        sa.Column("incident_closed", sa.Boolean(), nullable=False, server_default="0"),
        sa.Column("itsm_configured", sa.Boolean(), nullable=False),
        sa.Column("resolution_policy", sa.String(16), nullable=False),
        sa.Column("reopen_window_seconds", sa.Float(), nullable=False),
        sa.Column("linked_to", Id, nullable=True),
        sa.Column("storm", sa.Boolean(), nullable=False, server_default="0"),
        sa.Column("storm_episodes", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("symptoms", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("workaround", sa.Text(), nullable=True),
        sa.Column("public_message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_recoveries"),
        sa.UniqueConstraint("open_key", name="uq_recoveries_open_key"),
        sa.ForeignKeyConstraint(["linked_to"], ["recoveries.id"], name="fk_recoveries_linked_to_recoveries"),
    )
    for columns in (
        ["state", "id"],
        ["team", "id"],
        ["service", "id"],
        ["correlation_key", "id"],
        ["opened_at"],
    ):
        op.create_index(f"ix_recoveries_{'_'.join(columns)}", "recoveries", columns)
    op.create_table(
        "recovery_alerts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("recovery_id", Id, nullable=False),
        sa.Column("alert_id", Id, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("attached_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_recovery_alerts"),
        sa.UniqueConstraint("alert_id", name="uq_recovery_alerts_alert_id"),
        sa.ForeignKeyConstraint(
            ["recovery_id"], ["recoveries.id"], name="fk_recovery_alerts_recovery_id_recoveries"
        ),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name="fk_recovery_alerts_alert_id_alerts"),
    )
    op.create_index("ix_recovery_alerts_recovery_id", "recovery_alerts", ["recovery_id"])
    op.create_table(
        "audit_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("recovery_id", Id, nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(32), nullable=True),
        sa.Column("to_state", sa.String(32), nullable=True),
        sa.Column("details", Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
        sa.ForeignKeyConstraint(
            ["recovery_id"], ["recoveries.id"], name="fk_audit_events_recovery_id_recoveries"
        ),
    )
    op.create_index("ix_audit_events_recovery_id_id", "audit_events", ["recovery_id", "id"])


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("recovery_alerts")
    op.drop_table("recoveries")
