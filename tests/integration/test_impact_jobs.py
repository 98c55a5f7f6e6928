"""Impact lookups, verification and follow-ups, from a webhook delivery through the worker's jobs.

The shipped catalog and rules place `PaymentsApiDown` on payments-api, whose impact source is
checkout-failures; a fake source stands in for Prometheus (the adapters have their own tests).
"""

from __future__ import annotations

import json
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
from recoverlink.domain.impact import ImpactReading
from recoverlink.domain.outbox import RetryPolicy
from recoverlink.follow_up_jobs import FollowUp
from recoverlink.impact_jobs import ImpactJobs, ImpactLookup, ImpactVerify
from recoverlink.ingest import ingest_webhook
from recoverlink.recovery_jobs import FOLLOW_UP, IMPACT_LOOKUP, IMPACT_VERIFY, JobPlan
from recoverlink.store import outbox
from recoverlink.store.engine import Store
from recoverlink.store.outbox import JobFilter
from recoverlink.store.recovery_queries import load_recovery
from recoverlink.store.schema import audit_events, recoveries
from recoverlink.telemetry import Metrics
from recoverlink.worker import Worker, WorkerOptions
from tests.conftest import FakeClock
from tests.support.impact import FakeImpactSource, failures, unreachable

EXAMPLE = Path(__file__).parents[2] / "deploy" / "recoverlink.yaml"
PLAN = JobPlan(
    lookup_every=timedelta(minutes=1),
    verify_every=timedelta(minutes=1),
    verify_timeout=timedelta(minutes=10),
    max_attempts=5,
)
STARTS_AT = "2026-11-22T18:08:59.435Z"
LABELS = {"team": "payments", "priority": "P1"}


@pytest.fixture(scope="module")
def enricher() -> Enricher:
    config = load_config(EXAMPLE)
    return load_enrichment(config, EXAMPLE.parent, str(EXAMPLE)).enricher


class Scenario:
    """One store, the shipped enrichment, fake sources, and a worker that runs what is due."""

    def __init__(self, store: Store, enricher: Enricher, clock: FakeClock) -> None:
        self.store, self.enricher, self.clock = store, enricher, clock
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.checkout = FakeImpactSource()
        self.queue = FakeImpactSource(name="contact-center-queue", thresholds={"waiting": 20.0})
        sources = {"checkout-failures": self.checkout, "contact-center-queue": self.queue}
        jobs = ImpactJobs(sources, PLAN, self.metrics)
        handlers = {
            IMPACT_LOOKUP: ImpactLookup(jobs),
            IMPACT_VERIFY: ImpactVerify(jobs),
            FOLLOW_UP: FollowUp(jobs),
        }
        options = WorkerOptions(
            RetryPolicy(PLAN.max_attempts, timedelta(seconds=10), timedelta(minutes=5)),
            lease=timedelta(minutes=1),
            poll_interval_seconds=0.1,
            concurrency=1,
        )
        self.worker = Worker(
            store, handlers, options, self.metrics, clock=clock, name="test", jitter=lambda: 0.0
        )

    def deliver(
        self, status: str = "firing", starts_at: str = STARTS_AT, service: str = "payments-api"
    ) -> None:
        labels = {"alertname": "PaymentsApiDown", "service": service, "severity": "critical"}
        ends = "2026-11-22T18:20:00Z" if status == "resolved" else "0001-01-01T00:00:00Z"
        alert = {"status": status, "labels": labels, "annotations": {"summary": "payments down"}}
        alert.update(startsAt=starts_at, endsAt=ends, generatorURL="", fingerprint=f"fp-{service}")
        document = {"version": "4", "status": status, "alerts": [alert], "groupKey": "{}:{alertname=x}"}
        ingest_webhook(
            self.store, json.dumps(document).encode(), AlertPolicy(), self.enricher, self.clock(), plan=PLAN
        )

    def later(self, **delta: float) -> int:
        """Move the clock on and run every job that is due; how many ran."""
        self.clock.now += timedelta(**delta)
        return self.worker.run_due()

    def recovery(self, recovery_id: int = 1) -> Any:
        with self.store.read() as conn:
            return conn.execute(select(recoveries).where(recoveries.c.id == recovery_id)).one()

    def impact(self, recovery_id: int = 1) -> dict[str, Any]:
        with self.store.read() as conn:
            detail = load_recovery(
                conn, recovery_id, now=self.clock(), default_stale_after=timedelta(hours=8)
            )
        assert detail is not None
        return dict(detail.summary.impact)

    def jobs(self, kind: str, state: str | None = None) -> list[Any]:
        with self.store.read() as conn:
            items, _ = outbox.list_jobs(
                conn, JobFilter(kind=kind, states=(state,) if state else ()), limit=50
            )
        return items

    def audit_kinds(self, recovery_id: int = 1) -> list[str]:
        with self.store.read() as conn:
            query = select(audit_events.c.kind).where(audit_events.c.recovery_id == recovery_id)
            return [r.kind for r in conn.execute(query.order_by(audit_events.c.id))]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
def scenario(store: Store, enricher: Enricher, clock: FakeClock) -> Scenario:
    return Scenario(store, enricher, clock)


def test_new_recovery_enqueues_one_lookup_per_impact_source_of_its_service(scenario: Scenario) -> None:
    scenario.deliver()
    (job,) = scenario.jobs(IMPACT_LOOKUP)
    assert (job.recovery_id, job.payload["source"], job.state) == (1, "checkout-failures", "pending")
    assert job.payload["context"]["service"]["name"] == "payments-api"
    assert scenario.recovery().impact_sources == ["checkout-failures"]


def test_impact_from_a_source_confirms_the_recovery_and_observes_time_to_impact(scenario: Scenario) -> None:
    scenario.deliver()
    scenario.checkout.answer(failures(12.5, "retail", "business"))
    assert scenario.later(seconds=30) == 1
    recovery = scenario.recovery()
    assert recovery.state == "impact_confirmed"
    assert "impact_identified" in recovery.milestones
    impact = scenario.impact()
    assert impact["status"] == "confirmed"
    assert impact["facts"] == {"segments": ["retail", "business"]}
    assert impact["sources"]["checkout-failures"]["breaches"] == ["checkout_failures_per_minute 12.5 > 1"]
    assert scenario.sample("recoverlink_recovery_time_to_impact_seconds_count", **LABELS) == 1
    assert scenario.sample("recoverlink_recovery_time_to_impact_seconds_sum", **LABELS) == 30
    assert "impact" in scenario.audit_kinds()
    context = scenario.checkout.contexts[0]
    assert (context["recovery"]["id"], context["service"]["name"]) == (1, "payments-api")


def test_no_impact_yet_looks_again_after_lookup_every_until_impact_shows(scenario: Scenario) -> None:
    scenario.deliver()
    scenario.checkout.answer(failures(0), failures(0), failures(3, "retail"))
    scenario.later(seconds=1)
    assert scenario.impact()["status"] == "not_seen"
    assert scenario.later(seconds=30) == 0, "the next look waits for lookup_every"
    assert scenario.later(seconds=31) == 1
    assert scenario.recovery().state == "opened"
    scenario.later(minutes=1)
    assert scenario.recovery().state == "impact_confirmed"
    assert scenario.audit_kinds().count("impact") == 2, "audited when the status changed, not every look"


def test_a_failing_source_marks_impact_unknown_and_is_retried(scenario: Scenario) -> None:
    scenario.deliver()
    scenario.checkout.answer(unreachable(), failures(5, "retail"))
    scenario.later(seconds=1)
    impact = scenario.impact()
    assert impact["status"] == "unknown"
    assert impact["notes"] == [
        "impact unknown: checkout-failures cannot connect to prometheus.test:9090 (ConnectionRefused)"
    ]
    (job,) = scenario.jobs(IMPACT_LOOKUP)
    assert (job.state, job.attempts, job.last_reason) == ("pending", 1, "connect")
    assert scenario.recovery().state == "opened", "the recovery is open whatever the source says"
    scenario.later(seconds=10)
    assert scenario.impact()["status"] == "confirmed"
    assert scenario.impact()["notes"] == []


def test_a_source_that_keeps_failing_is_dead_lettered_and_impact_stays_unknown(scenario: Scenario) -> None:
    scenario.deliver()
    scenario.checkout.answer(unreachable())
    for _ in range(PLAN.max_attempts):
        scenario.later(minutes=10)
    (job,) = scenario.jobs(IMPACT_LOOKUP)
    assert job.state == "dead"
    entry = scenario.impact()["sources"]["checkout-failures"]
    assert (entry["status"], entry["retrying"]) == ("error", False)


def test_alerts_resolving_start_verification_and_back_to_normal_closes_the_recovery(
    scenario: Scenario,
) -> None:
    scenario.deliver()
    scenario.checkout.answer(failures(9, "retail"))
    scenario.later(seconds=20)
    scenario.clock.now += timedelta(minutes=5)
    scenario.deliver(status="resolved")
    assert scenario.recovery().state == "fix_deployed"
    (verify,) = scenario.jobs(IMPACT_VERIFY)
    assert verify.payload["source"] == "checkout-failures"
    scenario.checkout.answer(failures(0))
    scenario.later(seconds=45)
    recovery = scenario.recovery()
    assert recovery.state == "closed"
    assert {"impact_verified", "closed"} <= set(recovery.milestones)
    assert scenario.sample("recoverlink_recovery_fix_to_verification_seconds_sum", **LABELS) == 45
    assert scenario.sample("recoverlink_recoveries_closed_total", **LABELS, service="payments-api") == 1
    finished = {
        "linked_customers": "true",
        "full_context": "true",
        "single_owner": "true",
        "manual_lookup": "false",
    }
    assert scenario.sample("recoverlink_recoveries_finished_total", team="payments", **finished) == 1
    follow_ups = sorted(j.due_at - scenario.clock.now for j in scenario.jobs(FOLLOW_UP))
    assert follow_ups == [timedelta(hours=24), timedelta(hours=48)]


def test_still_affected_after_the_fix_keeps_verifying_and_times_out_as_unverified(scenario: Scenario) -> None:
    scenario.deliver()
    scenario.checkout.answer(failures(9))
    scenario.later(seconds=1)
    scenario.deliver(status="resolved")
    for _ in range(12):
        scenario.later(minutes=1)
    recovery = scenario.recovery()
    assert recovery.state == "fix_deployed", "a recovery whose customers are still affected does not close"
    verification = scenario.impact()["sources"]["checkout-failures"]["verification"]
    assert verification["status"] == "unverified"
    assert scenario.jobs(IMPACT_VERIFY, "pending") == [], "no more verification after the timeout"
    assert scenario.audit_kinds().count("verification") == 2, "still affected, then unverified"


def test_a_reopen_makes_the_pending_verification_obsolete(scenario: Scenario) -> None:
    scenario.deliver()
    scenario.checkout.answer(failures(9))
    scenario.later(seconds=1)
    scenario.deliver(status="resolved")
    scenario.clock.now += timedelta(minutes=2)
    scenario.deliver(starts_at="2026-11-22T18:12:00Z")  # fires again within the reopen window
    assert scenario.recovery().state == "opened"
    scenario.checkout.answer(failures(0))
    scenario.later(seconds=1)
    assert scenario.recovery().state == "opened", "a verification of the old cycle must not count"
    (done,) = scenario.jobs(IMPACT_VERIFY, "done")
    assert done.result == {"skipped": "the recovery was reopened, canceled or is gone"}


def test_a_recovery_without_impact_sources_is_verified_when_its_alerts_resolve(scenario: Scenario) -> None:
    scenario.deliver(service="unknown-thing")
    assert scenario.jobs(IMPACT_LOOKUP) == []
    scenario.deliver(status="resolved", service="unknown-thing")
    scenario.later(seconds=1)
    recovery = scenario.recovery()
    assert recovery.state == "closed"
    assert scenario.impact()["status"] == "no_sources"


def test_an_operator_identifying_impact_stops_the_lookups(scenario: Scenario, store: Store) -> None:
    from recoverlink.domain.recovery_state import (
        RecoveryEvent,
        RecoveryEventKind,
        TransitionSource,
        apply_event,
    )
    from recoverlink.recovery_jobs import commit_transition
    from recoverlink.store import recoveries as recovery_store

    scenario.deliver()
    with store.write() as conn:
        row = recovery_store.load_row(conn, 1, for_update=True)
        event = RecoveryEvent(RecoveryEventKind.IMPACT_CONFIRMED, TransitionSource.OPERATOR)
        commit_transition(
            conn, row, apply_event(recovery_store.status_of(row), event, scenario.clock()), "op", PLAN
        )
    scenario.checkout.answer(failures(0))
    scenario.later(seconds=1)
    scenario.later(minutes=5)
    assert len(scenario.checkout.contexts) == 1, "impact is identified: nobody needs to look again"
    scenario.deliver(status="resolved")
    scenario.later(seconds=1)
    assert scenario.recovery().state == "closed"
    finished = {
        "linked_customers": "false",
        "full_context": "true",
        "single_owner": "true",
        "manual_lookup": "true",
    }
    assert scenario.sample("recoverlink_recoveries_finished_total", team="payments", **finished) == 1


def test_follow_ups_count_repeat_alerts_and_contacts_within_24h_and_48h(scenario: Scenario) -> None:
    scenario.checkout.repeat_contacts_count = "repeat_contacts"
    scenario.deliver()
    scenario.checkout.answer(failures(0))
    scenario.deliver(status="resolved")
    scenario.later(seconds=1)
    assert scenario.recovery().state == "closed"
    scenario.clock.now += timedelta(hours=3)  # after checkout-outage's 2 h reopen window
    scenario.deliver(starts_at="2026-11-22T21:10:00Z")
    assert scenario.recovery(2).linked_to == 1, "the same failure again: a new recovery, linked"
    scenario.checkout.answer(ImpactReading(counts={"checkout_failures_per_minute": 0, "repeat_contacts": 7}))
    scenario.later(hours=21)
    window = {"team": "payments"}
    assert scenario.sample("recoverlink_recovery_repeat_alerts_total", **window, window="24h") == 1
    assert scenario.sample("recoverlink_recovery_repeat_contacts_total", **window, window="24h") == 7
    assert scenario.sample("recoverlink_recovery_repeat_alerts_total", **window, window="48h") is None
    scenario.later(hours=24)
    assert scenario.sample("recoverlink_recovery_repeat_alerts_total", **window, window="48h") == 1
    assert scenario.audit_kinds().count("follow_up") == 2
