"""A throw-away PostgreSQL server of the test's own, for tests that stop the database.

`running_postgres()` runs Debian's `initdb` into a fresh temp directory (trust auth, user
`postgres`), starts `postgres` on a free 127.0.0.1 port with its socket in that directory, and on
exit stops it and removes the directory. The server is a child of the test process, in a new
session, run as the `postgres` OS user (initdb and postgres refuse to run as root): `stop()` sends
SIGINT, PostgreSQL's "fast" shutdown (what `pg_ctl stop -m fast` sends), and `start()` brings it
back on the same port and data directory. The machine's shared PostgreSQL is never touched.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.support.processes import LOOPBACK, free_port, wait_until

PG_BIN = Path(os.environ.get("RECOVERLINK_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_OS_USER = "postgres"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 30.0
INSTALL_HINT = "apt-get install -y postgresql-15 (Debian's server binaries in /usr/lib/postgresql/15/bin)"


def throwaway_postgres_problem() -> str | None:
    """Why no throw-away PostgreSQL can run here, or None if it can."""
    missing = [name for name in ("initdb", "postgres") if not (PG_BIN / name).is_file()]
    if missing:
        return f"PostgreSQL server binaries missing in {PG_BIN} ({', '.join(missing)}): {INSTALL_HINT}"
    try:
        pwd.getpwnam(PG_OS_USER)
    except KeyError:
        return f"no OS user {PG_OS_USER!r} to run a throw-away PostgreSQL as"
    if os.geteuid() != 0:
        return f"a throw-away PostgreSQL runs as the {PG_OS_USER} OS user, so these tests must run as root"
    return None


@dataclass
class ThrowawayPostgres:
    """One server: its directory, port and log; `stop()` and `start()` it at will."""

    directory: Path
    port: int
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    stopped_for: list[float] = field(default_factory=list)  # seconds of each outage, for the report

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL recoverlink takes (RECOVERLINK_DATABASE_URL)."""
        return f"postgresql+psycopg://{PG_OS_USER}@{LOOPBACK}:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """The libpq DSN psycopg takes."""
        return f"postgresql://{PG_OS_USER}@{LOOPBACK}:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        """Start the server (again) on the same port and data directory; wait until it accepts queries."""
        assert not self.running, "the throw-away PostgreSQL is already running"
        argv = [
            str(PG_BIN / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-k", str(self.directory),
            "-c", f"listen_addresses={LOOPBACK}",
            # Only an OS crash loses what fsync protects; nothing here survives one anyway.
            "-c", "fsync=off",
            "-c", "max_connections=200",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                user=PG_OS_USER,
                group=PG_OS_USER,
                extra_groups=[],
                start_new_session=True,
            )
        self.starts += 1
        wait_until(
            self._accepts_queries,
            timeout=START_TIMEOUT_SECONDS,
            what=f"the throw-away PostgreSQL on port {self.port}",
            details=self.log_tail,
        )

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, disconnect clients); wait until it is gone."""
        popen, self.popen = self.popen, None
        if popen is None:
            return
        if popen.poll() is None:
            popen.send_signal(signal.SIGINT)
            try:
                popen.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                _kill_group(popen.pid)
                popen.wait(timeout=STOP_TIMEOUT_SECONDS)
        _kill_group(popen.pid)  # backends that outlived the postmaster share its group

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """Down for the length of the block, then started again on the same port."""
        self.stop()
        began = time.monotonic()
        try:
            yield
        finally:
            self.stopped_for.append(time.monotonic() - began)
            self.start()

    def create_database(self, name: str) -> str:
        """A new database on this server; its SQLAlchemy URL."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(no log at {self.log_path}: {exc.strerror})"
        return "\n".join([f"--- last lines of {self.log_path} ---", *text.splitlines()[-lines:]])

    def _accepts_queries(self) -> bool:
        if self.popen is not None and self.popen.poll() is not None:
            pytest.fail(
                f"the throw-away PostgreSQL exited with {self.popen.returncode}\n{self.log_tail()}",
                pytrace=False,
            )
        try:
            with psycopg.connect(self.dsn(), connect_timeout=1) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True


@contextmanager
def running_postgres() -> Iterator[ThrowawayPostgres]:
    """initdb into a new temp directory, start the server, and remove everything at the end."""
    problem = throwaway_postgres_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    # Not under pytest's tmp_path: its root is root's and 0700, and postgres must reach the directory.
    directory = Path(tempfile.mkdtemp(prefix="recoverlink-pg-"))
    try:
        shutil.chown(directory, PG_OS_USER, PG_OS_USER)
        directory.chmod(0o700)
        _initdb(directory)
        server = ThrowawayPostgres(directory=directory, port=free_port())
        try:
            server.start()
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _initdb(directory: Path) -> None:
    argv = [
        str(PG_BIN / "initdb"),
        "--pgdata", str(directory / "data"),
        "--username", PG_OS_USER,
        "--auth", "trust",
        "--encoding", "UTF8",
        "--locale", "C",
        "--no-sync",
    ]  # fmt: skip
    done = subprocess.run(
        argv,
        cwd=directory,
        user=PG_OS_USER,
        group=PG_OS_USER,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}", pytrace=False)


def _kill_group(pgid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
