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
"""

from __future__ import annotations

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

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.checkpoint()

    def checkpoint(self) -> tuple[int, int, int] | None:
        """One PASSIVE checkpoint, finished in the writers' turn past `restart_pages`: SQLite's
        (busy, WAL pages, pages copied), or None when it failed (logged; the next one retries)."""
        try:
            result = self._pragma()
            if result[1] > self.restart_pages:
                with self.writer_turn():
                    result = self._pragma()
        except (sqlite3.Error, OSError, StoreUnavailable) as exc:
            log.warning("SQLite WAL checkpoint failed: %s", exc)
            return None
        log.debug("SQLite WAL checkpoint: busy %d, %d pages, %d copied", *result)
        return result

    def _pragma(self) -> tuple[int, int, int]:
        connection = self.engine.raw_connection()
        try:
            row = connection.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            connection.close()
        return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)
