"""Recoveries opened, joined, fixed and reopened by ingest with the shipped catalog and rules."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from recoverlink.config.enrichment_loader import load_enrichment
from recoverlink.config.loader import load_config
from recoverlink.domain.alerts import AlertPolicy
from recoverlink.domain.enrichment import Enricher
from recoverlink.domain.rules import StormScope, StormThreshold
from recoverlink.ingest import IngestOutcome, ingest_webhook
from recoverlink.store.engine import Store
from recoverlink.store.schema import audit_events, recoveries, recovery_alerts
from tests.conftest import FakeClock, fixture_body

EXAMPLE = Path(__file__).parents[2] / "deploy" / "recoverlink.yaml"
POLICY = AlertPolicy()


@pytest.fixture(scope="module")
def enricher() -> Enricher:
    config = load_config(EXAMPLE)
    return load_enrichment(config, EXAMPLE.parent, str(EXAMPLE)).enricher


def deliver(
    store: Store, enricher: Enricher, clock: FakeClock, document: dict[str, Any] | str
) -> IngestOutcome:
    body = fixture_body(document) if isinstance(document, str) else json.dumps(document).encode()
    return ingest_webhook(store, body, POLICY, enricher, clock())


def alert_doc(  # noqa: PLR0917
    name: str = "PaymentsApiDown",
    service: str = "payments-api",
    severity: str = "critical",
    fingerprint: str = "a1d644f09ee6a3f0",
    starts_at: str = "2026-11-22T18:08:59.435Z",
    status: str = "firing",
) -> dict[str, Any]:
    labels = {"alertname": name, "service": service, "severity": severity}
    ends = "2026-11-22T18:20:00Z" if status == "resolved" else "0001-01-01T00:00:00Z"
    alert = {"status": status, "labels": labels, "annotations": {"summary": f"{service} {name}"}}
    alert.update(startsAt=starts_at, endsAt=ends, generatorURL="", fingerprint=fingerprint)
    return {"version": "4", "status": status, "alerts": [alert], "groupKey": f"{{}}:{{alertname={name!r}}}"}


def rows(store: Store) -> list[Any]:
    with store.read() as conn:
        return list(conn.execute(select(recoveries).order_by(recoveries.c.id)))


def audit(store: Store, recovery_id: int) -> list[tuple[str, str | None]]:
    with store.read() as conn:
        query = select(audit_events.c.kind, audit_events.c.to_state).where(
            audit_events.c.recovery_id == recovery_id
        )
        return [(r.kind, r.to_state) for r in conn.execute(query.order_by(audit_events.c.id))]


def members(store: Store, recovery_id: int) -> list[str]:
    with store.read() as conn:
        query = select(recovery_alerts.c.role).where(recovery_alerts.c.recovery_id == recovery_id)
        return [r.role for r in conn.execute(query)]


def test_first_alert_opens_a_recovery_with_its_owner_known(
    store: Store, enricher: Enricher, clock: FakeClock
) -> None:
    deliver(store, enricher, clock, "firing_single.json")
    (recovery,) = rows(store)
    assert recovery.state == "opened"
    assert recovery.correlation_key == "checkout/outage"
    assert (recovery.team, recovery.priority, recovery.service) == ("payments", "P1", "payments-api")
    assert set(recovery.milestones) == {"opened", "owner_known"}
    assert audit(store, recovery.id) == [
        ("opened", "opened"),
        ("transition", "opened"),
        ("correlation", None),
    ]


def test_ha_duplicates_and_repeats_keep_one_recovery(
    store: Store, enricher: Enricher, clock: FakeClock
) -> None:
    for name in ("ha_duplicate_a.json", "ha_duplicate_b.json", "ha_duplicate_a.json"):
        deliver(store, enricher, clock, name)
    (recovery,) = rows(store)
    assert members(store, recovery.id) == ["member"]


def test_a_group_of_alerts_of_one_service_is_one_recovery(
    store: Store, enricher: Enricher, clock: FakeClock
) -> None:
    deliver(store, enricher, clock, "firing_group.json")
    (recovery,) = rows(store)
    assert recovery.correlation_key == "service/payments-api"
    assert members(store, recovery.id) == ["member", "member", "member"]


def test_fix_deployed_only_when_every_alert_resolved(
    store: Store, enricher: Enricher, clock: FakeClock
) -> None:
    deliver(store, enricher, clock, "firing_group.json")
    clock.now += timedelta(minutes=5)
    deliver(store, enricher, clock, "mixed_group.json")
    assert rows(store)[0].state == "opened"
    clock.now += timedelta(minutes=5)
    deliver(store, enricher, clock, "resolved_group.json")
    (recovery,) = rows(store)
    assert recovery.state == "fix_deployed"
    assert recovery.open_key is None, "a fixed recovery collects no new alerts: a re-fire reopens it"
    assert "fix_deployed" in recovery.milestones


def test_truncated_notification_never_fixes_a_recovery(
    store: Store, enricher: Enricher, clock: FakeClock
) -> None:
    deliver(store, enricher, clock, "firing_group.json")
    document = json.loads(fixture_body("firing_group.json"))
    document["alerts"] = document["alerts"][:1]
    document["truncatedAlerts"] = 2
    deliver(store, enricher, clock, document)
    assert rows(store)[0].state == "opened"


def test_stale_firing_after_resolve_does_not_undo_the_fix(
    store: Store, enricher: Enricher, clock: FakeClock
) -> None:
    deliver(store, enricher, clock, "firing_single.json")
    deliver(store, enricher, clock, "resolved_single.json")
    deliver(store, enricher, clock, "ha_stale_firing_after_resolved.json")
    (recovery,) = rows(store)
    assert recovery.state == "fix_deployed"
    assert recovery.reopen_count == 0


def test_refire_inside_the_reopen_window_reopens_the_same_recovery(
    store: Store, enricher: Enricher, clock: FakeClock
) -> None:
    deliver(store, enricher, clock, alert_doc())
    deliver(store, enricher, clock, alert_doc(status="resolved"))
    clock.now += timedelta(minutes=30)
    deliver(store, enricher, clock, alert_doc(starts_at="2026-11-22T18:40:00Z"))
    (recovery,) = rows(store)
    assert (recovery.state, recovery.reopen_count) == ("opened", 1)
    assert ("transition", "opened") in audit(store, recovery.id)[-3:]


def test_refire_after_the_reopen_window_opens_a_linked_recovery(
    store: Store, enricher: Enricher, clock: FakeClock
) -> None:
    deliver(store, enricher, clock, alert_doc())
    deliver(store, enricher, clock, alert_doc(status="resolved"))
    clock.now += timedelta(hours=3)  # checkout-outage sets reopen_window: 2h
    deliver(store, enricher, clock, alert_doc(starts_at="2026-11-22T21:40:00Z"))
    first, second = rows(store)
    assert second.linked_to == first.id
    assert second.state == "opened"
    assert first.reopen_count == 0


def test_dependent_service_alert_joins_the_dependency_recovery_as_a_symptom(
    store: Store, enricher: Enricher, clock: FakeClock
) -> None:
    deliver(store, enricher, clock, alert_doc("PostgresDown", "payments-db", fingerprint="00000000000000d1"))
    clock.now += timedelta(minutes=2)
    latency = alert_doc("PaymentsApiHighLatency", "payments-api", "warning", fingerprint="00000000000000a1")
    deliver(store, enricher, clock, latency)
    (database,) = rows(store)
    assert database.service == "payments-db"
    assert database.symptoms == 1
    assert sorted(members(store, database.id)) == ["member", "symptom"]


def test_storm_attaches_further_episodes_to_one_parent_that_says_so(
    store: Store, enricher: Enricher, clock: FakeClock
) -> None:
    storm = StormThreshold(2, timedelta(minutes=5), StormScope.TEAM)
    stormy = Enricher(
        enricher.catalog, replace(enricher.ruleset, defaults=replace(enricher.ruleset.defaults, storm=storm))
    )
    # Five unrelated failures of services the catalog does not know: all the fallback team's.
    outcomes = [
        deliver(store, stormy, clock, alert_doc(f"Down{n}", f"mystery-{n}", fingerprint=f"{n:016x}"))
        for n in range(5)
    ]
    opened = rows(store)
    parents = [r for r in opened if r.storm]
    assert len(opened) == 3
    assert len(parents) == 1
    assert parents[0].id == opened[2].id
    assert parents[0].storm_episodes == 2
    assert {r.team for r in opened} == {"sre"}
    assert outcomes[-1].recoveries.storm_joins == ["sre"]


def deliver_at_once(
    store: Store, enricher: Enricher, clock: FakeClock, documents: list[dict[str, Any]]
) -> None:
    """Each document from its own thread, released together, as replicas receive them."""
    barrier = threading.Barrier(len(documents))
    errors: list[BaseException] = []

    def run(document: dict[str, Any]) -> None:
        barrier.wait()
        try:
            deliver(store, enricher, clock, document)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(d,)) for d in documents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_failures_of_one_team_open_no_more_recoveries_than_storm_mode_allows(
    store: Store, enricher: Enricher, clock: FakeClock, round_: int
) -> None:
    """Storm mode counts a scope's recent openings; deliveries arriving at once count one at a time."""
    storm = StormThreshold(2, timedelta(minutes=5), StormScope.TEAM)
    stormy = Enricher(
        enricher.catalog, replace(enricher.ruleset, defaults=replace(enricher.ruleset.defaults, storm=storm))
    )
    documents = [alert_doc(f"Down{n}", f"mystery-{n}", fingerprint=f"{round_}{n:015x}") for n in range(6)]
    deliver_at_once(store, stormy, clock, documents)
    opened = rows(store)
    assert len(opened) == 3
    (parent,) = [r for r in opened if r.storm]
    assert parent.storm_episodes == 3


@pytest.mark.parametrize("round_", range(3))
def test_two_deliveries_of_a_new_failure_at_once_open_one_recovery(
    store: Store, enricher: Enricher, clock: FakeClock, round_: int
) -> None:
    """Two replicas ingest different alerts of the same new failure concurrently."""
    documents = [
        alert_doc("PaymentsApiHighLatency", "payments-api", "warning", fingerprint=f"{round_}{n:015x}")
        for n in range(4)
    ]
    deliver_at_once(store, enricher, clock, documents)
    (recovery,) = rows(store)
    assert len(members(store, recovery.id)) == 4
