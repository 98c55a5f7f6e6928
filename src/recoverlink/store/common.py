"""Helpers every repository module shares: dialect-specific upserts and the stored time form."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def to_db_time(value: datetime) -> datetime:
    """Naive UTC, the one form stored in both backends."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def from_db_time(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def insert_for(conn: Connection, table: Table) -> Any:
    """An INSERT that supports ON CONFLICT on the connection's backend."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)
