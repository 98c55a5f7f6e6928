"""Degrade, don't drop: with the real Request Tracker stopped while alerts arrive, recoveries open and
say their incident is pending; when RT returns, each recovery gets exactly one ticket.

A throw-away RT of this module's own (tests/support/rt.py; the session's RT is left alone), stopped
and started again on the same port and database (tests/support/rt_outage.py), and `recoverlink
serve` with its outbox worker on SQLite, retrying with a short backoff.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.stack import (
    Recoverlink,
    catalog,
    long_variant,
    serving,
    webhook_document,
    write_config,
)
from tests.support.processes import wait_until
from tests.support.rt import API_USER, CUSTOM_FIELD, QUEUE, TOKEN_ENV, RequestTracker, running_request_tracker
from tests.support.rt_outage import request_tracker_outage, tickets_in_queue, tickets_with_correlation

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

OUTAGE_SECONDS = 240.0 if long_variant() else 120.0  # the 2 minutes; the long variant 4
BACKOFF_MAX = "3s" if long_variant() else "2s"
SERVICES = [f"rt-svc-{n}" for n in range(6)]
FIRST_WAVE = SERVICES[1:4]  # open while RT is down
SECOND_WAVE = SERVICES[4:]  # open halfway through the outage


@dataclass
class Stack:
    rt: RequestTracker
    rt_directory: Path
    server: Recoverlink

    def deliver(self, service: str, instance: str) -> None:
        labels = {"alertname": "DeskDown", "service": service, "severity": "critical", "instance": instance}
        alert = {
            "labels": labels,
            "fingerprint": f"fp-{service}-{instance}",
            "startsAt": "2026-12-01T09:00:00Z",
        }
        answer = self.server.post_webhook(webhook_document(f"{{}}:{{service={service!r}}}", [alert]))
        assert answer.status_code == 200, answer.text

    def recovery_of(self, service: str) -> dict[str, Any] | None:
        items = self.server.recoveries(service=service)
        return self.server.recovery(items[0]["id"]) if items else None

    def linked(self) -> dict[str, dict[str, Any]] | None:
        """Every service's recovery, once each has its ticket id."""
        found = {service: self.recovery_of(service) for service in SERVICES}
        done = all(r is not None and (r["incident"] or {}).get("id") for r in found.values())
        return {s: r for s, r in found.items() if r is not None} if done else None

    def failed_to_open(self, services: list[str]) -> list[dict[str, Any]] | None:
        """The recoveries of `services` once each says its incident is pending after a failed call."""
        found = [self.recovery_of(service) for service in services]
        pending = [
            r
            for r in found
            if r is not None and r["incident"]["status"] == "pending" and r["incident"].get("attempts")
        ]
        return pending if len(pending) == len(services) else None

    def failed_calls(self) -> float:
        return self.server.metric(
            "recoverlink_itsm_requests_total", itsm="rt", operation="find", outcome="connect"
        )


def _config(directory: Path, rt: RequestTracker) -> Path:
    services = {name: {"owner": "desk-team", "itsm": {"system": "rt", "queue": QUEUE}} for name in SERVICES}
    return write_config(
        directory,
        catalog_file=catalog(directory, services, ["desk-team"]),
        itsm={
            "poll_every": "1h",
            "rt": {
                "url": rt.url,
                "auth": {"token": {"env": TOKEN_ENV}},
                "queue": QUEUE,
                "custom_field": CUSTOM_FIELD,
                "api_user": API_USER,
                "timeout_seconds": 10,
            },
        },
        worker={"lease": "20s", "backoff_initial": "1s", "backoff_max": BACKOFF_MAX, "max_attempts": 100},
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("rt-outage")
    # Not under pytest's tmp_path: www-data must reach RT's directory (see tests/support/rt.py).
    with (
        tempfile.TemporaryDirectory(prefix="recoverlink-rt-outage-") as rt_directory,
        running_request_tracker(Path(rt_directory), with_scrip=False) as rt,
    ):
        config = _config(directory, rt)
        with serving("recoverlink-rt-outage", config, extra_env=rt.environ) as server:
            yield Stack(rt, Path(rt_directory), server)


def test_every_recovery_gets_exactly_one_rt_ticket_after_rt_was_down(stack: Stack) -> None:
    """Recoveries opened while RT is down open anyway and show `incident.status: pending` with the
    failed attempts, which are counted (`recoverlink_itsm_requests_total{outcome="connect"}`); once
    RT is back, each recovery (the one opened before the outage too) has exactly one ticket carrying
    its correlation id, and recoverlink created exactly one ticket per recovery.

    RT stays down 2 minutes; the long variant, 4 minutes: `RECOVERLINK_RELIABILITY_LONG=1 .venv/bin/pytest
    tests/reliability/test_rt_outage.py`.
    """
    stack.deliver(SERVICES[0], "before")
    wait_until(
        lambda: (stack.recovery_of(SERVICES[0]) or {}).get("incident", {}).get("id"),
        timeout=60,
        what="the first ticket, before the outage",
        details=stack.server.process.describe,
    )
    with request_tracker_outage(stack.rt, stack.rt_directory) as outage:
        began = time.monotonic()
        for service in FIRST_WAVE:
            stack.deliver(service, "wave-1")
        stack.deliver(SERVICES[0], "during")  # joins the recovery that has its ticket already
        pending = wait_until(
            lambda: stack.failed_to_open(FIRST_WAVE),
            timeout=OUTAGE_SECONDS,
            what="the worker's first calls to RT to fail for every recovery of the first wave",
            details=stack.server.process.describe,
        )
        for recovery in pending:
            assert recovery["state"] == "opened", "the recovery opened without its incident"
            assert recovery["incident"]["system"] == "rt" and "id" not in recovery["incident"]
        assert stack.failed_calls() > 0
        time.sleep(max(0.0, OUTAGE_SECONDS / 2 - (time.monotonic() - began)))  # RT stays down
        for service in SECOND_WAVE:
            stack.deliver(service, "wave-2")
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - began)))
        failed_during_outage = stack.failed_calls()
        outage.bring_back()
        back = time.monotonic()
        linked = wait_until(
            stack.linked,
            timeout=60,
            what="every recovery's ticket after RT returned",
            details=stack.server.process.describe,
        )
        caught_up = time.monotonic() - back
        for service, recovery in linked.items():
            tickets = tickets_with_correlation(stack.rt, f"recoverlink:rec-{recovery['id']}")
            assert [str(t["id"]) for t in tickets] == [recovery["incident"]["id"]], (service, tickets)
        assert tickets_in_queue(stack.rt) == len(SERVICES)
    created = stack.server.metric(
        "recoverlink_itsm_requests_total", itsm="rt", operation="create", outcome="success"
    )
    assert created == len(SERVICES), "exactly one ticket created per recovery"
    assert failed_during_outage >= len(FIRST_WAVE)
    print(
        f"\nRT down {outage.down_seconds:.1f} s; {failed_during_outage:.0f} failed calls; "
        f"every recovery linked {caught_up:.1f} s after RT answered again"
    )
