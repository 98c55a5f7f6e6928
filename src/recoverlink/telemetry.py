"""Every metric recoverlink exports, defined once on a registry passed in (DESIGN.md, Metric names).

Under gunicorn, `PROMETHEUS_MULTIPROC_DIR` is set by `recoverlink serve`; each scrape then reads
every process's files through a fresh registry (see `render_metrics`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from recoverlink.domain.actions import ActionKind
from recoverlink.domain.alerts import AlertStatus, DeliveryResult
from recoverlink.domain.enrichment import MissReason
from recoverlink.domain.recovery_state import Milestone, RecoveryEventKind, RecoveryState, Transition

NOTIFICATION_OUTCOMES = ("accepted", "duplicate", "rejected", "unauthorized", "unavailable")
ITSM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Recovery latencies: 1 s to 24 h (DESIGN.md, Metric names).
LATENCY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400)
UNKNOWN = "unknown"
OTHER = "other"
PRIORITIES = frozenset({"P1", "P2", "P3", "P4", "P5"})


class LabelBounds:
    """Keeps label values bounded: `unknown` for missing ones, at most `max_services` distinct
    services per process (the rest are `other`), priorities P1..P5 or `unknown`."""

    def __init__(self, max_services: int) -> None:
        self.max_services = max_services
        self._services: set[str] = set()
        self._lock = threading.Lock()

    def service(self, value: str | None) -> str:
        if not value:
            return UNKNOWN
        with self._lock:
            if value in self._services:
                return value
            if len(self._services) < self.max_services:
                self._services.add(value)
                return value
        return OTHER

    @staticmethod
    def team(value: str | None) -> str:
        return value or UNKNOWN

    @staticmethod
    def priority(value: str | None) -> str:
        return value if value in PRIORITIES else UNKNOWN


@dataclass(frozen=True)
class FinishFacts:
    """The labels of `recoverlink_recoveries_finished_total`, for a recovery closing now."""

    linked_customers: bool  # impact facts (segments, journeys or counts) were attached
    full_context: bool  # owner, impact and incident link (where it has an ITSM) were all known
    single_owner: bool  # the owner team never changed
    manual_lookup: bool  # a person set the owner or the impact by hand


class Metrics:
    """The metrics of one app or worker, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry, max_services: int = 200) -> None:
        self.registry = registry
        self.bounds = LabelBounds(max_services)
        self.notifications = Counter(
            "recoverlink_alertmanager_notifications_total",
            "Alertmanager webhook deliveries by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.alerts_received = Counter(
            "recoverlink_alerts_received_total",
            "Alerts inside webhook deliveries, by alert status and what they told us.",
            ["status", "result"],
            registry=registry,
        )
        self.http_request_duration = Histogram(
            "recoverlink_http_request_duration_seconds",
            "Time to answer an HTTP request, by handler and status code.",
            ["handler", "code"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.enrichment_misses = Counter(
            "recoverlink_enrichment_misses_total",
            "New alert episodes the catalog could not fully place, by reason.",
            ["reason"],
            registry=registry,
        )
        # "mostrecent": the last reload anywhere wins, as one process validates and the others follow.
        self.config_last_reload_successful = Gauge(
            "recoverlink_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.config_last_reload_success_timestamp = Gauge(
            "recoverlink_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        recovery_labels = ["team", "priority", "service"]
        self.recoveries_opened = Counter(
            "recoverlink_recoveries_opened_total",
            "Recoveries opened.",
            recovery_labels,
            registry=registry,
        )
        self.recoveries_reopened = Counter(
            "recoverlink_recoveries_reopened_total",
            "Recoveries reopened by an alert firing again within the reopen window.",
            recovery_labels,
            registry=registry,
        )
        self.time_to_ownership = Histogram(
            "recoverlink_recovery_time_to_ownership_seconds",
            "From a recovery opening to its owner being known (catalog, rule or person).",
            ["team", "priority"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.recoveries_closed = Counter(
            "recoverlink_recoveries_closed_total",
            "Recoveries closed.",
            recovery_labels,
            registry=registry,
        )
        self.resolution = Histogram(
            "recoverlink_recovery_resolution_seconds",
            "From a recovery opening to its closing (service resolution time).",
            ["team", "priority"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.escalation_bounces = Counter(
            "recoverlink_recovery_escalation_bounces_total",
            "Recoveries whose owner was reassigned to another team, by the new team.",
            ["team"],
            registry=registry,
        )
        self.time_to_impact = Histogram(
            "recoverlink_recovery_time_to_impact_seconds",
            "From a recovery opening to its customer impact being identified (impact source or person).",
            ["team", "priority"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.fix_to_cx_update = Histogram(
            "recoverlink_recovery_fix_to_cx_update_seconds",
            "From the fix being deployed to the CX update: the first successful agent desktop, knowledge "
            "base, chatbot or customer messaging action after it, or an operator confirming it.",
            ["team", "priority"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.fix_to_verification = Histogram(
            "recoverlink_recovery_fix_to_verification_seconds",
            "From the fix being deployed to customer impact verified back to normal.",
            ["team", "priority"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.repeat_alerts = Counter(
            "recoverlink_recovery_repeat_alerts_total",
            "Alerts of the same failure that fired again within 24 h / 48 h of its recovery closing.",
            ["team", "window"],
            registry=registry,
        )
        self.repeat_contacts = Counter(
            "recoverlink_recovery_repeat_contacts_total",
            "Repeat customer contacts within 24 h / 48 h of a recovery closing, where a source counts them.",
            ["team", "window"],
            registry=registry,
        )
        self.recoveries_finished = Counter(
            "recoverlink_recoveries_finished_total",
            "Closed recoveries, by whether they had customers linked, full context, one owner, and "
            "needed a manual lookup: the share-of-recoveries figures are PromQL over it.",
            ["team", "linked_customers", "full_context", "single_owner", "manual_lookup"],
            registry=registry,
        )
        self.time_to_incident = Histogram(
            "recoverlink_recovery_time_to_incident_seconds",
            "From a recovery opening to its linked incident existing in the ITSM.",
            ["team", "priority", "itsm"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.itsm_requests = Counter(
            "recoverlink_itsm_requests_total",
            "Calls to the ITSM tool by operation and outcome (success or the failure's reason).",
            ["itsm", "operation", "outcome"],
            registry=registry,
        )
        self.itsm_request_duration = Histogram(
            "recoverlink_itsm_request_duration_seconds",
            "How long calls to the ITSM tool took.",
            ["itsm", "operation"],
            buckets=ITSM_BUCKETS,
            registry=registry,
        )
        self.actions = Counter(
            "recoverlink_actions_total",
            "Automated CX handoff actions by kind, outcome (success, or the final failure's reason) and "
            "whether the action has an audit entry.",
            ["action", "outcome", "audited"],
            registry=registry,
        )
        self.alerts_marked_stale = Counter(
            "recoverlink_alerts_marked_stale_total",
            "Firing alert episodes marked stale: not re-sent by Alertmanager for their stale_after.",
            ["team"],
            registry=registry,
        )
        self.outbox_runs = Counter(
            "recoverlink_outbox_job_runs_total",
            "Outbox job runs by kind and outcome (done, retry, dead, deferred, lost, unrecorded).",
            ["kind", "outcome"],
            registry=registry,
        )
        self.storm_episodes = Counter(
            "recoverlink_recovery_storm_episodes_total",
            "Alert episodes that joined a storm's parent recovery instead of opening their own.",
            ["team"],
            registry=registry,
        )
        self._initialize_labels()

    def transition_observed(
        self,
        transition: Transition,
        team: str | None,
        priority: str | None,
        service: str | None,
        finish: FinishFacts | None = None,
    ) -> None:
        """Observe the milestone metrics a committed transition produced, at the moment it happened."""
        milestones = transition.status.milestones
        b = self.bounds
        latency = {"team": b.team(team), "priority": b.priority(priority)}
        for milestone, histogram, start in (
            (Milestone.IMPACT_IDENTIFIED, self.time_to_impact, Milestone.OPENED),
            (Milestone.IMPACT_VERIFIED, self.fix_to_verification, Milestone.FIX_DEPLOYED),
            (Milestone.CX_UPDATED, self.fix_to_cx_update, Milestone.FIX_DEPLOYED),
        ):
            if milestone in transition.stamped and start in milestones:
                histogram.labels(**latency).observe(_seconds(milestones[start], transition.at))
        opened_at = milestones.get(Milestone.OPENED)
        elapsed = _seconds(opened_at, transition.at) if opened_at else None
        if Milestone.INCIDENT_LINKED in transition.stamped and elapsed is not None:
            itsm = transition.evidence.get("system") or UNKNOWN
            self.time_to_incident.labels(**latency, itsm=itsm).observe(elapsed)
        if Milestone.OWNER_KNOWN in transition.stamped and elapsed is not None:
            self.owner_known(transition.status.owner, priority, elapsed)
        elif transition.kind is RecoveryEventKind.OWNER_KNOWN and transition.changed:
            self.escalation_bounces.labels(b.team(transition.status.owner)).inc()
        if transition.moved and transition.to_state is RecoveryState.CLOSED:
            self.recoveries_closed.labels(b.team(team), b.priority(priority), b.service(service)).inc()
            if elapsed is not None:
                self.resolution.labels(**latency).observe(elapsed)
            if finish is not None:
                flags = {name: str(value).lower() for name, value in vars(finish).items()}
                self.recoveries_finished.labels(team=b.team(team), **flags).inc()

    def repeats_counted(self, team: str | None, window: str, alerts: int, contacts: float) -> None:
        """A follow-up after close counted repeat alerts and (where a source measures them) contacts."""
        labels = {"team": self.bounds.team(team), "window": window}
        self.repeat_alerts.labels(**labels).inc(alerts)
        if contacts > 0:
            self.repeat_contacts.labels(**labels).inc(contacts)

    def recovery_opened(self, team: str | None, priority: str | None, service: str | None) -> None:
        b = self.bounds
        self.recoveries_opened.labels(b.team(team), b.priority(priority), b.service(service)).inc()

    def recovery_reopened(self, team: str | None, priority: str | None, service: str | None) -> None:
        b = self.bounds
        self.recoveries_reopened.labels(b.team(team), b.priority(priority), b.service(service)).inc()

    def owner_known(self, team: str | None, priority: str | None, seconds: float) -> None:
        self.time_to_ownership.labels(self.bounds.team(team), self.bounds.priority(priority)).observe(seconds)

    def itsm_called(self, itsm: str, operation: str, outcome: str, seconds: float) -> None:
        """One call to the ITSM: `outcome` is `success` or the failure's bounded reason."""
        self.itsm_requests.labels(itsm=itsm, operation=operation, outcome=outcome).inc()
        self.itsm_request_duration.labels(itsm=itsm, operation=operation).observe(seconds)

    def action_finished(self, kind: ActionKind, outcome: str, audited: bool) -> None:
        """One action reached its outcome: `success`, or the reason it finally failed."""
        self.actions.labels(action=kind.value, outcome=outcome, audited=str(audited).lower()).inc()

    def reload_succeeded(self, at_seconds: float) -> None:
        self.config_last_reload_successful.set(1)
        self.config_last_reload_success_timestamp.set(at_seconds)

    def reload_failed(self) -> None:
        self.config_last_reload_successful.set(0)

    def _initialize_labels(self) -> None:
        """Create known label values at zero so rate() sees the first event."""
        for outcome in NOTIFICATION_OUTCOMES:
            self.notifications.labels(outcome=outcome)
        for status in AlertStatus:
            for result in DeliveryResult:
                self.alerts_received.labels(status=status.value, result=result.value)
        for reason in MissReason:
            self.enrichment_misses.labels(reason=reason.value)
        for kind in ActionKind:
            self.actions.labels(action=kind.value, outcome="success", audited="true")


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render_metrics(registry: CollectorRegistry, *store_collectors: Collector) -> tuple[bytes, str]:
    """The exposition body: every process's values in multiprocess mode, else this registry's, plus
    gauges read from the store at scrape time (equal on every replica: aggregate them with max)."""
    path = multiprocess_dir()
    scrape = CollectorRegistry(support_collectors_without_names=True)
    if path is None:
        scrape.register(_Forward(registry))
    else:
        multiprocess.MultiProcessCollector(scrape, path=path)  # type: ignore[no-untyped-call]
    for collector in store_collectors:
        scrape.register(collector)
    return generate_latest(scrape), CONTENT_TYPE_LATEST


class _Forward(Collector):
    """Expose one registry's metrics inside another."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        return self.source.collect()
