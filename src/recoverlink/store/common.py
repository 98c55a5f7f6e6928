"""Helpers every repository module shares: dialect-specific upserts and the stored time form."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, CursorResult, Table, TextClause, bindparam, text
from sqlalchemy.dialects import postgresql, sqlite

from recoverlink.domain.json_text import compact_json
from recoverlink.store.sqlite_cursor import DriverRows, run_on_cursor, uses_cursor


def to_db_time(value: datetime) -> datetime:
    """Naive UTC, the one form stored in both backends."""
    if value.tzinfo is None:
        return value
    return (value if value.tzinfo is UTC else value.astimezone(UTC)).replace(tzinfo=None)


def from_db_time(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


_NAMED_BIND = re.compile(r":([a-z_][a-z0-9_]*)")
_SQLITE_TIME_LENGTH = len("2026-12-01 10:00:00.000000")


class DriverStatement:
    """A statement run through the driver itself (`exec_driver_sql`), in each backend's paramstyle.

    For the few statements every webhook runs while it holds SQLite's write lock: SQLAlchemy's
    execution of a `text()` construct (cache key, bind processing, result typing) cost several
    times the database's own work there; on SQLite they even run on the driver's cursor
    (`sqlite_cursor`). Written once with `:name` binds; values go through
    `driver_time` and come back through `from_driver_time`, so they are stored exactly as
    SQLAlchemy's DateTime stores them. Names come from our own schema, never from input.
    """

    def __init__(self, sql: str) -> None:
        self.sqlite = sql
        self.postgresql = _NAMED_BIND.sub(r"%(\1)s", sql)

    def run(self, conn: Connection, params: Mapping[str, Any]) -> DriverRows | CursorResult[Any]:
        if uses_cursor(conn):
            return run_on_cursor(conn, self.sqlite, params)
        sql = self.postgresql if conn.dialect.name == "postgresql" else self.sqlite
        return conn.exec_driver_sql(sql, dict(params))


def driver_time(conn: Connection, value: datetime) -> datetime | str:
    """A time as a DriverStatement bind: naive UTC, as text in SQLAlchemy's form on SQLite."""
    return backend_time(conn.dialect.name, value)


def backend_time(backend: str, value: datetime) -> datetime | str:
    """`driver_time` for a backend by name, for binds built before a connection is at hand."""
    if backend != "sqlite":
        return to_db_time(value)
    # SQLAlchemy's form of a DateTime on SQLite, "YYYY-MM-DD HH:MM:SS.ffffff" (always microseconds).
    if value.tzinfo is UTC:  # the usual case: the text without its "+00:00", no naive copy made
        return value.isoformat(" ", "microseconds")[:_SQLITE_TIME_LENGTH]
    return to_db_time(value).isoformat(" ", "microseconds")


def from_driver_time(value: datetime | str) -> datetime:
    """A time a DriverStatement read (text on SQLite, naive UTC on PostgreSQL), as aware UTC."""
    if isinstance(value, str):
        if len(value) == _SQLITE_TIME_LENGTH:  # what `backend_time` writes: read it as UTC at once
            return datetime.fromisoformat(value + "+00:00")
        value = datetime.fromisoformat(value)
    return from_db_time(value)


def driver_json(value: Any) -> str:
    """A JSON column's value as a DriverStatement bind: JSON text, which SQLAlchemy's JSON type reads."""
    return compact_json(value).decode()


def from_driver_json(value: Any) -> Any:
    """An object or array JSON column a DriverStatement read: text on SQLite, decoded on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value


def in_list(name: str, count: int) -> str:
    """`:name_0, :name_1, ...`: the binds of an IN list of `count` values."""
    return ", ".join(f":{name}_{i}" for i in range(count))


def values_sql(table: Table, columns: Sequence[str], count: int) -> str:
    """`INSERT INTO table (columns) VALUES ...` of `count` rows, with binds `<column>_<row>`."""
    return _values_sql(table.name, tuple(columns), count)


@functools.lru_cache(maxsize=512)
def _values_sql(table: str, columns: tuple[str, ...], count: int) -> str:
    rows = ", ".join("(" + ", ".join(f":{c}_{i}" for c in columns) + ")" for i in range(count))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {rows}"  # noqa: S608


def values_params(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The binds of `values_sql` for these rows."""
    return {f"{column}_{i}": row[column] for i, row in enumerate(rows) for column in columns}


@functools.lru_cache(maxsize=512)
def _driver_statement(sql: str) -> DriverStatement:
    return DriverStatement(sql)


class WriteBatch:
    """Writes of one transaction that read nothing back, sent in one round trip on PostgreSQL.

    Each part is one INSERT or UPDATE. On PostgreSQL they become the data-modifying CTEs of one
    statement, which all see the transaction as it stood before it: parts must not depend on each
    other's rows. SQLite runs them one after another (in-process, there is no round trip to save).
    """

    def __init__(self) -> None:
        self._parts: list[tuple[str, Mapping[str, Any]]] = []

    def add(self, sql: str, params: Mapping[str, Any]) -> None:
        """Add one statement written with `:name` binds."""
        self._parts.append((sql, params))

    def run(self, conn: Connection) -> None:
        if conn.dialect.name != "postgresql":
            for sql, params in self._parts:
                _driver_statement(sql).run(conn, params)
        elif self._parts:
            # Each part's binds get the prefix of its CTE, so that parts never collide.
            parts = [_prefixed(f"w{i}_", sql, params) for i, (sql, params) in enumerate(self._parts)]
            *first, (last, _) = parts
            ctes = ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(first))
            sql = f"WITH {ctes} {last}" if ctes else last
            _driver_statement(sql).run(conn, {k: v for _, params in parts for k, v in params.items()})
        self._parts.clear()


def _prefixed(prefix: str, sql: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    renamed = _NAMED_BIND.sub(lambda m: f":{prefix}{m.group(1)}", sql)
    return renamed, {prefix + name: value for name, value in params.items()}


def insert_for(conn: Connection, table: Table) -> Any:
    """An INSERT that supports ON CONFLICT on the connection's backend."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def upsert(
    table: Table,
    columns: Sequence[str],
    conflict: Sequence[str],
    *,
    set_: Mapping[str, str] | None = None,
    returning: Sequence[str] = (),
) -> TextClause:
    """A cacheable `INSERT ... ON CONFLICT` in the syntax SQLite and PostgreSQL share.

    SQLAlchemy 2.0 never caches its dialect-specific insert constructs (`inherit_cache = False`), and
    compiling one on every webhook cost more than the database work itself. Names come from our
    own schema, never from input; values are typed bind parameters.
    """
    names = ", ".join(columns)
    values = ", ".join(f":{c}" for c in columns)
    action = "DO UPDATE SET " + ", ".join(f"{k} = {v}" for k, v in set_.items()) if set_ else "DO NOTHING"
    target = ", ".join(conflict)
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({values}) ON CONFLICT ({target}) {action}"  # noqa: S608
    if returning:
        sql += f" RETURNING {', '.join(returning)}"
    binds = [bindparam(c, type_=table.c[c].type) for c in columns]
    return text(sql).bindparams(*binds)
