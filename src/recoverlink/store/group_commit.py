"""Group commit: the webhook writes that queue in one process share one SQLite transaction.

On SQLite every write waits for the one write lock, and what the holder pays besides its own
statements (taking the lock across processes, a page cache that another process's commit made
stale, the commit's WAL frames, the GIL that sibling threads keep for up to 5 ms whenever a
statement lets it go) is paid once per transaction. So the thread that gets the lock runs the
work of every thread that queued behind it in the same process and commits once; the others
sleep meanwhile (leaving the GIL to the one holding the lock) and wake with their own result.
A work that raises rolls the transaction back and gets its exception; the rest run again in a new
transaction, so works must only write through `conn` (no savepoints: each would be two more
statements, and every statement lets the GIL go). A failed commit fails them all.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

T = TypeVar("T")


class _Pending(Generic[T]):
    """One thread's work, and what became of it: a result, or the exception to raise in its thread."""

    __slots__ = ("_signal", "context", "error", "lead", "result", "work")

    def __init__(self, work: Callable[[Connection], T]) -> None:
        self.work = work
        self.context = contextvars.copy_context()  # its request id, for what it logs
        # Held from the start and released once, by whoever finishes or promotes it: an Event
        # for one waiter, at a fraction of threading.Event's cost on every delivery.
        self._signal = threading.Lock()
        self._signal.acquire()
        self.lead = False  # set before the signal when this thread is to run the next batch
        self.result: T | None = None
        self.error: BaseException | None = None

    def wait(self) -> None:
        self._signal.acquire()

    def wake(self) -> None:
        self._signal.release()

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]  # set whenever error is not


class GroupCommit:
    """Runs write work of this process's threads in shared transactions, one batch at a time.

    `transaction` opens one write transaction (the store's, with its lock and error mapping). A
    thread that finds no batch running leads: it takes the lock, then everything queued by then
    (itself included), and hands the lead to the first thread queued after, if any.
    """

    def __init__(self, transaction: Callable[[], AbstractContextManager[Connection]]) -> None:
        self._transaction = transaction
        self._lock = threading.Lock()
        self._queue: list[_Pending[Any]] = []
        self._leading = False

    @property
    def queued(self) -> int:
        """How many works wait for the next batch."""
        with self._lock:
            return len(self._queue)

    def run(self, work: Callable[[Connection], T]) -> T:
        """`work(conn)` inside a committed write transaction, maybe beside other threads' work."""
        pending = _Pending(work)
        with self._lock:
            self._queue.append(pending)
            lead = not self._leading
            self._leading = True
        if not lead:
            pending.wait()
            if not pending.lead:
                return pending.outcome()
        self._lead(pending)
        return pending.outcome()

    def _lead(self, leader: _Pending[Any]) -> None:
        batch: list[_Pending[Any]] = []
        try:
            batch = self._run_batch()
        finally:
            self._hand_over(batch, leader)

    def _run_batch(self) -> list[_Pending[Any]]:
        """Run what is queued once the lock is held; returns the batch, each with its outcome."""
        batch: list[_Pending[Any]] | None = None
        remaining: list[_Pending[Any]] = []
        while True:
            try:
                with self._transaction() as conn:
                    if batch is None:
                        with self._lock:
                            batch, self._queue = self._queue, []
                        remaining = list(batch)
                    for pending in remaining:
                        _run(conn, pending)
                return batch
            except _WorkFailed as failed:
                # Rolled back: the others run again without it (their work is only statements).
                failed.pending.error = failed.error
                remaining = [p for p in remaining if p is not failed.pending]
                if not remaining:
                    return batch or []
            except BaseException as exc:
                if batch is None:  # no transaction (the lock timed out, the store is down)
                    with self._lock:
                        batch, self._queue = self._queue, []
                    remaining = batch
                for pending in remaining:
                    pending.error = exc
                return batch

    def _hand_over(self, batch: list[_Pending[Any]], leader: _Pending[Any]) -> None:
        """Promote the first work queued meanwhile, if any, then wake the batch (not the leader:
        it is awake, and a promoted leader's signal was spent on its promotion)."""
        with self._lock:
            if self._queue:
                follower = self._queue[0]
                follower.lead = True
                follower.wake()
            else:
                self._leading = False
        for pending in batch:
            if pending is not leader:
                pending.wake()


class _WorkFailed(Exception):
    """One work's exception, carried out of the transaction so that it rolls back."""

    def __init__(self, pending: _Pending[Any], error: Exception) -> None:
        super().__init__(str(error))
        self.pending = pending
        self.error = error


def _run(conn: Connection, pending: _Pending[Any]) -> None:
    try:
        pending.result = pending.context.run(pending.work, conn)
    except Exception as exc:
        raise _WorkFailed(pending, exc) from exc
