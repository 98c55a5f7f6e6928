"""The ITSM jobs: open exactly one incident per recovery, add notes, resolve it by policy, reopen it.

`itsm.open_incident` searches for the recovery's correlation id before it creates, on every attempt,
so a create that timed out after the ITSM stored the record finds that record instead of making a
second one; the link is then remembered on the recovery and never searched for again. Notes,
resolve and reopen wait (without spending attempts) until the incident exists: "incident pending".
Every call is counted and timed in `recoverlink_itsm_requests_total` / `_duration_seconds`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from opentelemetry import trace
from sqlalchemy import Connection

from recoverlink.domain.catalog import ItsmRouting
from recoverlink.domain.errors import ItsmError
from recoverlink.domain.itsm import IncidentDraft, IncidentLink, IncidentStatus, ItsmAdapter
from recoverlink.domain.outbox import JobFailure
from recoverlink.domain.recovery_state import (
    RecoveryEvent,
    RecoveryEventKind,
    TransitionSource,
)
from recoverlink.domain.rules import ResolutionPolicy
from recoverlink.recovery_jobs import JobPlan, apply_and_commit
from recoverlink.store import incidents
from recoverlink.store import recoveries as store
from recoverlink.store.engine import Store
from recoverlink.store.outbox import ClaimedJob
from recoverlink.telemetry import Metrics
from recoverlink.worker import Deferred, Recorded, Recorder

T = TypeVar("T")
_TRACER = trace.get_tracer("recoverlink.itsm")
ACTOR = "worker"
PENDING_RETRY_SECONDS = 15.0  # how often a note waits for its incident to exist
# A note or resolve still waiting after this long gives up: its incident will never exist.
PENDING_GIVE_UP = timedelta(days=2)
RESOLVED_EVENTS = {
    IncidentStatus.RESOLVED: RecoveryEventKind.INCIDENT_RESOLVED,
    IncidentStatus.CLOSED: RecoveryEventKind.INCIDENT_CLOSED,
}


def metered_call(metrics: Metrics, adapter: ItsmAdapter, operation: str, call: Callable[[], T]) -> T:
    """Make one ITSM call, counted and timed by outcome (success, or the error's reason)."""
    started = time.perf_counter()
    outcome = "success"
    with _TRACER.start_as_current_span(
        f"itsm.{operation}", attributes={"recoverlink.itsm": adapter.name}
    ) as span:
        try:
            return call()
        except ItsmError as exc:
            outcome = exc.reason
            span.set_attribute("recoverlink.outcome", outcome)
            raise
        finally:
            metrics.itsm_called(adapter.name, operation, outcome, time.perf_counter() - started)


def draft_record(draft: IncidentDraft) -> dict[str, Any]:
    """The JSON form of a draft, kept in the open job's payload."""
    routing = {k: v for k, v in vars(draft.routing).items() if v is not None}
    return {**{k: v for k, v in vars(draft).items() if k != "routing"}, "routing": routing}


def draft_from(record: Mapping[str, Any]) -> IncidentDraft:
    fields = {k: v for k, v in record.items() if k != "routing"}
    return IncidentDraft(**fields, routing=ItsmRouting(**(record.get("routing") or {})))


@dataclass
class ItsmJobs:
    """What the ITSM job kinds share: the adapters, the store (to read a link), the plan, metrics."""

    adapters: Mapping[str, ItsmAdapter]
    store: Store
    plan: JobPlan
    metrics: Metrics

    def adapter(self, job: ClaimedJob) -> ItsmAdapter:
        system = job.payload.get("system")
        adapter = self.adapters.get(system) if system else None
        if adapter is None:
            raise ItsmError(
                f"ITSM {system!r} is not configured (itsm.{system})", retryable=False, reason="not_configured"
            )
        return adapter

    def target(self, job: ClaimedJob) -> str | None:
        return job.payload.get("system")

    def call(self, adapter: ItsmAdapter, operation: str, call: Callable[[], T]) -> T:
        return metered_call(self.metrics, adapter, operation, call)

    def known_link(self, job: ClaimedJob) -> IncidentLink | None:
        with self.store.read() as conn:
            row = store.load_row(conn, job.payload["recovery_id"])
        return incidents.incident_link(row) if row is not None else None

    def linked_or_wait(self, job: ClaimedJob, now: datetime) -> IncidentLink:
        """The incident to act on; until it exists the job waits, without spending attempts."""
        link = self.known_link(job)
        if link is not None:
            return link
        if now - job.created_at > PENDING_GIVE_UP:
            raise ItsmError("the recovery never got an incident", retryable=False, reason="no_incident")
        raise Deferred(PENDING_RETRY_SECONDS, "incident pending")

    def event(
        self, conn: Connection, row: Any, event: RecoveryEvent, now: datetime
    ) -> list[Callable[[], None]]:
        """Apply an event if the recovery takes it; what to observe once committed."""
        return apply_and_commit(conn, row, event, now, actor=ACTOR, plan=self.plan, metrics=self.metrics)


def _audit(conn: Connection, recovery_id: int, kind: str, details: Mapping[str, Any], now: datetime) -> None:
    store.append_audit(conn, recovery_id, at=now, source="worker", actor=ACTOR, kind=kind, details=details)


class OpenIncident:
    """`itsm.open_incident`: find or create the recovery's incident, then link it."""

    def __init__(self, jobs: ItsmJobs) -> None:
        self.jobs = jobs

    def target(self, job: ClaimedJob) -> str | None:
        return self.jobs.target(job)

    def perform(self, job: ClaimedJob, now: datetime) -> Recorder:
        if (known := self.jobs.known_link(job)) is not None:
            return lambda conn, at: Recorded({"already_linked": known.number})
        adapter = self.jobs.adapter(job)
        draft = draft_from(job.payload["draft"])
        found = self.jobs.call(adapter, "find", lambda: adapter.find_incident(draft.correlation_id))
        link = found or self.jobs.call(adapter, "create", lambda: adapter.create_incident(draft))
        return lambda conn, at: self._record(conn, job, link, found is not None, at)

    def _record(
        self, conn: Connection, job: ClaimedJob, link: IncidentLink, found: bool, now: datetime
    ) -> Recorded:
        recovery_id = job.payload["recovery_id"]
        row = store.load_row(conn, recovery_id, for_update=True)
        if row is None:
            return Recorded({"skipped": "recovery not found", "incident": link.number})
        if not incidents.link_incident(conn, recovery_id, link, IncidentStatus.NEW.value, now):
            # Linked meanwhile (by a callback that named our correlation id): keep the first link.
            return Recorded({"already_linked": row.incident_number, "incident": link.number})
        details = {"system": link.system, "incident": link.number, "id": link.id, "found_existing": found}
        _audit(conn, recovery_id, "incident_linked", {**details, "url": link.url}, now)
        evidence = {"system": link.system, "incident": link.number}
        event = RecoveryEvent(RecoveryEventKind.INCIDENT_LINKED, TransitionSource.WORKER, evidence)
        observe = self.jobs.event(conn, store.load_row(conn, recovery_id), event, now)
        return Recorded(details, observe)

    def record_failure(
        self, conn: Connection, job: ClaimedJob, failure: JobFailure, final: bool, now: datetime
    ) -> None:
        """The recovery says "incident pending" (the API shows the open job's last error); the
        first failure and the last one are on its timeline."""
        if final or job.attempts == 1:
            details = {"system": job.payload.get("system"), "error": failure.message, "final": final}
            _audit(conn, job.payload["recovery_id"], "incident_pending", details, now)


class UpdateIncident:
    """`itsm.update_incident`: a work note about what happened to the recovery."""

    def __init__(self, jobs: ItsmJobs) -> None:
        self.jobs = jobs

    def target(self, job: ClaimedJob) -> str | None:
        return self.jobs.target(job)

    def perform(self, job: ClaimedJob, now: datetime) -> Recorder:
        link = self.jobs.linked_or_wait(job, now)
        adapter = self.jobs.adapter(job)
        note = str(job.payload["note"])
        self.jobs.call(adapter, "note", lambda: adapter.add_note(link, note))
        return lambda conn, at: Recorded({"incident": link.number, "note": note})

    def record_failure(
        self, conn: Connection, job: ClaimedJob, failure: JobFailure, final: bool, now: datetime
    ) -> None:
        if final:
            _audit(conn, job.payload["recovery_id"], "incident_note_failed", {"error": failure.message}, now)


class ResolveIncident:
    """`itsm.resolve_incident`: after verification, resolve (or comment, or monitor) per policy."""

    def __init__(self, jobs: ItsmJobs) -> None:
        self.jobs = jobs

    def target(self, job: ClaimedJob) -> str | None:
        return self.jobs.target(job)

    def perform(self, job: ClaimedJob, now: datetime) -> Recorder:
        link = self.jobs.linked_or_wait(job, now)
        adapter = self.jobs.adapter(job)
        policy = ResolutionPolicy(job.payload["policy"])
        note = str(job.payload["note"])
        status = self.jobs.call(adapter, "resolve", lambda: adapter.resolve_incident(link, policy, note))
        return lambda conn, at: self._record(conn, job, link, status, at)

    def _record(
        self, conn: Connection, job: ClaimedJob, link: IncidentLink, status: IncidentStatus, now: datetime
    ) -> Recorded:
        recovery_id = job.payload["recovery_id"]
        row = store.load_row(conn, recovery_id, for_update=True)
        if row is None:
            return Recorded({"skipped": "recovery not found"})
        incidents.set_incident_status(conn, recovery_id, status.value, None, now)
        observe: list[Callable[[], None]] = []
        kind = RESOLVED_EVENTS.get(status)
        if kind is not None:
            evidence = {"system": link.system, "incident": link.number, "by": "recoverlink"}
            observe = self.jobs.event(conn, row, RecoveryEvent(kind, TransitionSource.ITSM, evidence), now)
        return Recorded({"incident": link.number, "status": status.value}, observe)

    def record_failure(
        self, conn: Connection, job: ClaimedJob, failure: JobFailure, final: bool, now: datetime
    ) -> None:
        if final:
            _audit(
                conn, job.payload["recovery_id"], "incident_resolve_failed", {"error": failure.message}, now
            )


class ReopenIncident:
    """`itsm.reopen_incident`: the recovery reopened, so does its incident (never a won't-fix one)."""

    def __init__(self, jobs: ItsmJobs) -> None:
        self.jobs = jobs

    def target(self, job: ClaimedJob) -> str | None:
        return self.jobs.target(job)

    def perform(self, job: ClaimedJob, now: datetime) -> Recorder:
        link = self.jobs.linked_or_wait(job, now)
        adapter = self.jobs.adapter(job)
        note = str(job.payload["note"])
        self.jobs.call(adapter, "reopen", lambda: adapter.reopen_incident(link, note))
        return lambda conn, at: self._record(conn, job, link, at)

    def _record(self, conn: Connection, job: ClaimedJob, link: IncidentLink, now: datetime) -> Recorded:
        incidents.set_incident_status(
            conn, job.payload["recovery_id"], IncidentStatus.IN_PROGRESS.value, None, now
        )
        return Recorded({"incident": link.number, "status": IncidentStatus.IN_PROGRESS.value})

    def record_failure(
        self, conn: Connection, job: ClaimedJob, failure: JobFailure, final: bool, now: datetime
    ) -> None:
        if final:
            _audit(
                conn, job.payload["recovery_id"], "incident_reopen_failed", {"error": failure.message}, now
            )
