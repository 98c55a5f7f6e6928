"""Config versions announced by the process that validated them, so every other process follows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select

from recoverlink.store.common import to_db_time
from recoverlink.store.schema import config_versions


def announce(conn: Connection, version: str, announced_by: str, now: datetime) -> None:
    conn.execute(
        insert(config_versions).values(
            version=version, announced_by=announced_by, announced_at=to_db_time(now)
        )
    )


def latest(conn: Connection) -> str | None:
    """The newest announced version, or None before any announcement."""
    row = conn.execute(
        select(config_versions.c.version).order_by(config_versions.c.id.desc()).limit(1)
    ).one_or_none()
    return row.version if row else None
