"""CX handoff actions from a webhook delivery through the outbox to a receiver on loopback.

The catalog and rules are written per test (the receiver's port is only known then); the impact
source is a fake. Time is a FakeClock: the worker runs what is due when the test says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from recoverlink.action_jobs import LiveActions, SendAction
from recoverlink.action_plan import ACTION_SEND
from recoverlink.adapters.actions import build_action_sender
from recoverlink.config.enrichment_loader import load_enrichment
from recoverlink.config.loader import load_config
from recoverlink.domain.alerts import AlertPolicy
from recoverlink.domain.outbox import RetryPolicy
from recoverlink.domain.rules import RuleSet
from recoverlink.impact_jobs import ImpactJobs, ImpactLookup, ImpactVerify
from recoverlink.ingest import ingest_webhook
from recoverlink.recovery_jobs import IMPACT_LOOKUP, IMPACT_VERIFY, JobPlan
from recoverlink.store import outbox
from recoverlink.store.engine import Store
from recoverlink.store.outbox import JobFilter
from recoverlink.store.schema import audit_events, recoveries
from recoverlink.telemetry import Metrics
from recoverlink.worker import JobHandler, Worker, WorkerOptions
from tests.conftest import FakeClock
from tests.support.impact import FakeImpactSource, failures
from tests.support.receiver import Receiver, running_receiver

PLAN = JobPlan(max_attempts=4, verify_timeout=timedelta(minutes=10))
TOKEN = "desktop-token-0123456789"
LABELS = {"team": "payments", "priority": "P1"}
CATALOG = """\
teams:
  - {name: payments, display_name: Payments}
services:
  - name: payments-api
    owner: payments
    tier: tier-1
    journeys: [checkout]
    segments: [retail]
    impact_sources: [checkout-failures]
"""
BANNER = """\
      - name: agent-banner
        kind: agent_desktop
        on: [impact_confirmed, fix_deployed, closed]
        url: "{url}/banners/{{{{ recovery.id }}}}"
        credential: desktop
        headers: {{X-Trigger: "{{{{ trigger }}}}"}}
        body: |
          {{"title": {{{{ recovery.title | tojson }}}}, "state": {{{{ recovery.state | tojson }}}},
           "message": {{{{ fields.customer_message | tojson }}}},
           "segments": {{{{ recovery.segments | tojson }}}}}}
"""
HANDOFFS = """\
      - name: crm-case
        kind: crm_case
        on: [fix_deployed]
        url: "{url}/cases"
        body: '{{"recovery": {{{{ recovery.id }}}}, "trigger": {{{{ trigger | tojson }}}}}}'
      - name: team-chat
        kind: chat
        on: [opened, fix_deployed]
        url: "{url}/chat"
        body: '{{"text": {{{{ (recovery.title ~ " is " ~ recovery.state) | tojson }}}}}}'
"""


def rules_text(url: str, actions: str) -> str:
    head = """\
rules:
  - name: checkout-outage
    match: ['service="payments-api"']
    priority: P1
    set:
      fields: {summary: "Checkout failing", customer_message: "Please retry card payments later."}
    actions:
"""
    return head + actions.format(url=url)


def write_config(directory: Path, receiver: Receiver, actions: str) -> Path:
    (directory / "catalog.yaml").write_text(CATALOG)
    (directory / "rules.yaml").write_text(rules_text(receiver.url, actions))
    config = {
        "webhook": {"auth": {"bearer": {"env": "UNUSED_WEBHOOK_TOKEN"}}},
        "catalog": {"files": ["catalog.yaml"]},
        "rules": {"files": ["rules.yaml"]},
        "impact": {
            "prometheus": {"url": "http://127.0.0.1:9"},
            "sources": {
                "checkout-failures": {
                    "prometheus": {"query": "x", "count": "checkout_failures_per_minute"},
                    "thresholds": {"checkout_failures_per_minute": 1},
                }
            },
        },
        "actions": {
            "allowed_hosts": [receiver.host],
            "timeout_seconds": 2,
            "credentials": {"desktop": {"bearer": {"env": "DESKTOP_TOKEN"}}},
        },
    }
    path = directory / "recoverlink.yaml"
    path.write_text(json.dumps(config))
    return path


class Scenario:
    """One store, rules with actions to `receiver`, a fake impact source and a worker."""

    def __init__(
        self, store: Store, clock: FakeClock, receiver: Receiver, directory: Path, actions: str
    ) -> None:
        self.store, self.clock, self.receiver = store, clock, receiver
        path = write_config(directory, receiver, actions)
        config = load_config(path)
        self.enricher = load_enrichment(config, path.parent, str(path)).enricher
        self.ruleset: RuleSet = self.enricher.ruleset
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.source = FakeImpactSource().answer(failures(0))
        impact = ImpactJobs({"checkout-failures": self.source}, PLAN, self.metrics)
        sender = build_action_sender(config.actions, {"DESKTOP_TOKEN": TOKEN}, requests.Session())
        send = SendAction(sender, LiveActions(lambda: self.ruleset), store, PLAN, self.metrics)
        handlers: dict[str, JobHandler] = {
            IMPACT_LOOKUP: ImpactLookup(impact),
            IMPACT_VERIFY: ImpactVerify(impact),
            ACTION_SEND: send,
        }
        options = WorkerOptions(
            RetryPolicy(PLAN.max_attempts, timedelta(seconds=10), timedelta(minutes=5)),
            lease=timedelta(minutes=1),
            poll_interval_seconds=0.1,
            concurrency=1,
        )
        self.worker = Worker(
            store, handlers, options, self.metrics, clock=clock, name="w", jitter=lambda: 0.0
        )

    def deliver(self, status: str = "firing") -> None:
        labels = {"alertname": "PaymentsApiDown", "service": "payments-api", "severity": "critical"}
        ends = "2026-11-22T18:20:00Z" if status == "resolved" else "0001-01-01T00:00:00Z"
        alert = {"status": status, "labels": labels, "annotations": {"summary": "payments down"}}
        alert.update(startsAt="2026-11-22T18:08:59Z", endsAt=ends, generatorURL="", fingerprint="fp-1")
        document = {"version": "4", "status": status, "alerts": [alert], "groupKey": "{}:{alertname=x}"}
        body = json.dumps(document).encode()
        ingest_webhook(self.store, body, AlertPolicy(), self.enricher, self.clock(), plan=PLAN)

    def later(self, **delta: float) -> int:
        self.clock.now += timedelta(**delta)
        return self.worker.run_due()

    def recovery(self) -> Any:
        with self.store.read() as conn:
            return conn.execute(select(recoveries).where(recoveries.c.id == 1)).one()

    def action_jobs(self) -> list[Any]:
        with self.store.read() as conn:
            return outbox.list_jobs(conn, JobFilter(kind=ACTION_SEND), limit=50)[0]

    def audits(self, kind: str) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            query = select(audit_events.c.details).where(audit_events.c.kind == kind)
            return [r.details for r in conn.execute(query.order_by(audit_events.c.id))]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as served:
        yield served


@pytest.fixture
def scenario(store: Store, clock: FakeClock, receiver: Receiver, tmp_path: Path) -> Scenario:
    return Scenario(store, clock, receiver, tmp_path, BANNER + HANDOFFS)


def test_a_recovery_keeps_its_actions_and_fires_each_once_per_trigger_despite_ha_duplicates(
    scenario: Scenario,
) -> None:
    scenario.deliver()
    scenario.deliver()  # the HA pair's second member
    assert [a["name"] for a in scenario.recovery().actions] == [
        "checkout-outage/agent-banner",
        "checkout-outage/crm-case",
        "checkout-outage/team-chat",
    ]
    scenario.deliver("resolved")
    scenario.deliver("resolved")
    keys = sorted(job.idempotency_key for job in scenario.action_jobs())
    assert keys == [
        "action.send/1/checkout-outage/agent-banner/0/fix_deployed",
        "action.send/1/checkout-outage/crm-case/0/fix_deployed",
        "action.send/1/checkout-outage/team-chat/0/fix_deployed",
        "action.send/1/checkout-outage/team-chat/0/opened",
    ]


def test_the_rendered_request_reaches_the_receiver_with_its_idempotency_key_and_an_audit_entry(
    scenario: Scenario,
) -> None:
    scenario.deliver()
    scenario.later(seconds=1)
    (chat,) = scenario.receiver.to("/chat")
    assert chat.json() == {"text": "Checkout failing is opened"}
    assert chat.headers["Idempotency-Key"] == "action.send/1/checkout-outage/team-chat/0/opened"
    assert "Authorization" not in chat.headers, "this action names no credential"
    (audit,) = scenario.audits("action_sent")
    assert audit == {
        "action": "checkout-outage/team-chat",
        "kind": "chat",
        "trigger": "opened",
        "cycle": 0,
        "idempotency_key": "action.send/1/checkout-outage/team-chat/0/opened",
        "host": scenario.receiver.host,
        "status": 200,
        "attempt": 1,
    }
    assert scenario.sample("recoverlink_actions_total", action="chat", outcome="success", audited="true") == 1


def test_an_action_sends_the_recovery_as_it_is_when_the_job_runs(scenario: Scenario) -> None:
    scenario.deliver()
    scenario.source.answer(failures(12, "retail"))
    scenario.later(seconds=1)  # the lookup confirms impact: the banner's impact_confirmed job is due
    scenario.later(seconds=1)
    (banner,) = scenario.receiver.to("/banners/1")
    assert banner.headers["Authorization"] == f"Bearer {TOKEN}"
    assert banner.headers["X-Trigger"] == "impact_confirmed"
    assert banner.json() == {
        "title": "Checkout failing",
        "state": "impact_confirmed",
        "message": "Please retry card payments later.",
        "segments": ["retail"],
    }


def test_a_503_then_success_is_retried_and_the_receiver_sees_the_same_key_twice(scenario: Scenario) -> None:
    scenario.receiver.answer(503, 200)
    scenario.deliver()
    scenario.later(seconds=1)
    (job,) = scenario.action_jobs()
    assert (job.state.value, job.last_reason) == ("pending", "http_503")
    assert scenario.audits("action_sent") == []
    scenario.later(seconds=11)
    first, second = scenario.receiver.to("/chat")
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == job.idempotency_key
    assert len(scenario.audits("action_sent")) == 1
    assert scenario.audits("action_sent")[0]["attempt"] == 2
    assert scenario.sample("recoverlink_actions_total", action="chat", outcome="success", audited="true") == 1
    assert (
        scenario.sample("recoverlink_actions_total", action="chat", outcome="http_503", audited="true")
        is None
    )


def test_an_action_that_fails_for_good_is_audited_and_counted_with_its_reason(scenario: Scenario) -> None:
    scenario.receiver.answer(422)
    scenario.deliver()
    scenario.later(seconds=1)
    (job,) = scenario.action_jobs()
    assert job.state.value == "dead"
    (failed,) = scenario.audits("action_failed")
    assert (failed["action"], failed["reason"], failed["trigger"]) == (
        "checkout-outage/team-chat",
        "http_4xx",
        "opened",
    )
    assert (
        scenario.sample("recoverlink_actions_total", action="chat", outcome="http_4xx", audited="true") == 1
    )


def test_the_first_cx_action_after_the_fix_stamps_cx_updated_and_observes_it_once(scenario: Scenario) -> None:
    scenario.deliver()
    scenario.source.answer(failures(12, "retail"))
    scenario.later(seconds=1)
    scenario.later(seconds=1)  # the banner's impact_confirmed send: before the fix, not a CX update
    assert "cx_updated" not in scenario.recovery().milestones
    scenario.later(minutes=5)
    scenario.source.answer(failures(12, "retail"))  # the verification still sees failures
    scenario.deliver("resolved")
    scenario.later(seconds=20)
    recovery = scenario.recovery()
    assert recovery.state == "fix_deployed"
    assert "cx_updated" in recovery.milestones
    histogram = "recoverlink_recovery_fix_to_cx_update_seconds"
    assert scenario.sample(f"{histogram}_count", **LABELS) == 1
    assert scenario.sample(f"{histogram}_sum", **LABELS) == 20
    scenario.source.answer(failures(0))
    scenario.later(minutes=1)  # verified -> closed -> the banner's closed send
    scenario.later(seconds=1)
    assert scenario.recovery().state == "closed"
    assert len(scenario.receiver.to("/banners/1")) == 3
    assert scenario.sample(f"{histogram}_count", **LABELS) == 1, "stamped once per cycle"
    (transition,) = [a for a in scenario.audits("transition") if a["event"] == "cx_updated"]
    assert transition["evidence"] == {
        "action": "checkout-outage/agent-banner",
        "kind": "agent_desktop",
        "trigger": "fix_deployed",
    }


def test_crm_case_and_chat_actions_do_not_count_as_the_cx_update(
    store: Store, clock: FakeClock, receiver: Receiver, tmp_path: Path
) -> None:
    scenario = Scenario(store, clock, receiver, tmp_path, HANDOFFS)
    scenario.deliver()
    scenario.source.answer(failures(12, "retail"))
    scenario.deliver("resolved")
    scenario.later(seconds=5)
    assert {r.path for r in receiver.requests} == {"/cases", "/chat"}
    assert scenario.recovery().state == "fix_deployed"
    assert "cx_updated" not in scenario.recovery().milestones
    assert scenario.sample("recoverlink_recovery_fix_to_cx_update_seconds_count", **LABELS) is None


def test_a_template_that_fails_on_the_real_recovery_is_dead_lettered_as_template(
    store: Store, clock: FakeClock, receiver: Receiver, tmp_path: Path
) -> None:
    # Passes `check` (the sample recovery has segments), fails on one whose impact has none yet.
    first_segment = """\
      - name: segment-chat
        kind: chat
        on: [opened]
        url: "{url}/chat"
        body: '{{"text": {{{{ recovery.impact.facts.segments | first | tojson }}}}}}'
"""
    scenario = Scenario(store, clock, receiver, tmp_path, first_segment)
    scenario.deliver()
    scenario.later(seconds=1)
    (job,) = scenario.action_jobs()
    assert (job.state.value, job.last_reason) == ("dead", "template")
    assert receiver.requests == []
    assert (
        scenario.sample("recoverlink_actions_total", action="chat", outcome="template", audited="true") == 1
    )


def test_an_action_a_reload_removed_is_dead_lettered_as_unknown_action(scenario: Scenario) -> None:
    scenario.deliver()
    scenario.ruleset = RuleSet((), "v2")
    scenario.later(seconds=1)
    (job,) = scenario.action_jobs()
    assert (job.state.value, job.last_reason) == ("dead", "unknown_action")
    (failed,) = scenario.audits("action_failed")
    assert failed["kind"] == "chat", "the kind planned at opening labels the count"
