"""Take a throw-away Request Tracker (tests/support/rt.py) down and bring it back, for outage tests.

    with running_request_tracker(directory) as rt:
        with request_tracker_outage(rt, directory) as outage:  # rt-server stopped, port refusing
            ...
            outage.bring_back()  # rt-server again: same port, database and site config
            ...
        # the server started again is stopped here; running_request_tracker reaps the first one

Stopping sends SIGTERM to the process group `running_request_tracker` made (SIGKILL after a grace
period) and waits until nothing in it runs and the port refuses connections.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support import rt as rt_support
from tests.support.processes import http_status, wait_until
from tests.support.rt import RequestTracker

STOP_GRACE_SECONDS = 20.0


def ticketsql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def tickets_with_correlation(rt: RequestTracker, correlation: str) -> list[dict[str, Any]]:
    """RT's own search, as a person: every ticket whose correlation custom field is `correlation`."""
    query = f"{ticketsql_string(f'CF.{{{rt_support.CUSTOM_FIELD}}}')} = {ticketsql_string(correlation)}"
    answer = rt.person().get(
        rt.rest("/tickets"), params={"query": query, "fields": "Subject,Queue", "per_page": "100"}, timeout=20
    )
    answer.raise_for_status()
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def tickets_in_queue(rt: RequestTracker, queue: str = rt_support.QUEUE) -> int:
    answer = rt.person().get(
        rt.rest("/tickets"),
        params={"query": f"Queue = {ticketsql_string(queue)}", "per_page": "1"},
        timeout=20,
    )
    answer.raise_for_status()
    return int(answer.json()["total"])


@dataclass
class Outage:
    """One outage of `rt`: `bring_back()` ends it; `down_seconds` says how long it lasted."""

    rt: RequestTracker
    directory: Path
    down_seconds: float | None = None
    restarted: subprocess.Popen[bytes] | None = None
    _down_at: float = field(default_factory=time.monotonic, repr=False)

    def bring_back(self) -> None:
        """Start rt-server again and wait until REST2 answers."""
        assert self.restarted is None, "RT is back already"
        self.down_seconds = time.monotonic() - self._down_at
        self.restarted = _start_again(self.rt, self.directory)


@contextmanager
def request_tracker_outage(rt: RequestTracker, directory: Path) -> Iterator[Outage]:
    """Stop `rt` (started by `running_request_tracker(directory)`) for the block; stop the server
    `bring_back()` started when it ends."""
    _stop_group(rt.pid)
    wait_until(
        lambda: http_status(f"{rt.url}/REST/2.0/rt", timeout=1) is None,
        timeout=STOP_GRACE_SECONDS,
        what=f"RT at {rt.url} to stop answering",
    )
    outage = Outage(rt, directory)
    try:
        yield outage
    finally:
        if outage.restarted is not None:
            rt_support._stop_server(outage.restarted)


def _start_again(rt: RequestTracker, directory: Path) -> subprocess.Popen[bytes]:
    port = urlsplit(rt.url).port
    assert port is not None, rt.url
    # The environment running_request_tracker gave rt-server: its site config in `directory`.
    # (tests/support/rt.py keeps its steps private; this module is their one other user.)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(directory),
        "LANG": "C.UTF-8",
        "RT_SITE_CONFIG": str(directory / "RT_SiteConfig.pm"),
        "RT_SITE_CONFIG_DIR": str(directory / "RT_SiteConfig.d"),
    }
    popen, log_path = rt_support._start_server(directory, env, port)
    try:
        rt_support._wait_ready(popen, log_path, rt.url, rt.root_password)
    except BaseException:
        rt_support._stop_server(popen)
        raise
    return popen


def _stop_group(pgid: int) -> None:
    """TERM the group `running_request_tracker` started (its PID is the group id); KILL what lingers."""
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while _live_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _live_members(pgid: int) -> list[int]:
    """PIDs in process group `pgid` that still run (zombies wait for our reaping, they run no more)."""
    live = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            live.append(int(entry.name))
    return live
