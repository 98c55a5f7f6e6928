"""How an idle worker waits for new jobs: LISTEN/NOTIFY on PostgreSQL, a short poll on SQLite.

Enqueuing on PostgreSQL sends `NOTIFY recoverlink_outbox` in the enqueuing transaction, so a
worker wakes the moment the job is committed. SQLite has no notifications; the worker polls.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

import psycopg

from recoverlink.store.engine import Store
from recoverlink.store.outbox import NOTIFY_CHANNEL

log = logging.getLogger(__name__)
STOP_CHECK_SECONDS = 0.1  # how soon a listening waiter notices `stop`


class Waiter(Protocol):
    def wait(self, timeout_seconds: float, stop: threading.Event) -> None:
        """Return when a job may be due, after `timeout_seconds` at most, or when `stop` is set."""
        ...

    def close(self) -> None: ...


class PollWaiter:
    """Sleep `interval_seconds` between looks (or less, when the next job is due sooner)."""

    def __init__(self, interval_seconds: float) -> None:
        self.interval_seconds = interval_seconds

    def wait(self, timeout_seconds: float, stop: threading.Event) -> None:
        stop.wait(min(timeout_seconds, self.interval_seconds))

    def close(self) -> None:
        """Nothing to release."""


class ListenWaiter:
    """Wait on a dedicated autocommit connection that LISTENs; reconnect after it drops."""

    def __init__(self, conninfo: str, retry_seconds: float = 1.0) -> None:
        self.conninfo = conninfo
        self.retry_seconds = retry_seconds
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def _listening(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
            self._conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return self._conn

    def wait(self, timeout_seconds: float, stop: threading.Event) -> None:
        deadline = time.monotonic() + max(timeout_seconds, 0.001)
        try:
            conn = self._listening()
            # psycopg cannot watch `stop`: listen in short slices and look at it in between.
            while not stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                # One notification is enough: the worker claims everything due when it wakes.
                woken = False
                for _ in conn.notifies(timeout=min(remaining, STOP_CHECK_SECONDS), stop_after=1):
                    woken = True
                if woken:
                    return
        except psycopg.Error as exc:
            log.warning("cannot listen for new jobs; polling", extra={"error": str(exc)})
            self.close()
            stop.wait(min(timeout_seconds, self.retry_seconds))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def waiter_for(store: Store, poll_interval_seconds: float) -> Waiter:
    """LISTEN on PostgreSQL, poll on SQLite."""
    if store.backend != "postgresql":
        return PollWaiter(poll_interval_seconds)
    url = store.engine.url.set(drivername="postgresql")
    return ListenWaiter(url.render_as_string(hide_password=False))
