"""PostgreSQL stopped under load: the webhook answers 503, Alertmanager retries, and once the database
is back everything arrives once.

A throw-away PostgreSQL (tests/support/throwaway_postgres.py, never the shared server), `recoverlink
serve` with its outbox worker on it, the fake ServiceNow as the ITSM, and a real Alertmanager HA
pair fed through its API while the database is down. Alerts keep arriving for the services that
already have a recovery and for new ones.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.reliability.stack import (
    WEBHOOK_TOKEN,
    Recoverlink,
    api_alert,
    catalog,
    long_variant,
    serving,
    utc_stamp,
    write_config,
)
from tests.support.alertmanager import AlertmanagerPair, running_alertmanager_pair, webhook_route
from tests.support.fake_servicenow import FakeServiceNow
from tests.support.processes import http_status, wait_until
from tests.support.throwaway_postgres import ThrowawayPostgres, running_postgres

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

OUTAGE_SECONDS = 120.0 if long_variant() else 30.0  # the 30 s; the long variant 2 minutes
PUSH_EVERY_SECONDS = 0.5
SERVICES = [f"pg-svc-{n}" for n in range(6)]
BEFORE = SERVICES[:3]  # have a recovery before the outage; the others first fire during it


@dataclass
class Pusher:
    """Pushes one new alert (a new instance) every half second, round-robin over the services."""

    alertmanagers: AlertmanagerPair
    services: list[str]
    stop: threading.Event = field(default_factory=threading.Event)
    pushed: list[str] = field(default_factory=list)  # instance labels

    def push(self, service: str) -> None:
        instance = f"{service}-i{len(self.pushed)}"
        labels = {"alertname": "DbOutageProbe", "service": service, "severity": "critical"}
        self.alertmanagers.push([api_alert({**labels, "instance": instance}, utc_stamp())])
        self.pushed.append(instance)

    def run(self) -> None:
        turn = 0
        while not self.stop.wait(PUSH_EVERY_SECONDS):
            self.push(self.services[turn % len(self.services)])
            turn += 1


def _count(pg: ThrowawayPostgres, query: str) -> int:
    with psycopg.connect(pg.dsn("recoverlink"), connect_timeout=2) as conn:
        row = conn.execute(query).fetchone()
        return int(row[0]) if row else 0


def _drained(pg: ThrowawayPostgres, pusher: Pusher) -> bool:
    stored = _count(pg, "SELECT count(*) FROM alerts")
    unlinked = _count(pg, "SELECT count(*) FROM recoveries WHERE incident_id IS NULL")
    itsm_due = _count(
        pg, "SELECT count(*) FROM outbox_jobs WHERE kind LIKE 'itsm.%' AND state IN ('pending', 'running')"
    )
    return stored == len(pusher.pushed) and unlinked == 0 and itsm_due == 0


def _config(directory: Path, servicenow: FakeServiceNow, servicenow_url: str) -> Path:
    password = directory / "sn.password"
    password.write_text(servicenow.password + "\n", encoding="utf-8")
    services = {name: {"owner": "db-team", "itsm": {"system": "servicenow"}} for name in SERVICES}
    return write_config(
        directory,
        catalog_file=catalog(directory, services, ["db-team"]),
        database={"connect_timeout_seconds": 1},
        itsm={
            "poll_every": "1h",
            "servicenow": {
                "url": servicenow_url,
                "auth": {"basic": {"username": servicenow.user, "password": {"file": str(password)}}},
                "timeout_seconds": 3,
            },
        },
        worker={"lease": "10s", "backoff_initial": "1s", "backoff_max": "2s", "max_attempts": 50},
    )


def test_postgresql_down_under_load_gets_503s_and_alertmanager_delivers_everything_once(
    tmp_path: Path,
) -> None:
    """With PostgreSQL stopped for 30 s while alerts arrive, the webhook answers 503 (recoverlink and
    Alertmanager both count the failures) and /-/ready says not ready; after it returns, every alert
    is stored exactly once, each service has exactly one recovery, and each recovery exactly one
    ServiceNow incident (the outbox worker came back too).

    Long variant, PostgreSQL down 2 minutes: `RECOVERLINK_RELIABILITY_LONG=1 .venv/bin/pytest
    tests/reliability/test_postgres_outage.py`.
    """
    servicenow = FakeServiceNow()
    with (
        running_postgres() as pg,
        servicenow.serve() as servicenow_url,
    ):
        database_url = pg.create_database("recoverlink")
        config = _config(tmp_path, servicenow, servicenow_url)
        with serving("recoverlink-pg-outage", config, database_url=database_url) as server:
            token_file = tmp_path / "alertmanager.token"
            token_file.write_text(WEBHOOK_TOKEN + "\n", encoding="utf-8")
            route = webhook_route([f"{server.url}/webhook/alertmanager"], token_file=token_file)
            with running_alertmanager_pair(tmp_path, [route]) as alertmanagers:
                _outage(tmp_path, pg, server, alertmanagers, servicenow)


def _outage(
    directory: Path,
    pg: ThrowawayPostgres,
    server: Recoverlink,
    alertmanagers: AlertmanagerPair,
    servicenow: FakeServiceNow,
) -> None:
    pusher = Pusher(alertmanagers, SERVICES)
    for service in BEFORE:
        pusher.push(service)
    wait_until(
        lambda: _drained(pg, pusher),
        timeout=60,
        what="the first alerts stored and their incidents linked",
        details=server.process.describe,
    )
    thread = threading.Thread(target=pusher.run, name="alert-pusher")
    thread.start()
    try:
        with pg.stopped():
            began = time.monotonic()
            wait_until(
                lambda: http_status(f"{server.url}/-/ready") == 503,
                timeout=OUTAGE_SECONDS,
                what="/-/ready to answer 503 while PostgreSQL is down",
            )
            wait_until(
                lambda: alertmanagers.webhook_failed_attempts() > 0,
                timeout=OUTAGE_SECONDS,
                what="Alertmanager to see a failed webhook delivery",
                details=alertmanagers.logs,
            )
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - began)))  # the outage itself
        time.sleep(2 * PUSH_EVERY_SECONDS)  # a few alerts arrive after the return too
    finally:
        pusher.stop.set()
        thread.join(timeout=10)
    returned = time.monotonic()
    wait_until(
        lambda: _drained(pg, pusher),
        timeout=90,
        what="every pushed alert stored and every recovery's incident linked after PostgreSQL returned",
        details=lambda: f"{server.process.describe()}\n{alertmanagers.logs()}\n{pg.log_tail()}",
    )
    caught_up = time.monotonic() - returned

    assert server.metric("recoverlink_alertmanager_notifications_total", outcome="unavailable") > 0
    assert alertmanagers.webhook_failed_attempts() > 0
    assert _count(pg, "SELECT count(*) FROM alerts") == len(pusher.pushed)
    assert _count(pg, "SELECT count(DISTINCT labels->>'instance') FROM alerts") == len(pusher.pushed)
    per_service = dict(_rows(pg, "SELECT service, count(*) FROM recoveries GROUP BY service"))
    assert per_service == dict.fromkeys(SERVICES, 1), "one recovery per service, none duplicated"
    for recovery_id, incident_id in _rows(pg, "SELECT id, incident_id FROM recoveries"):
        incidents = servicenow.incidents_with(f"recoverlink:rec-{recovery_id}")
        assert [i["sys_id"] for i in incidents] == [incident_id], f"recovery {recovery_id}: {incidents}"
    assert len(servicenow.records) == len(SERVICES)
    assert _count(pg, "SELECT count(*) FROM outbox_jobs WHERE state = 'dead'") == 0
    copies = _count(pg, "SELECT sum(delivery_count) - count(*) FROM notifications")
    assert copies > 0, "the HA pair's second copies were recognised, not stored twice"
    print(
        f"\nPostgreSQL down {pg.stopped_for[-1]:.1f} s; {len(pusher.pushed)} alerts pushed; "
        f"{alertmanagers.webhook_failed_attempts():.0f} failed webhook attempts; "
        f"caught up {caught_up:.1f} s after it returned"
    )


def _rows(pg: ThrowawayPostgres, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(pg.dsn("recoverlink"), connect_timeout=2) as conn:
        return list(conn.execute(query).fetchall())
