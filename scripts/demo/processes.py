"""The demo's processes: loopback ports, waiting for readiness, starting and stopping by PID.

The same discipline as the test suite's `tests/support/processes.py`, without pytest: every program
starts in a new session, so its process group id is its PID and the group holds only that program
and what it forks (gunicorn's workers, rt-server's). Stopping sends SIGTERM, waits a grace period,
then SIGKILLs that group and reaps the child. Nothing is ever signalled by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import requests

LOOPBACK = "127.0.0.1"
T = TypeVar("T")


class DemoError(Exception):
    """Something the demo needs did not happen; the message says what and where to look."""


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:`port` now: bound as servers bind (SO_REUSEADDR),
    so that the TIME_WAIT connections of the demo's previous run do not count as taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port the kernel hands out as free on 127.0.0.1 (released again before it is returned)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def choose_port(preferred: int, *, taken: set[int], prefer_fixed: bool) -> int:
    """`preferred` when it is free and wanted, else a free port; never one in `taken` (which grows)."""
    if prefer_fixed and preferred not in taken and port_is_free(preferred):
        port = preferred
    else:
        port = free_port()
        while port in taken:
            port = free_port()
    taken.add(port)
    return port


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    details: Callable[[], str] | None = None,
) -> T:
    """Call `check` until it returns something other than None/False; DemoError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{details()}" if details is not None else ""
            raise DemoError(f"timed out after {timeout:g} s waiting for {what}{extra}")
        time.sleep(interval)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status of a GET, or None when nothing answers."""
    try:
        return requests.get(url, timeout=timeout).status_code
    except requests.RequestException:
        return None


@dataclass
class Started:
    """One program the demo started: its name, argv, child and log file."""

    name: str
    argv: Sequence[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    signal_group: bool  # SIGTERM the whole group (rt-server) or the leader only (gunicorn's master)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(no log at {self.log_path}: {exc.strerror})"
        tail = text.splitlines()[-lines:]
        return "\n".join([f"--- last {len(tail)} lines of {self.log_path} ---", *tail])

    def describe(self) -> str:
        state = "running" if self.running() else f"exited with {self.popen.returncode}"
        return f"{self.name} (pid {self.pid}, {state})\n{self.log_tail()}"


@dataclass
class Supervisor:
    """Every process the demo started, in start order; `stop_all` stops them in reverse order."""

    log_dir: Path
    grace_seconds: float = 15.0
    started: list[Started] = field(default_factory=list)
    on_start: Callable[[Started], None] | None = None

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path | None = None,
        user: str | None = None,
        signal_group: bool = False,
        log_path: Path | None = None,
    ) -> Started:
        """Start `argv` in a session of its own, output to `log_dir/<name>.log`."""
        executable = Path(argv[0])
        if not executable.is_file() or not os.access(executable, os.X_OK):
            raise DemoError(f"cannot start {name}: {argv[0]} is not an executable file")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_path or self.log_dir / f"{name}.log"
        with log_path.open("ab") as log_file:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                user=user,  # None: as the demo runs; a name: that user and its own group only
                group=user,
                extra_groups=[] if user is not None else None,
            )
        process = Started(name, argv, popen, log_path, signal_group)
        self.started.append(process)
        if self.on_start is not None:
            self.on_start(process)
        return process

    def wait_ready(self, process: Started, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Until `ready()`; an early exit or a timeout raises DemoError with the log's tail."""

        def check() -> bool:
            if not process.running():
                raise DemoError(
                    f"{process.name} exited with {process.popen.returncode} before {what}\n"
                    f"{process.describe()}"
                )
            return ready()

        wait_until(check, timeout=timeout, what=f"{what} ({process.name})", details=process.describe)

    def wait_http_ok(self, process: Started, url: str, timeout: float = 30.0) -> None:
        """Until GET `url` answers 200."""
        self.wait_ready(process, lambda: http_status(url, timeout=1.0) == 200, timeout, f"GET {url} = 200")

    def stop_all(self, on_stop: Callable[[Started, float], None] | None = None) -> None:
        """Stop every process, last started first; `on_stop` hears each and how long it took."""
        while self.started:
            process = self.started[-1]
            began = time.monotonic()
            stop(process, self.grace_seconds)
            self.started.pop()
            if on_stop is not None:
                on_stop(process, time.monotonic() - began)


def stop(process: Started, grace: float) -> None:
    """SIGTERM the process (or its group), SIGKILL the group after `grace` s, reap it."""
    popen = process.popen
    if popen.poll() is None:
        if process.signal_group:
            _signal_group(popen.pid, signal.SIGTERM)
        else:
            popen.send_signal(signal.SIGTERM)  # a no-op once reaped: never a reused PID
        try:
            popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(popen.pid, signal.SIGKILL)
            popen.wait(timeout=grace)
    # Children that outlived their parent (workers of a killed master) are still in its group.
    _signal_group(popen.pid, signal.SIGKILL)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    """Signal the group `start_new_session` made for our child; gone already is fine."""
    with suppress(ProcessLookupError):
        os.killpg(pgid, signum)
