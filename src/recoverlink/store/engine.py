"""Engines for SQLite and PostgreSQL; transactions that turn an unreachable store into StoreUnavailable."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from recoverlink.config.model import DatabaseConfig
from recoverlink.domain.errors import StoreUnavailable
from recoverlink.store.group_commit import GroupCommit
from recoverlink.store.sqlite_cursor import TRACED, driver_transaction, run_on_cursor, uses_cursor
from recoverlink.store.wal_checkpoints import WalCheckpointer

T = TypeVar("T")


@dataclass(frozen=True)
class StoreOptions:
    sqlite_synchronous: str = "NORMAL"
    busy_timeout_ms: int = 5000
    pool_size: int = 10
    connect_timeout_seconds: float = 5.0

    @classmethod
    def from_config(cls, db: DatabaseConfig) -> StoreOptions:
        return cls(
            sqlite_synchronous=db.sqlite_synchronous,
            busy_timeout_ms=db.busy_timeout_ms,
            pool_size=db.pool_size,
            connect_timeout_seconds=db.connect_timeout_seconds,
        )


def make_engine(url: str, options: StoreOptions | None = None) -> Engine:
    """An engine tuned for the backend: WAL and explicit write locks on SQLite, a pool on PostgreSQL."""
    options = options or StoreOptions()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, options)
    return create_engine(
        url,
        pool_size=options.pool_size,
        max_overflow=options.pool_size,
        # No pre-ping: it cost a round trip per request. A connection that died with the server
        # fails once (503, the sender retries) and the pool replaces it.
        pool_recycle=300,
        pool_timeout=options.connect_timeout_seconds,
        connect_args={"connect_timeout": max(1, int(options.connect_timeout_seconds))},
    )


def _sqlite_engine(url: str, options: StoreOptions) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        pool_size=options.pool_size,
        max_overflow=options.pool_size,
        connect_args={"timeout": options.busy_timeout_ms / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so writes can BEGIN IMMEDIATE (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={options.sqlite_synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(options.busy_timeout_ms)}")
        cursor.execute("PRAGMA wal_autocheckpoint=0")  # the store's own thread checkpoints (wal_checkpoints)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A write that starts as a read and upgrades its lock can fail with SQLITE_BUSY without
        # waiting; taking the write lock up front makes writers queue on busy_timeout instead.
        options = conn.get_execution_options()
        driver = conn.connection.driver_connection
        if driver is not None and driver.in_transaction:
            return  # a statement inside a `driver_transaction`: SQLAlchemy joins it
        begin = _begin_statement(options)
        if options.get(TRACED, False):
            conn.exec_driver_sql(begin)  # through SQLAlchemy, for its span
        else:
            # On the driver's connection: SQLAlchemy's execution cost more than the BEGIN itself.
            run_on_cursor(conn, begin, {})

    return engine


def _begin_statement(options: Mapping[str, Any]) -> str:
    """BEGIN IMMEDIATE for a connection that `Store.write` marked, a plain BEGIN otherwise."""
    return "BEGIN IMMEDIATE" if options.get("recoverlink_write", False) else "BEGIN"


# sqlite3 raises OperationalError for SQL mistakes too ("no such table"); only these mean "try later".
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "unable to open", "disk i/o error")


def is_unavailable(exc: BaseException) -> bool:
    """Errors that mean "the store cannot answer now" (down, locked, connection lost), not a bug."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    if exc.orig is not None and type(exc.orig).__module__.startswith("sqlite3"):
        return any(text in str(exc.orig).lower() for text in _SQLITE_TRANSIENT)
    return True


@contextmanager
def _unavailable_as_store_error() -> Iterator[None]:
    """Raise a database error that means "cannot answer now" (is_unavailable) as StoreUnavailable."""
    try:
        yield
    except DBAPIError as exc:
        if is_unavailable(exc):
            raise StoreUnavailable(f"store unavailable: {exc.orig}") from exc
        raise


class _SqliteWriterQueue:
    """Queue SQLite writers on locks that wake the next one at once.

    SQLite admits one writer at a time, and its busy handler polls with sleeps of up to 100 ms, so
    under concurrent webhooks the unlucky waiter's latency explodes. Threads of one process queue on
    a lock, processes on an flock of a file beside the database; SQLite's own lock then never waits.
    """

    def __init__(self, database: str, timeout_seconds: float) -> None:
        self.path = f"{database}-writelock"
        self.timeout_seconds = timeout_seconds
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int:
        # A descriptor inherited across fork would share its lock with the parent: reopen per process.
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    @contextmanager
    def turn(self) -> Iterator[None]:
        if not self._thread_lock.acquire(timeout=self.timeout_seconds):
            raise StoreUnavailable("store unavailable: timed out waiting for the SQLite write lock")
        try:
            fd = self._file()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


class Store:
    """The database handle of one process: transactions with unavailability mapped to 503."""

    def __init__(self, engine: Engine, busy_timeout_ms: int = 5000) -> None:
        self.engine = engine
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self._writers: _SqliteWriterQueue | None = None
        self._checkpoints: WalCheckpointer | None = None
        self._group: GroupCommit | None = None
        if database and database != ":memory:":
            self._writers = _SqliteWriterQueue(database, busy_timeout_ms / 1000)
            self._checkpoints = WalCheckpointer(engine, self._writers.turn)
            # `self.write` looked up per batch: a wrapper installed on the store later is used too.
            self._group = GroupCommit(lambda: self.write())  # noqa: PLW0108

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        if self._writers is None:
            yield
        else:
            with self._writers.turn():
                yield

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction; commits on exit. On SQLite it holds the write lock throughout."""
        if self._checkpoints is not None:
            self._checkpoints.ensure_running()
        # The connection is checked out before the turn and returned after it: only the
        # transaction itself runs while other writers wait.
        with _unavailable_as_store_error(), self.engine.connect() as conn:
            conn.execution_options(recoverlink_write=True)
            with self._writer_turn(), self._transaction(conn):
                yield conn

    def write_grouped(self, work: Callable[[Connection], T]) -> T:
        """`work(conn)` in a committed write transaction that on SQLite it may share with the writes
        other threads of this process queued meanwhile (group_commit). `work` must only use `conn`
        and its arguments: it may run on another thread, and run again after a rollback."""
        if self._group is None or self.engine.get_execution_options().get(TRACED, False):
            with self.write() as conn:  # traced: each request keeps its own spans
                return work(conn)
        with _unavailable_as_store_error():  # a work's own error reaches its thread unmapped
            return self._group.run(work)

    def _transaction(self, conn: Connection) -> AbstractContextManager[Any]:
        if uses_cursor(conn):
            return driver_transaction(conn, _begin_statement(conn.get_execution_options()))
        return conn.begin()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with _unavailable_as_store_error(), self.engine.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.stop()
        self.engine.dispose()


def open_store(url: str, options: StoreOptions | None = None) -> Store:
    options = options or StoreOptions()
    return Store(make_engine(url, options), options.busy_timeout_ms)
