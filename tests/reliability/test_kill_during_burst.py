"""Ack only what is durable: `recoverlink serve` killed -9 in the middle of a burst of webhooks loses
nothing it answered 2xx, on SQLite (the embedded default) and PostgreSQL.

Sixteen threads post distinct notifications (two new alert episodes each) as fast as the server
answers; once a few hundred are acknowledged, the gunicorn master and its workers get SIGKILL while
requests are in flight. The outbox worker `serve` started beside them must stop by itself (it
watches its parent). A new `serve` on the same database must then hold every acknowledged
notification and its episodes, each placed in a recovery, and recognise each as a duplicate.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from sqlalchemy.engine import make_url

from tests.reliability.stack import (
    WEBHOOK_TOKEN,
    Recoverlink,
    catalog,
    children,
    is_alive,
    is_outbox_worker,
    serving,
    webhook_document,
    write_config,
)
from tests.support.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

SENDERS = 16
ACKED_BEFORE_KILL = 300
SERVICES = 4


@dataclass(frozen=True)
class Sent:
    document: dict[str, Any]
    started: float  # time.monotonic() when the request went out
    notification_id: int | None  # from the 2xx answer; None when it failed


@dataclass
class Burst:
    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    sent: list[Sent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acked(self) -> list[Sent]:
        with self.lock:
            return [s for s in self.sent if s.notification_id is not None]

    def send_until_stopped(self, sender: int) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
        number = 0
        while not self.stop.is_set():
            document = _notification(sender, number)
            started = time.monotonic()
            notification_id = None
            try:
                answer = session.post(
                    f"{self.url}/webhook/alertmanager", json=document, headers=headers, timeout=10
                )
                if answer.status_code == 200:
                    notification_id = int(answer.json()["notification_id"])
            except requests.RequestException:
                time.sleep(0.01)  # refused after the kill: do not spin
            with self.lock:
                self.sent.append(Sent(document, started, notification_id))
            number += 1


def _notification(sender: int, number: int) -> dict[str, Any]:
    alerts = []
    for index in range(2):
        labels = {
            "alertname": "BurstAlert",
            "service": f"burst-{sender % SERVICES}",
            "severity": "critical",
            "instance": f"sender{sender}-n{number}-a{index}",
        }
        fingerprint = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]
        starts = f"2026-12-01T08:{number // 60 % 60:02d}:{number % 60:02d}.000Z"
        alerts.append({"labels": labels, "fingerprint": fingerprint, "startsAt": starts})
    return webhook_document(f'{{}}:{{sender="{sender}", n="{number}"}}', alerts)


@dataclass(frozen=True)
class Database:
    """Reads the store as an outsider: a connection of our own, SQLite read-only."""

    sqlite_path: Path | None
    dsn: str | None

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        if self.sqlite_path is not None:
            uri = f"file:{self.sqlite_path}?mode=ro"
            with closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
                return list(conn.execute(query).fetchall())
        assert self.dsn is not None
        with psycopg.connect(self.dsn) as conn:
            return list(conn.execute(query).fetchall())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str | None, Database]]:
    """(RECOVERLINK_DATABASE_URL or None for SQLite, a reader of the same database)."""
    if request.param == "sqlite":
        yield None, Database(tmp_path / "var" / "recoverlink.db", None)
        return
    url: str = request.getfixturevalue("postgres_url")
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    yield url, Database(None, dsn)


def _kill_server(server: Recoverlink) -> tuple[float, int]:
    """SIGKILL the gunicorn master and its workers (not the outbox worker); when, and that worker's PID."""
    master = server.process.pid
    kids = children(master)
    outbox = [pid for pid in kids if is_outbox_worker(pid)]
    assert len(outbox) == 1, f"one outbox worker beside gunicorn, got {outbox}\n{server.process.describe()}"
    gunicorn_workers = [pid for pid in kids if pid not in outbox]
    assert gunicorn_workers, server.process.describe()
    killed_at = time.monotonic()
    for pid in [master, *gunicorn_workers]:
        os.kill(pid, signal.SIGKILL)
    return killed_at, outbox[0]


def test_every_acknowledged_notification_survives_a_kill_9_during_a_burst(
    tmp_path: Path, backend: tuple[str | None, Database]
) -> None:
    """Every notification answered 2xx before a SIGKILL of the whole gunicorn tree is stored with its
    episodes after a restart, and re-sent it is a duplicate of the same notification; the outbox
    worker that `serve` started stops by itself once its parent is gone."""
    database_url, database = backend
    services = {f"burst-{n}": {"owner": "burst-team"} for n in range(SERVICES)}
    config = write_config(tmp_path, catalog_file=catalog(tmp_path, services, ["burst-team"]))

    with serving("recoverlink-before-kill", config, database_url=database_url) as server:
        burst = Burst(server.url)
        threads = [
            threading.Thread(target=burst.send_until_stopped, args=(n,), name=f"sender-{n}")
            for n in range(SENDERS)
        ]
        for thread in threads:
            thread.start()
        try:
            wait_until(
                lambda: len(burst.acked()) >= ACKED_BEFORE_KILL,
                timeout=60,
                what=f"{ACKED_BEFORE_KILL} acknowledged notifications",
                details=server.process.describe,
            )
            killed_at, outbox_worker = _kill_server(server)
            time.sleep(0.3)  # let the senders see the dead server
        finally:
            burst.stop.set()
            for thread in threads:
                thread.join(timeout=30)
        wait_until(
            lambda: not is_alive(outbox_worker),
            timeout=15,
            what=f"the outbox worker {outbox_worker} to stop after its parent was killed",
        )

    acked = burst.acked()
    in_flight = [s for s in burst.sent if s.notification_id is None and s.started < killed_at]
    assert in_flight, "the kill landed between requests: no request was cut off"

    with serving("recoverlink-after-kill", config, database_url=database_url, migrate=False) as server:
        stored = dict(database.rows("SELECT id, group_key FROM notifications"))
        episodes = {fp for (fp,) in database.rows("SELECT fingerprint FROM alerts")}
        placed = {
            fp
            for (fp,) in database.rows(
                "SELECT a.fingerprint FROM alerts a JOIN recovery_alerts r ON r.alert_id = a.id"
            )
        }
        lost = [s for s in acked if stored.get(s.notification_id) != s.document["groupKey"]]
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged notifications are not stored"
        fingerprints = {a["fingerprint"] for s in acked for a in s.document["alerts"]}
        assert fingerprints <= episodes, f"{len(fingerprints - episodes)} acknowledged episodes lost"
        assert fingerprints <= placed, f"{len(fingerprints - placed)} episodes in no recovery"
        for sent in acked:
            again = server.post_webhook(sent.document)
            assert again.status_code == 200, again.text
            assert again.json()["status"] == "duplicate", again.json()
            assert again.json()["notification_id"] == sent.notification_id
    print(
        f"\n{len(acked)} acknowledged before the kill, {len(in_flight)} requests cut off by it, "
        f"{len(burst.sent) - len(acked) - len(in_flight)} refused after it; all acknowledged ones stored"
    )
