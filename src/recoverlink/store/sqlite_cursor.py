"""Statements on SQLite's own cursor: the writes every webhook makes while it holds the write lock.

SQLAlchemy's execution of even a plain driver statement (events, result metadata built from the
cursor description every time) cost about as much as SQLite's own work for the few statements of
a delivery, and on SQLite every queued writer waits for it. Errors are raised as SQLAlchemy's
DBAPIError, as `exec_driver_sql` raises them, so callers see one kind of failure. When
OpenTelemetry instruments the engine (`TRACED` is set), statements go through SQLAlchemy so that
each one still gets its span.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import namedtuple
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound

TRACED = "recoverlink_traced"  # an engine execution option: cursor events are listened to


class DriverRows:
    """Rows read on the cursor, with the part of SQLAlchemy's result the store uses."""

    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return list(self._rows)

    def one_or_none(self) -> Any | None:
        if len(self._rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when one or none was required")
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        row = self.one_or_none()
        if row is None:
            raise NoResultFound("No row was found when one was required")
        return row


@functools.lru_cache(maxsize=256)
def _row_type(names: tuple[str, ...]) -> Any:
    """A named tuple per column list, so that rows read as `row.column` like SQLAlchemy's."""
    return namedtuple("DriverRow", names, rename=True)


def uses_cursor(conn: Connection) -> bool:
    """Whether DriverStatements on this connection run on the raw cursor (SQLite, not traced)."""
    return conn.dialect.name == "sqlite" and not conn.get_execution_options().get(TRACED, False)


def run_on_cursor(conn: Connection, sql: str, params: Mapping[str, Any]) -> DriverRows:
    """Run one statement in the connection's current transaction and read all its rows."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None, "a connection in use has its driver connection"
    cursor = dbapi.cursor()
    try:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        description = cursor.description
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, dict(params), exc, sqlite3.Error, dialect=conn.dialect) from exc
    finally:
        cursor.close()
    if not description:
        return DriverRows([])
    row_type = _row_type(tuple(column[0] for column in description))
    return DriverRows([row_type(*row) for row in rows])


@contextmanager
def driver_transaction(conn: Connection, begin: str) -> Iterator[None]:
    """A transaction begun and ended on the driver's connection, where SQLAlchemy's own begin and
    commit cost a webhook more than SQLite's. A statement that does go through SQLAlchemy inside
    it makes SQLAlchemy begin too, which joins this one (the engine's begin hook sees it open); the
    end then goes through SQLAlchemy, so that both agree the transaction is over."""
    run_on_cursor(conn, begin, {})
    try:
        yield
    except BaseException:
        _end(conn, commit=False)
        raise
    _end(conn, commit=True)


def _end(conn: Connection, *, commit: bool) -> None:
    if conn.in_transaction():
        if commit:
            conn.commit()
        else:
            conn.rollback()
    else:
        run_on_cursor(conn, "COMMIT" if commit else "ROLLBACK", {})
