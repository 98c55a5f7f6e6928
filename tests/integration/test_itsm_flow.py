"""Exactly one linked incident per recovery, kept in sync both ways, with a fake ITSM (the adapters
have their own tests; the real Request Tracker has its own too).

The shipped catalog sends payments-api's incidents to ServiceNow; here that is a `FakeItsm`. Its
warnings match no rule: the default resolution policy `close` applies (the incident must be
resolved before the recovery closes) and the default reopen window of 1 h.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from recoverlink.config.enrichment_loader import load_enrichment
from recoverlink.config.loader import load_config
from recoverlink.domain.alerts import AlertPolicy
from recoverlink.domain.enrichment import Enricher
from recoverlink.domain.itsm import IncidentStatus
from recoverlink.domain.outbox import RetryPolicy
from recoverlink.follow_up_jobs import FollowUp
from recoverlink.impact_jobs import ImpactJobs, ImpactLookup, ImpactVerify
from recoverlink.ingest import ingest_webhook
from recoverlink.itsm_changes import ChangeRules, Reconciler, apply_change
from recoverlink.itsm_jobs import ItsmJobs, OpenIncident, ReopenIncident, ResolveIncident, UpdateIncident
from recoverlink.itsm_plan import ITSM_NOTE, ITSM_OPEN, ITSM_REOPEN, ITSM_RESOLVE
from recoverlink.recovery_jobs import FOLLOW_UP, IMPACT_LOOKUP, IMPACT_VERIFY, JobPlan
from recoverlink.store import outbox
from recoverlink.store.engine import Store, StoreOptions, make_engine
from recoverlink.store.outbox import JobFilter
from recoverlink.store.recovery_queries import load_recovery
from recoverlink.store.schema import audit_events, recoveries
from recoverlink.telemetry import Metrics
from recoverlink.worker import Worker, WorkerOptions
from tests.conftest import FakeClock
from tests.support.fake_itsm import FakeItsm
from tests.support.impact import FakeImpactSource, failures

EXAMPLE = Path(__file__).parents[2] / "deploy" / "recoverlink.yaml"
PLAN = JobPlan(itsm_systems=frozenset({"servicenow"}), max_attempts=6, verify_timeout=timedelta(minutes=10))
RULES = ChangeRules(known_teams=("payments", "sre", "crm"))


@pytest.fixture(scope="module")
def enricher() -> Enricher:
    config = load_config(EXAMPLE)
    return load_enrichment(config, EXAMPLE.parent, str(EXAMPLE)).enricher


def worker_for(
    store: Store, itsm: FakeItsm, source: FakeImpactSource, clock: FakeClock, metrics: Metrics
) -> Worker:
    impact = ImpactJobs({"checkout-failures": source}, PLAN, metrics)
    incidents = ItsmJobs({"servicenow": itsm}, store, PLAN, metrics)
    handlers = {
        IMPACT_LOOKUP: ImpactLookup(impact),
        IMPACT_VERIFY: ImpactVerify(impact),
        FOLLOW_UP: FollowUp(impact),
        ITSM_OPEN: OpenIncident(incidents),
        ITSM_NOTE: UpdateIncident(incidents),
        ITSM_RESOLVE: ResolveIncident(incidents),
        ITSM_REOPEN: ReopenIncident(incidents),
    }
    options = WorkerOptions(
        RetryPolicy(PLAN.max_attempts, timedelta(seconds=5), timedelta(minutes=1)),
        lease=timedelta(minutes=1),
        poll_interval_seconds=0.1,
        concurrency=2,
    )
    return Worker(store, handlers, options, metrics, clock=clock, name="w", jitter=lambda: 0.0)


class Scenario:
    def __init__(self, store: Store, enricher: Enricher, clock: FakeClock) -> None:
        self.store, self.enricher, self.clock = store, enricher, clock
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.itsm = FakeItsm()
        self.source = FakeImpactSource().answer(failures(0))
        self.worker = worker_for(store, self.itsm, self.source, clock, self.metrics)

    def deliver(
        self, status: str = "firing", starts_at: str = "2026-11-22T18:08:59Z", name: str = "fp-1"
    ) -> None:
        labels = {"alertname": "PaymentsApiErrors", "service": "payments-api", "severity": "warning"}
        ends = "2026-11-22T18:20:00Z" if status == "resolved" else "0001-01-01T00:00:00Z"
        alert = {"status": status, "labels": labels, "annotations": {"summary": "payments down"}}
        alert.update(startsAt=starts_at, endsAt=ends, generatorURL="", fingerprint=name)
        document = {"version": "4", "status": status, "alerts": [alert], "groupKey": "{}:{alertname=x}"}
        body = json.dumps(document).encode()
        ingest_webhook(self.store, body, AlertPolicy(), self.enricher, self.clock(), plan=PLAN)

    def later(self, **delta: float) -> int:
        self.clock.now += timedelta(**delta)
        return self.worker.run_due()

    def recovery(self, recovery_id: int = 1) -> Any:
        with self.store.read() as conn:
            return conn.execute(select(recoveries).where(recoveries.c.id == recovery_id)).one()

    def detail(self, recovery_id: int = 1) -> Any:
        with self.store.read() as conn:
            detail = load_recovery(
                conn, recovery_id, now=self.clock(), default_stale_after=timedelta(hours=8)
            )
        assert detail is not None
        return detail

    def jobs(self, kind: str) -> list[Any]:
        with self.store.read() as conn:
            return outbox.list_jobs(conn, JobFilter(kind=kind), limit=50)[0]

    def audit_kinds(self, recovery_id: int = 1) -> list[str]:
        with self.store.read() as conn:
            query = select(audit_events.c.kind).where(audit_events.c.recovery_id == recovery_id)
            return [r.kind for r in conn.execute(query.order_by(audit_events.c.id))]

    def change(self, status: IncidentStatus, delivery: str, **extra: Any) -> str:
        (incident,) = self.itsm.incidents.values()
        body = {"incident_id": incident.link.id, "status": status.value, "delivery": delivery, **extra}
        parsed = self.itsm.parse_callback(json.dumps(body).encode(), {})
        with self.store.write() as conn:
            outcome = apply_change(conn, parsed, RULES, PLAN, self.clock())
        outcome.observe(self.metrics)
        return outcome.outcome


@pytest.fixture
def scenario(store: Store, enricher: Enricher, clock: FakeClock) -> Scenario:
    return Scenario(store, enricher, clock)


def test_a_new_recovery_gets_exactly_one_linked_incident_and_time_to_incident(scenario: Scenario) -> None:
    scenario.deliver()
    assert scenario.recovery().itsm_configured
    assert scenario.later(seconds=3) >= 1
    (incident,) = scenario.itsm.incidents.values()
    assert incident.draft.correlation_id == "recoverlink:rec-1"
    assert "payments-api" in incident.draft.description
    recovery = scenario.recovery()
    assert (recovery.incident_number, recovery.incident_status) == (incident.link.number, "new")
    assert "incident_linked" in recovery.milestones
    assert scenario.detail().summary.incident == {
        "system": "servicenow",
        "id": incident.link.id,
        "number": incident.link.number,
        "url": incident.link.url,
        "status": "new",
    }
    labels = {"team": "payments", "priority": "P2", "itsm": "servicenow"}
    assert (
        scenario.registry.get_sample_value("recoverlink_recovery_time_to_incident_seconds_sum", labels) == 3
    )
    calls = {"itsm": "servicenow", "outcome": "success"}
    assert (
        scenario.registry.get_sample_value(
            "recoverlink_itsm_requests_total", {**calls, "operation": "create"}
        )
        == 1
    )
    assert scenario.itsm.calls[:2] == ["find", "create"], "search before creating"


def test_ha_duplicates_and_repeats_open_one_incident(scenario: Scenario) -> None:
    for _ in range(3):
        scenario.deliver()
        scenario.later(seconds=1)
    assert len(scenario.itsm.incidents) == 1
    assert len(scenario.jobs(ITSM_OPEN)) == 1


def test_a_create_that_timed_out_after_the_itsm_stored_it_is_found_not_made_twice(scenario: Scenario) -> None:
    scenario.itsm.store_then_time_out = True
    scenario.deliver()
    scenario.later(seconds=1)
    (job,) = scenario.jobs(ITSM_OPEN)
    assert (job.state, job.last_reason) == ("pending", "timeout")
    assert scenario.detail().summary.incident["status"] == "pending"
    scenario.later(seconds=10)
    assert len(scenario.itsm.incidents) == 1
    assert scenario.recovery().incident_id is not None
    assert scenario.itsm.calls.count("create") == 1


def test_itsm_down_for_a_while_the_recovery_opens_says_incident_pending_and_catches_up(
    scenario: Scenario,
) -> None:
    scenario.itsm.fail_next(3, "connect")
    scenario.deliver()
    scenario.later(seconds=1)
    recovery = scenario.detail()
    assert recovery.summary.state == "opened"
    incident = recovery.summary.incident
    assert (incident["status"], incident["job_state"], incident["attempts"]) == ("pending", "pending", 1)
    assert "fake failure (connect)" in incident["last_error"]
    assert scenario.audit_kinds().count("incident_pending") == 1
    for _ in range(4):
        scenario.later(minutes=1)
    assert len(scenario.itsm.incidents) == 1
    assert scenario.recovery().incident_id is not None


def test_resolve_arriving_before_the_create_finished_waits_and_then_closes(scenario: Scenario) -> None:
    scenario.itsm.fail_next(4, "http_503")
    scenario.deliver()
    scenario.deliver(status="resolved")
    scenario.later(seconds=1)  # verification: back to normal; the resolve waits for the incident
    assert scenario.recovery().state == "fix_deployed", "the incident is not resolved yet"
    (resolve,) = scenario.jobs(ITSM_RESOLVE)
    assert (resolve.state, resolve.attempts) == ("pending", 0), "waiting does not spend attempts"
    for _ in range(6):
        scenario.later(minutes=1)
    (incident,) = scenario.itsm.incidents.values()
    assert incident.status is IncidentStatus.RESOLVED
    recovery = scenario.recovery()
    assert recovery.state == "closed"
    assert recovery.incident_resolved


def test_itsm_state_changes_move_the_recovery_once_each(scenario: Scenario) -> None:
    scenario.deliver()
    scenario.later(seconds=1)
    assert scenario.change(IncidentStatus.IN_PROGRESS, "d1", sequence=1, actor="ann") == "applied"
    assert scenario.recovery().state == "fix_in_progress"
    assert scenario.change(IncidentStatus.IN_PROGRESS, "d1", sequence=1) == "duplicate"
    assert scenario.change(IncidentStatus.NEW, "d0", sequence=0) == "stale", "an older change is ignored"
    assert scenario.change(IncidentStatus.CANCELED, "d2", sequence=2) == "applied"
    assert scenario.recovery().state == "canceled"
    assert scenario.recovery().incident_status == "canceled"


def test_an_echo_of_our_own_update_changes_nothing(scenario: Scenario) -> None:
    scenario.deliver()
    scenario.later(seconds=1)
    assert scenario.change(IncidentStatus.IN_PROGRESS, "echo-1", sequence=1, by_us=True) == "echo"
    assert scenario.recovery().state == "opened"


def test_itsm_changes_are_never_noted_back_to_the_itsm(scenario: Scenario) -> None:
    scenario.deliver()
    scenario.later(seconds=1)
    notes_before = len(scenario.jobs(ITSM_NOTE))
    scenario.change(IncidentStatus.IN_PROGRESS, "d1", sequence=1)
    scenario.later(seconds=1)
    assert len(scenario.jobs(ITSM_NOTE)) == notes_before


def test_a_reassignment_in_the_itsm_is_an_owner_change_and_an_escalation_bounce(scenario: Scenario) -> None:
    scenario.deliver()
    scenario.later(seconds=1)
    scenario.change(IncidentStatus.IN_PROGRESS, "d1", sequence=1, assignee="sre")
    recovery = scenario.recovery()
    assert (recovery.owner, recovery.escalation_bounces) == ("sre", 1)
    assert (
        scenario.registry.get_sample_value("recoverlink_recovery_escalation_bounces_total", {"team": "sre"})
        == 1
    )


def test_a_callback_for_an_incident_nobody_knows_is_recorded_and_ignored(scenario: Scenario) -> None:
    body = json.dumps({"incident_id": "nope", "status": "resolved", "delivery": "x"}).encode()
    with scenario.store.write() as conn:
        outcome = apply_change(conn, scenario.itsm.parse_callback(body, {}), RULES, PLAN, scenario.clock())
    assert outcome.outcome == "unknown_incident"


def test_transitions_become_work_notes_and_a_reopen_reopens_the_incident(scenario: Scenario) -> None:
    scenario.deliver()
    scenario.later(seconds=1)
    scenario.deliver(status="resolved")
    scenario.later(seconds=1)
    scenario.later(seconds=1)
    (incident,) = scenario.itsm.incidents.values()
    assert incident.status is IncidentStatus.RESOLVED
    assert any("fix_deployed" in note for note in incident.notes)
    scenario.clock.now += timedelta(minutes=5)
    scenario.deliver(starts_at="2026-11-22T18:30:00Z")  # fires again within the reopen window
    scenario.later(seconds=1)
    assert scenario.recovery().state == "opened"
    assert incident.status is IncidentStatus.IN_PROGRESS
    assert len(scenario.jobs(ITSM_REOPEN)) == 1
    assert len(scenario.itsm.incidents) == 1, "the same incident, reopened"


def test_the_reconciliation_poll_applies_what_a_lost_callback_would_have(scenario: Scenario) -> None:
    scenario.deliver()
    scenario.later(seconds=1)
    (incident,) = scenario.itsm.incidents.values()
    scenario.itsm.set_status(incident.link.id, IncidentStatus.IN_PROGRESS)
    poller = Reconciler(
        scenario.store,
        {"servicenow": scenario.itsm},
        lambda: RULES,
        PLAN,
        scenario.metrics,
        clock=scenario.clock,
        every=timedelta(minutes=2),
    )
    poller.poll()
    poller.poll()
    assert scenario.recovery().state == "fix_in_progress"
    assert scenario.audit_kinds().count("transition") >= 2


@pytest.mark.postgres
def test_two_workers_racing_on_postgresql_open_one_incident(
    postgres_url: str, enricher: Enricher, clock: FakeClock
) -> None:
    from recoverlink.store import migrate

    stores = [Store(make_engine(postgres_url, StoreOptions(pool_size=2))) for _ in range(2)]
    migrate.upgrade(stores[0].engine)
    scenario = Scenario(stores[0], enricher, clock)
    for n in range(20):
        scenario.deliver(name=f"fp-{n}", starts_at=f"2026-11-22T18:{n:02d}:00Z")
    clock.now += timedelta(seconds=1)
    workers = [worker_for(s, scenario.itsm, scenario.source, clock, scenario.metrics) for s in stores]
    threads = [threading.Thread(target=w.run_due) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(scenario.itsm.incidents) == 1
    for store in stores:
        store.dispose()
