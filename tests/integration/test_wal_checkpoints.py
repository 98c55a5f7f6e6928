"""SQLite's WAL is checkpointed by the store's own thread, never by a writer's commit."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from sqlalchemy import Engine

from recoverlink.config.loader import sqlite_url
from recoverlink.store.engine import Store, make_engine
from recoverlink.store.wal_checkpoints import WalCheckpointer


def write_rows(engine: Engine, count: int) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS filler (id INTEGER PRIMARY KEY, body TEXT)")
        for _ in range(count):
            conn.exec_driver_sql("INSERT INTO filler (body) VALUES (?)", ("x" * 2000,))


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return make_engine(sqlite_url(tmp_path / "wal.db"))


def test_store_connections_leave_checkpoints_to_the_store_thread(sqlite_store: Store) -> None:
    with sqlite_store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 0
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"


def test_a_checkpoint_copies_the_wal_and_lets_the_next_writer_start_it_over(engine: Engine) -> None:
    checkpointer = WalCheckpointer(engine, contextlib.nullcontext, restart_pages=0)
    write_rows(engine, 200)
    busy, pages, copied = checkpointer.checkpoint() or (1, 0, 0)
    assert busy == 0 and pages > 100 and copied == pages
    write_rows(engine, 1)  # every page was copied: this writer starts the WAL from its beginning
    assert (checkpointer.checkpoint() or (1, 0, 0))[1] < 10


def test_past_restart_pages_the_rest_is_copied_in_the_writers_turn(engine: Engine) -> None:
    turns: list[str] = []

    @contextlib.contextmanager
    def turn() -> Iterator[None]:
        turns.append("taken")
        yield

    write_rows(engine, 50)
    assert WalCheckpointer(engine, turn, restart_pages=10_000).checkpoint() is not None
    assert turns == []
    write_rows(engine, 50)
    assert WalCheckpointer(engine, turn, restart_pages=10).checkpoint() is not None
    assert turns == ["taken"]


def test_the_thread_checkpoints_on_its_own_and_stops_with_the_store(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="recoverlink.store.wal_checkpoints")
    checkpointer = WalCheckpointer(engine, contextlib.nullcontext, interval=0.02)
    checkpointer.ensure_running()
    assert checkpointer.running
    write_rows(engine, 20)
    deadline = time.monotonic() + 5
    while "SQLite WAL checkpoint: busy 0" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    checkpointer.stop()
    assert "SQLite WAL checkpoint: busy 0" in caplog.text
    assert not checkpointer.running


def test_one_checkpointer_per_database_checkpoints_and_another_takes_over_when_it_stops(
    engine: Engine,
) -> None:
    first = WalCheckpointer(engine, contextlib.nullcontext)
    second = WalCheckpointer(engine, contextlib.nullcontext)
    assert first.elected()
    assert not second.elected()  # the flock is held, as it would be by another process
    first.stop()
    assert second.elected()


class ScriptedCheckpoints(WalCheckpointer):
    """What SQLite reports for each checkpoint, scripted: the WAL's pages as each one began."""

    def __init__(self, engine: Engine, turn: Callable[[], AbstractContextManager[None]], pages: list[int]):
        super().__init__(engine, turn, restart_pages=4_000)
        self.pages = pages
        self.calls = 0

    def _pragma(self) -> tuple[int, int, int]:
        self.calls += 1
        count = self.pages.pop(0)
        return (0, count, count)


def test_past_restart_pages_it_checkpoints_again_until_writers_appended_few_pages_then_takes_the_turn(
    engine: Engine,
) -> None:
    turns: list[int] = []

    @contextlib.contextmanager
    def turn() -> Iterator[None]:
        turns.append(checkpoints.calls)
        yield

    # 5,000 pages; 1,500 more were appended during that checkpoint, 100 during the next, 20 after.
    checkpoints = ScriptedCheckpoints(engine, turn, [5_000, 6_500, 6_600, 6_620, 6_625])
    assert checkpoints.checkpoint() == (0, 6_625, 6_625)
    assert turns == [4]  # four outside the turn (the fourth found only 20 new), the fifth inside
