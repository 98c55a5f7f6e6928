"""recoveries: whether a person had to look something up by hand, and the CX actions they run

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("recoveries") as batch:
        batch.add_column(sa.Column("manual_lookup", sa.Boolean(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("actions", Json, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("recoveries") as batch:
        batch.drop_column("actions")
        batch.drop_column("manual_lookup")
