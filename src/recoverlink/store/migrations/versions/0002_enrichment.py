"""rules: enrichment stamped on alert episodes, config versions announced for reload

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("enrichment", Json, nullable=True))
        batch.add_column(sa.Column("ruleset_version", sa.String(32), nullable=True))
    op.create_table(
        "config_versions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("announced_at", sa.DateTime(), nullable=False),
        sa.Column("announced_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_config_versions"),
    )


def downgrade() -> None:
    op.drop_table("config_versions")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("ruleset_version")
        batch.drop_column("enrichment")
