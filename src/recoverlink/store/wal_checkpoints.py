"""SQLite's WAL checkpoints, run from a thread of their own so that writers do not pay for them.

With SQLite's automatic checkpoint, the commit that took the WAL past 1,000 pages copied them into
the database file and synced it while still holding the write lock. In the ingest benchmark that
was one delivery in about seventy holding the lock for 20-100 ms instead of under 1 ms, with every
queued writer waiting behind it: the whole p99. The store's connections are opened with
`wal_autocheckpoint=0`, and this thread runs a PASSIVE checkpoint (which waits for no reader or
writer) every `interval` seconds. Under steady writes that never lets the WAL start over (a writer
restarts it only when every page has been copied), so once it holds more than `restart_pages`
the thread copies the last few pages in the writers' turn, which is short because the pages
before them are copied already.

Every process that writes starts this thread, but only one per database checkpoints: the one
holding an flock on a file beside it (released when that process exits, and taken over by the
next thread that looks). With one each, every gunicorn worker and the outbox worker took the
writers' turn for the last pages about once a second, 15-25 ms each under load: the insert
path's p99.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy import Engine

from recoverlink.domain.errors import StoreUnavailable

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 1.0
RESTART_PAGES = 4_000  # about 16 MB of WAL with 4 KiB pages (SQLite's own default: 1,000)
CATCH_UP_ROUNDS = 8
CAUGHT_UP_PAGES = 64


class WalCheckpointer:
    """Checkpoints one SQLite database from a daemon thread per process, started on first use."""

    def __init__(
        self,
        engine: Engine,
        writer_turn: Callable[[], AbstractContextManager[None]],
        interval: float = INTERVAL_SECONDS,
        restart_pages: int = RESTART_PAGES,
    ) -> None:
        self.engine = engine
        self.writer_turn = writer_turn
        self.interval = interval
        self.restart_pages = restart_pages
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()
        database = engine.url.database
        self._election_path = f"{database}-checkpointer" if database and database != ":memory:" else None
        self._election_fd: int | None = None
        self._election_pid = 0

    def ensure_running(self) -> None:
        """Start the thread in this process if it is not running (a forked child starts its own)."""
        if self.running:
            return
        with self._lock:
            if not self.running:
                self._stop.clear()
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="sqlite-wal-checkpoints", daemon=True)
                self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._pid == os.getpid() and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._thread = None
        self._resign()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                if self.elected():
                    self.checkpoint()
        finally:
            self._resign()

    def elected(self) -> bool:
        """Whether this process checkpoints the database: it holds, or now takes, the election flock."""
        if self._election_path is None:
            return True
        if self._election_fd is not None and self._election_pid == os.getpid():
            return True
        # A descriptor inherited across fork shares its lock with the parent: open one of our own.
        fd = os.open(self._election_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._election_fd, self._election_pid = fd, os.getpid()
        return True

    def _resign(self) -> None:
        if self._election_fd is not None and self._election_pid == os.getpid():
            os.close(self._election_fd)  # releases the flock: another process's thread takes over
        self._election_fd = None

    def checkpoint(self) -> tuple[int, int, int] | None:
        """One PASSIVE checkpoint, finished in the writers' turn past `restart_pages`: SQLite's
        (busy, WAL pages, pages copied), or None when it failed (logged; the next one retries)."""
        try:
            result = self._catch_up(self._pragma())
            if result[1] > self.restart_pages:
                with self.writer_turn():
                    result = self._pragma()
        except (sqlite3.Error, OSError, StoreUnavailable) as exc:
            log.warning("SQLite WAL checkpoint failed: %s", exc)
            return None
        log.debug("SQLite WAL checkpoint: busy %d, %d pages, %d copied", *result)
        return result

    def _catch_up(self, result: tuple[int, int, int]) -> tuple[int, int, int]:
        """Past `restart_pages`, checkpoint again while writers appended many pages during the last
        one, so that the turn is left only the few appended since: copying each costs about 15 us
        while every writer waits (a second behind, the turn took 10-25 ms; caught up, 3-8 ms)."""
        for _ in range(CATCH_UP_ROUNDS):
            if result[1] <= self.restart_pages:
                break
            before = result[1]  # the pages a checkpoint reports are those in the WAL as it began
            result = self._pragma()
            if result[1] - before <= CAUGHT_UP_PAGES:
                break
        return result

    def _pragma(self) -> tuple[int, int, int]:
        connection = self.engine.raw_connection()
        try:
            row = connection.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            connection.close()
        return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)
