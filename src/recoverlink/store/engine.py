"""Engines for SQLite and PostgreSQL; transactions that turn an unreachable store into StoreUnavailable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from recoverlink.config.model import DatabaseConfig
from recoverlink.domain.errors import StoreUnavailable


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
        pool_pre_ping=True,
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
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A write that starts as a read and upgrades its lock can fail with SQLITE_BUSY without
        # waiting; taking the write lock up front makes writers queue on busy_timeout instead.
        immediate = conn.get_execution_options().get("recoverlink_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


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


class Store:
    """The database handle of one process: transactions with unavailability mapped to 503."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction; commits on exit. On SQLite it holds the write lock throughout."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(recoverlink_write=True)
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(f"store unavailable: {exc.orig}") from exc
            raise

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except DBAPIError as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(f"store unavailable: {exc.orig}") from exc
            raise

    def dispose(self) -> None:
        self.engine.dispose()
