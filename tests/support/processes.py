"""Real processes for end-to-end tests: free loopback ports, start-and-wait, stop by PID.

Every process is started in a new session, so its process group id is its PID: the group holds
only that process and the children it forks (gunicorn workers), never anything the test did not
start. Stopping sends SIGTERM to the process, waits a grace period, then SIGKILLs the group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import requests

LOOPBACK = "127.0.0.1"
T = TypeVar("T")


def free_port(*, udp: bool = False) -> int:
    """A port that is free on 127.0.0.1 for TCP (and for UDP too when `udp`, as memberlist needs).

    The port is released before it is returned, so another program could take it in between; the
    kernel rarely hands the same ephemeral port out again at once, which makes that rare.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOOPBACK, 0))
            port: int = tcp.getsockname()[1]
            if not udp:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram:
                try:
                    datagram.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port on 127.0.0.1 for both TCP and UDP after 50 tries")


def free_ports(count: int, *, udp: bool = False) -> list[int]:
    """`count` distinct free ports."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port(udp=udp))
    return sorted(ports)


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    details: Callable[[], str] | None = None,
) -> T:
    """Call `check` until it returns something other than None/False; fail after `timeout` seconds.

    The failure names `what` was awaited and appends `details()` (a log tail, the last state seen).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{details()}" if details is not None else ""
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}{extra}", pytrace=False)
        time.sleep(interval)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status of a GET, or None when nothing answers."""
    try:
        return requests.get(url, timeout=timeout).status_code
    except requests.RequestException:
        return None


@dataclass
class RunningProcess:
    name: str
    argv: Sequence[str]
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(no log at {self.log_path}: {exc.strerror})"
        tail = text.splitlines()[-lines:]
        header = f"--- last {len(tail)} lines of {self.log_path} ---"
        return "\n".join([header, *tail]) if tail else f"(log {self.log_path} is empty)"

    def describe(self) -> str:
        state = "running" if self.popen.poll() is None else f"exited with {self.popen.returncode}"
        return f"{self.name} (pid {self.pid}, {state}): {' '.join(self.argv)}\n{self.log_tail()}"


@contextmanager
def running_process(
    name: str,
    argv: Sequence[str],
    *,
    log_dir: Path,
    ready_url: str,
    timeout: float = 30.0,
    grace: float = 10.0,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[RunningProcess]:
    """Start `argv`, wait until GET `ready_url` answers 200, and stop the process on exit.

    Output goes to `log_dir/<name>.log`. A process that exits early or is not ready within
    `timeout` seconds fails the test with the tail of that log.
    """
    executable = Path(argv[0])
    if not executable.is_file() or not os.access(executable, os.X_OK):
        pytest.fail(f"cannot start {name}: {argv[0]} is not an executable file", pytrace=False)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log_file:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    process = RunningProcess(name=name, argv=argv, popen=popen, log_path=log_path)
    try:
        _wait_ready(process, ready_url, timeout)
        yield process
    finally:
        stop_process(process, grace)


def _wait_ready(process: RunningProcess, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: int | None = None
    while True:
        if process.popen.poll() is not None:
            pytest.fail(
                f"{process.name} exited with {process.popen.returncode} before {url} answered\n"
                f"{process.describe()}",
                pytrace=False,
            )
        last = http_status(url, timeout=1.0)
        if last == 200:
            return
        if time.monotonic() >= deadline:
            seen = "no answer" if last is None else f"last answer {last}"
            pytest.fail(
                f"{process.name} was not ready: GET {url} did not answer 200 within {timeout:g} s "
                f"({seen})\n{process.describe()}",
                pytrace=False,
            )
        time.sleep(0.1)


def stop_process(process: RunningProcess, grace: float = 10.0) -> None:
    """SIGTERM the process, SIGKILL its group after `grace` seconds, and reap it."""
    popen = process.popen
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)  # a no-op once the child is reaped: never a reused PID
        try:
            popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _kill_group(popen.pid)
            popen.wait(timeout=grace)
    # Children that outlived their parent (a killed gunicorn master's workers) share its group.
    _kill_group(popen.pid)


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of the group that `start_new_session` made for our child."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
