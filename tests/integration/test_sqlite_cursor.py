"""The store's hot statements on SQLite's own cursor: same rows, same errors, spans when traced."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import MultipleResultsFound, NoResultFound, OperationalError

from recoverlink.domain.errors import StoreUnavailable
from recoverlink.store.common import DriverStatement
from recoverlink.store.engine import Store, is_unavailable
from recoverlink.store.sqlite_cursor import TRACED, DriverRows
from tests.support.change_rows import INSERT_CHANGE, change, stored_change_keys

PAIRS = DriverStatement("SELECT :a AS first, :b AS second UNION ALL SELECT :b, :a")
NOTHING = DriverStatement("SELECT 1 AS one WHERE 0")


def test_rows_read_on_the_cursor_have_sqlalchemy_names_and_shapes(sqlite_store: Store) -> None:
    with sqlite_store.write() as conn:
        rows = PAIRS.run(conn, {"a": 1, "b": "two"})
        nothing = NOTHING.run(conn, {})
    assert isinstance(rows, DriverRows)
    assert [(r.first, r.second) for r in rows.all()] == [(1, "two"), ("two", 1)]
    assert nothing.one_or_none() is None
    with pytest.raises(NoResultFound):
        nothing.one()
    with pytest.raises(MultipleResultsFound):
        rows.one_or_none()


def test_a_locked_database_on_the_cursor_is_the_store_being_unavailable(sqlite_store: Store) -> None:
    path = sqlite_store.engine.url.database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with sqlite_store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout=0")
            with pytest.raises(OperationalError) as raised:
                DriverStatement("DELETE FROM notifications").run(conn, {})
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert is_unavailable(raised.value)


def test_a_failed_write_on_the_cursor_rolls_the_transaction_back(sqlite_store: Store) -> None:
    def write_then_give_up() -> None:
        with sqlite_store.write() as conn:
            INSERT_CHANGE.run(conn, change("x"))
            raise StoreUnavailable("the caller gives up half-way")

    with pytest.raises(StoreUnavailable):
        write_then_give_up()
    with sqlite_store.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM itsm_changes").scalar_one() == 0


def test_a_sqlalchemy_statement_inside_a_write_joins_its_transaction_and_commits_with_it(
    sqlite_store: Store,
) -> None:
    with sqlite_store.write() as conn:
        INSERT_CHANGE.run(conn, change("on-the-cursor"))
        conn.exec_driver_sql(INSERT_CHANGE.sqlite, change("through-sqlalchemy"))
        assert conn.in_transaction()
    assert stored_change_keys(sqlite_store) == ["on-the-cursor", "through-sqlalchemy"]


def test_a_failed_write_rolls_back_what_both_paths_wrote(sqlite_store: Store) -> None:
    def write_then_fail() -> None:
        with sqlite_store.write() as conn:
            INSERT_CHANGE.run(conn, change("on-the-cursor"))
            conn.exec_driver_sql("SELECT count(*) FROM itsm_changes").scalar_one()
            INSERT_CHANGE.run(conn, change("after-sqlalchemy"))
            raise StoreUnavailable("the caller gives up half-way")

    with pytest.raises(StoreUnavailable):
        write_then_fail()
    assert stored_change_keys(sqlite_store) == []
    with sqlite_store.write() as conn:  # the connection went back to the pool with no transaction open
        INSERT_CHANGE.run(conn, change("next"))
    assert stored_change_keys(sqlite_store) == ["next"]


def test_a_traced_engine_runs_them_through_sqlalchemy_so_each_gets_its_span(sqlite_store: Store) -> None:
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(sqlite_store.engine, "before_cursor_execute", before)
    with sqlite_store.write() as conn:
        PAIRS.run(conn, {"a": 1, "b": 2})
    assert seen == []  # the cursor path, BEGIN included, fires no cursor events
    sqlite_store.engine.update_execution_options(**{TRACED: True})
    with sqlite_store.write() as conn:
        assert [r.first for r in PAIRS.run(conn, {"a": 1, "b": 2})] == [1, 2]
    assert seen == ["BEGIN IMMEDIATE", PAIRS.sqlite]
