"""Which outbox jobs a recovery's changes cause, written in the same transaction as the change.

- a new recovery: one `impact.lookup` per impact source of its service;
- fix deployed: one `impact.verify` per source (one without a source when the service has none,
  which verifies at once: there is nothing to wait for);
- closed: `recovery.follow_up` at 24 h and 48 h, counting repeat alerts and repeat contacts;
- any transition: `action.send` for each CX handoff action it triggers (`action_plan`).

Every caller that commits a transition (ingest, the operator API, the worker, ITSM callbacks) goes
through `commit_transition`, so no path forgets the jobs a milestone implies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from recoverlink import action_plan, itsm_plan
from recoverlink.config.model import Config
from recoverlink.domain.alerts import Alert
from recoverlink.domain.enrichment import Enrichment
from recoverlink.domain.impact import impact_summary
from recoverlink.domain.recovery_state import (
    Milestone,
    RecoveryEvent,
    RecoveryEventKind,
    RecoveryState,
    Transition,
    TransitionSource,
    apply_event,
    refusal,
)
from recoverlink.store import outbox
from recoverlink.store import recoveries as store
from recoverlink.store.common import WriteBatch
from recoverlink.store.outbox import NewJob
from recoverlink.telemetry import FinishFacts, Metrics

IMPACT_LOOKUP = "impact.lookup"
IMPACT_VERIFY = "impact.verify"
FOLLOW_UP = "recovery.follow_up"
JOB_KINDS = (IMPACT_LOOKUP, IMPACT_VERIFY, FOLLOW_UP, *itsm_plan.ITSM_KINDS, action_plan.ACTION_SEND)
FOLLOW_UP_WINDOWS: Mapping[str, timedelta] = {"24h": timedelta(hours=24), "48h": timedelta(hours=48)}


@dataclass(frozen=True)
class JobPlan:
    """The config that decides when jobs run and how often they are tried."""

    itsm_systems: frozenset[str] = frozenset()  # the configured ITSMs
    itsm_default: str | None = None  # for services whose catalog entry names none
    lookup_every: timedelta = timedelta(minutes=1)
    verify_every: timedelta = timedelta(minutes=1)
    verify_timeout: timedelta = timedelta(hours=1)
    max_attempts: int = 8

    @classmethod
    def from_config(cls, config: Config) -> JobPlan:
        impact, itsm = config.impact, config.itsm
        return cls(
            itsm_systems=frozenset(itsm.configured()),
            itsm_default=None if itsm.default == "none" else itsm.default,
            lookup_every=impact.lookup_every,
            verify_every=impact.verify_every,
            verify_timeout=impact.verify_timeout,
            max_attempts=config.worker.max_attempts,
        )

    def itsm_for(self, catalog_system: str | None) -> str | None:
        """The ITSM of a new recovery: its catalog entry's, else the default; None when that one is
        not configured (the recovery is tracked without an incident)."""
        system = catalog_system or self.itsm_default
        return system if system in self.itsm_systems else None


DEFAULT_PLAN = JobPlan()


def impact_context(title: str, opened_at: datetime, alert: Alert, enrichment: Enrichment) -> dict[str, Any]:
    """What impact queries and lookups render with: the recovery, its service and first alert.

    Kept on the recovery; the worker adds `recovery.id` and the time of the run."""
    return {
        "recovery": {"title": title, "opened_at": opened_at.isoformat()},
        "service": {
            "name": enrichment.service,
            "ref": enrichment.service_ref,
            "tier": enrichment.tier,
            "system": enrichment.system,
            "journeys": list(enrichment.journeys),
            "segments": list(enrichment.segments),
        },
        "team": enrichment.owner,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "fields": dict(enrichment.fields),
    }


def lookup_job(
    recovery_id: int, source: str, context: Mapping[str, Any], due_at: datetime, round_: int = 0
) -> NewJob:
    payload = {"recovery_id": recovery_id, "source": source, "context": dict(context), "round": round_}
    key = f"{IMPACT_LOOKUP}/{recovery_id}/{source}/{round_}"
    return NewJob(IMPACT_LOOKUP, key, payload, due_at, recovery_id)


def verify_job(
    recovery_id: int,
    source: str | None,
    context: Mapping[str, Any],
    *,
    cycle: int,
    due_at: datetime,
    deadline: datetime,
    round_: int = 0,
) -> NewJob:
    payload = {
        "recovery_id": recovery_id,
        "source": source,
        "context": dict(context),
        "cycle": cycle,
        "deadline": deadline.isoformat(),
        "round": round_,
    }
    key = f"{IMPACT_VERIFY}/{recovery_id}/{cycle}/{source or '-'}/{round_}"
    return NewJob(IMPACT_VERIFY, key, payload, due_at, recovery_id)


def jobs_for_opening(
    recovery_id: int, sources: Sequence[str], context: Mapping[str, Any], now: datetime
) -> list[NewJob]:
    return [lookup_job(recovery_id, source, context, now) for source in sources]


def jobs_after_transition(row: Any, transition: Transition, plan: JobPlan) -> list[NewJob]:
    """The jobs the milestones this transition stamped call for (ITSM ones: `itsm_plan`, actions:
    `action_plan`)."""
    jobs: list[NewJob] = itsm_plan.jobs_after_transition(row, transition)
    jobs.extend(action_plan.jobs_after_transition(row, transition))
    cycle = transition.status.reopen_count
    at = transition.at
    if Milestone.FIX_DEPLOYED in transition.stamped:
        deadline = at + plan.verify_timeout
        sources: list[str | None] = list(row.impact_sources) or [None]
        for source in sources:
            jobs.append(
                verify_job(row.id, source, row.impact_context, cycle=cycle, due_at=at, deadline=deadline)
            )
    if Milestone.CLOSED in transition.stamped:
        for window, length in FOLLOW_UP_WINDOWS.items():
            payload = {
                "recovery_id": row.id,
                "window": window,
                "closed_at": at.isoformat(),
                "cycle": cycle,
                "correlation_key": row.correlation_key,
                "team": row.team,
                "sources": list(row.impact_sources),
                "context": row.impact_context,
            }
            key = f"{FOLLOW_UP}/{row.id}/{cycle}/{window}"
            jobs.append(NewJob(FOLLOW_UP, key, payload, at + length, row.id))
    return jobs


def apply_and_commit(
    conn: Connection,
    row: Any,
    event: RecoveryEvent,
    now: datetime,
    *,
    actor: str,
    plan: JobPlan,
    metrics: Metrics,
) -> list[Callable[[], None]]:
    """Apply an event the recovery may refuse (the worker's and the ITSM's: an expected outcome,
    not an error), commit it with its jobs, and return the metric observations to make once the
    transaction committed."""
    status = store.status_of(row)
    if refusal(status, event) is not None:
        return []
    transition = apply_event(status, event, now)
    if not transition.changed:
        return []
    commit_transition(conn, row, transition, actor, plan)
    team, priority, service = row.team, row.priority, row.service
    finish = finish_facts(row, transition)
    return [lambda: metrics.transition_observed(transition, team, priority, service, finish)]


@dataclass
class PendingWrites:
    """Attachments, audit rows and jobs of one transaction, written together at its end: one round
    trip on PostgreSQL instead of one per kind or row (the ingest path writes several per new recovery)."""

    audits: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[NewJob] = field(default_factory=list)
    attachments: list[store.Attachment] = field(default_factory=list)

    def flush_attachments(self, conn: Connection, now: datetime) -> None:
        """Write the attachments now, for what reads them before the transaction ends."""
        store.attach_alerts(conn, self.attachments, now)
        self.attachments.clear()

    def flush(self, conn: Connection, now: datetime, max_attempts: int) -> None:
        """Everything pending in one batch (one round trip on PostgreSQL)."""
        batch = WriteBatch()
        store.attachment_writes(batch, conn, self.attachments, now)
        store.audit_writes(batch, conn, self.audits)
        outbox.enqueue_writes(batch, conn, self.jobs, now, max_attempts)
        batch.run(conn)
        self.attachments.clear()
        self.audits.clear()
        self.jobs.clear()


_BY_HAND = (RecoveryEventKind.OWNER_KNOWN, RecoveryEventKind.IMPACT_CONFIRMED)


def is_manual_lookup(transition: Transition) -> bool:
    """A person set the owner or the impact: what `manual_lookup` on the finished counter means."""
    return (
        transition.changed and transition.source is TransitionSource.OPERATOR and transition.kind in _BY_HAND
    )


def finish_facts(row: Any, transition: Transition) -> FinishFacts | None:
    """The labels of `recoverlink_recoveries_finished_total` when this transition closes `row`."""
    if not (transition.moved and transition.to_state is RecoveryState.CLOSED):
        return None
    milestones = transition.status.milestones
    impact = impact_summary(row.impact_sources or [], row.impact or {})
    incident_known = Milestone.INCIDENT_LINKED in milestones or not transition.status.itsm_configured
    return FinishFacts(
        linked_customers=bool(impact["facts"]) or impact["status"] == "confirmed",
        full_context=Milestone.OWNER_KNOWN in milestones
        and Milestone.IMPACT_IDENTIFIED in milestones
        and incident_known,
        single_owner=transition.status.escalation_bounces == 0,
        manual_lookup=bool(row.manual_lookup) or is_manual_lookup(transition),
    )


def commit_transition(
    conn: Connection,
    row: Any,
    transition: Transition,
    actor: str,
    plan: JobPlan,
    *,
    pending: PendingWrites | None = None,
) -> None:
    """Save the transition with its audit entry, and enqueue the jobs it causes, in one transaction
    (now, or with `pending` when the caller flushes it before committing)."""
    store.save_status(conn, row, transition)
    if is_manual_lookup(transition):
        store.mark_manual_lookup(conn, row.id)
    audit = store.transition_audit(row.id, transition, actor)
    jobs = jobs_after_transition(row, transition, plan)
    if pending is None:
        store.append_audits(conn, [audit])
        outbox.enqueue(conn, jobs, transition.at, plan.max_attempts)
    else:
        pending.audits.append(audit)
        pending.jobs.extend(jobs)
