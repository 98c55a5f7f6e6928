"""Group commit on SQLite: writes queued behind a running transaction share the next one."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Connection

from recoverlink.domain.errors import StoreUnavailable
from recoverlink.logs import request_id
from recoverlink.store.engine import Store
from recoverlink.store.group_commit import GroupCommit
from tests.support.change_rows import INSERT_CHANGE, change, stored_change_keys


def insert(key: str) -> Callable[[Connection], str]:
    def work(conn: Connection) -> str:
        INSERT_CHANGE.run(conn, change(key))
        return key

    return work


class CountedTransactions:
    """The store's write transactions, counted; the one numbered `fail` fails before its commit."""

    def __init__(self, store: Store, fail: tuple[int, BaseException] | None = None) -> None:
        self.store = store
        self.opened = 0
        self.fail = fail

    @contextlib.contextmanager
    def __call__(self) -> Iterator[Connection]:
        self.opened += 1
        number = self.opened
        with self.store.write() as conn:
            yield conn
            if self.fail is not None and self.fail[0] == number:
                raise self.fail[1]


def in_threads(group: GroupCommit, works: list[Callable[[Connection], Any]]) -> list[Any]:
    """Run each work from a thread of its own; each result, or the exception it raised."""
    results: list[Any] = [None] * len(works)

    def call(i: int) -> None:
        try:
            results[i] = group.run(works[i])
        except Exception as exc:  # collected: the test asserts on it
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(works))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return results


@contextlib.contextmanager
def leader_held(group: GroupCommit, queued: int) -> Iterator[threading.Thread]:
    """A first write that stays inside its transaction until `queued` more works wait behind it."""
    inside = threading.Event()

    def hold(conn: Connection) -> str:
        INSERT_CHANGE.run(conn, change("leader"))
        inside.set()
        deadline = time.monotonic() + 10
        while group.queued < queued and time.monotonic() < deadline:
            time.sleep(0.005)
        return "leader"

    thread = threading.Thread(target=group.run, args=(hold,))
    thread.start()
    assert inside.wait(10)
    yield thread
    thread.join(timeout=10)


def test_writes_queued_behind_a_running_transaction_commit_together_in_the_next(
    sqlite_store: Store,
) -> None:
    transactions = CountedTransactions(sqlite_store)
    group = GroupCommit(transactions)
    results: list[Any] = []
    with leader_held(group, queued=3):
        results = in_threads(group, [insert("a"), insert("b"), insert("c")])
    assert results == ["a", "b", "c"]
    assert transactions.opened == 2  # the leader's, then one for the three that queued
    assert stored_change_keys(sqlite_store) == ["a", "b", "c", "leader"]


def test_a_work_that_raises_gets_its_error_and_the_rest_of_its_batch_still_commits(
    sqlite_store: Store,
) -> None:
    group = GroupCommit(CountedTransactions(sqlite_store))

    def broken(conn: Connection) -> str:
        INSERT_CHANGE.run(conn, change("half-written"))
        raise ValueError("a bug in one delivery")

    with leader_held(group, queued=3):
        results = in_threads(group, [insert("a"), broken, insert("c")])
    assert results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], ValueError)
    assert stored_change_keys(sqlite_store) == ["a", "c", "leader"]  # nothing of the broken one


def test_a_failed_commit_fails_every_work_of_its_batch(sqlite_store: Store) -> None:
    lost = StoreUnavailable("store unavailable: disk I/O error")
    group = GroupCommit(CountedTransactions(sqlite_store, fail=(2, lost)))
    with leader_held(group, queued=2):
        results = in_threads(group, [insert("a"), insert("b")])
    assert results == [lost, lost]
    assert stored_change_keys(sqlite_store) == ["leader"]


def test_when_no_transaction_can_start_every_queued_work_gets_the_error() -> None:
    down = StoreUnavailable("store unavailable: timed out waiting for the SQLite write lock")

    @contextlib.contextmanager
    def unavailable() -> Iterator[Connection]:
        raise down
        yield  # pragma: no cover  (a generator, as a transaction is)

    group = GroupCommit(unavailable)
    with pytest.raises(StoreUnavailable):
        group.run(insert("a"))
    assert in_threads(group, [insert("b"), insert("c")]) == [down, down]
    assert group.queued == 0


def test_a_grouped_work_runs_with_the_request_id_of_the_thread_that_sent_it(sqlite_store: Store) -> None:
    group = GroupCommit(CountedTransactions(sqlite_store))
    seen: dict[str, str | None] = {}

    def noting(name: str) -> Callable[[Connection], str]:
        def work(conn: Connection) -> str:
            seen[name] = request_id.get()
            return name

        return work

    def send(name: str) -> None:
        request_id.set(f"req-{name}")
        group.run(noting(name))

    with leader_held(group, queued=2):
        threads = [threading.Thread(target=send, args=(n,)) for n in ("x", "y")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert seen == {"x": "req-x", "y": "req-y"}


def test_grouped_writes_commit_on_both_backends(store: Store) -> None:
    assert store.write_grouped(insert("solo")) == "solo"
    assert stored_change_keys(store) == ["solo"]
