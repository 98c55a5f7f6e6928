"""The impact jobs: look up customer impact while a recovery is open, verify it after the fix.

`impact.lookup` reads one source; customers affected -> `impact_confirmed` (the worker's event),
else it looks again after `lookup_every` until impact shows or the fix is deployed. `impact.verify`
re-reads each source after the fix until it is back under its thresholds (then `impact_verified`,
which lets the recovery close) or `verify_timeout` passes ("unverified"). A failing source marks the
recovery "impact unknown: <source> <error>" and is retried by the outbox; nothing else waits for it.
What each source said is kept on the recovery (`impact`), with an audit entry whenever it changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from recoverlink.domain.errors import ImpactSourceError
from recoverlink.domain.impact import ImpactAssessment, ImpactSource, assess, reading_record
from recoverlink.domain.outbox import JobFailure
from recoverlink.domain.recovery_state import (
    Milestone,
    RecoveryEvent,
    RecoveryEventKind,
    RecoveryState,
    TransitionSource,
)
from recoverlink.recovery_jobs import JobPlan, apply_and_commit, lookup_job, verify_job
from recoverlink.store import outbox
from recoverlink.store import recoveries as store
from recoverlink.store.outbox import ClaimedJob
from recoverlink.telemetry import Metrics
from recoverlink.worker import Recorded, Recorder

ACTOR = "worker"
SOURCE = TransitionSource.WORKER


def render_context(job: ClaimedJob, now: datetime) -> dict[str, Any]:
    """The job's stored context plus the recovery id and the time of this run."""
    context = dict(job.payload.get("context") or {})
    recovery = {**(context.get("recovery") or {}), "id": job.recovery_id}
    return {**context, "recovery": recovery, "now": now.isoformat(), "now_unix": now.timestamp()}


@dataclass
class ImpactJobs:
    """Shared by both kinds: the configured sources, the plan and the metrics to observe."""

    sources: Mapping[str, ImpactSource]
    plan: JobPlan
    metrics: Metrics

    def source(self, job: ClaimedJob) -> ImpactSource | None:
        name = job.payload.get("source")
        return self.sources.get(name) if name else None

    def target(self, job: ClaimedJob) -> str | None:
        source = self.source(job)
        return source.target if source is not None else None

    def read(self, job: ClaimedJob, now: datetime) -> ImpactAssessment:
        name = job.payload.get("source")
        source = self.source(job)
        if source is None:
            raise ImpactSourceError(
                f"impact source {name!r} is not configured (impact.sources)",
                retryable=False,
                reason="unknown_source",
            )
        return assess(source.read(render_context(job, now)), source.thresholds)

    def transition(
        self, conn: Connection, row: Any, event: RecoveryEvent, now: datetime
    ) -> list[Callable[[], None]]:
        """Apply a worker event if the recovery takes it; the observations to make after commit."""
        return apply_and_commit(conn, row, event, now, actor=ACTOR, plan=self.plan, metrics=self.metrics)


def _entry(row: Any, source: str) -> dict[str, Any]:
    return dict((row.impact or {}).get(source) or {})


def _save(
    conn: Connection, row: Any, source: str, entry: Mapping[str, Any], now: datetime, *, audit: str | None
) -> None:
    """Store one source's entry; add an audit entry of kind `audit` (when given: the status changed)."""
    store.set_impact(conn, row.id, {**(row.impact or {}), source: dict(entry)}, now)
    if audit is not None:
        details = {"source": source, **dict(entry)}
        store.append_audit(
            conn, row.id, at=now, source=SOURCE.value, actor=ACTOR, kind=audit, details=details
        )


def _changed(row: Any, source: str, entry: Mapping[str, Any]) -> bool:
    return _entry(row, source).get("status") != entry.get("status")


def _verification_changed(row: Any, source: str, verification: Mapping[str, Any]) -> bool:
    before = _entry(row, source).get("verification") or {}
    return bool(
        before.get("status") != verification["status"] or before.get("cycle") != verification["cycle"]
    )


def _without_prefix(message: str, source: str) -> str:
    """The note already names the source ("impact unknown: <source> <error>")."""
    return message.removeprefix(f"impact source {source}: ")


def _reading_entry(assessment: ImpactAssessment, now: datetime) -> dict[str, Any]:
    status = "affected" if assessment.affected else "unaffected"
    return {
        "status": status,
        "checked_at": now.isoformat(),
        "breaches": list(assessment.breaches),
        **reading_record(assessment.reading),
    }


class ImpactLookup:
    """`impact.lookup`: is anyone affected yet?"""

    def __init__(self, jobs: ImpactJobs) -> None:
        self.jobs = jobs

    def target(self, job: ClaimedJob) -> str | None:
        return self.jobs.target(job)

    def perform(self, job: ClaimedJob, now: datetime) -> Recorder:
        assessment = self.jobs.read(job, now)
        return lambda conn, at: self._record(conn, job, assessment, at)

    def _record(
        self, conn: Connection, job: ClaimedJob, assessment: ImpactAssessment, now: datetime
    ) -> Recorded:
        row = store.load_row(conn, job.payload["recovery_id"], for_update=True)
        if row is None:
            return Recorded({"skipped": "recovery not found"})
        source = job.payload["source"]
        entry = {**_entry(row, source), **_reading_entry(assessment, now)}
        for stale_key in ("error", "reason", "retrying"):
            entry.pop(stale_key, None)
        _save(conn, row, source, entry, now, audit="impact" if _changed(row, source, entry) else None)
        observe: list[Callable[[], None]] = []
        if assessment.affected:
            evidence = {"source": source, "breaches": "; ".join(assessment.breaches)}
            event = RecoveryEvent(RecoveryEventKind.IMPACT_CONFIRMED, SOURCE, evidence)
            observe = self.jobs.transition(conn, row, event, now)
        elif self._keep_looking(row):
            round_ = int(job.payload.get("round", 0)) + 1
            due = now + self.jobs.plan.lookup_every
            again = lookup_job(row.id, source, job.payload.get("context") or {}, due, round_)
            outbox.enqueue(conn, [again], now, self.jobs.plan.max_attempts)
        return Recorded({"affected": assessment.affected, "breaches": list(assessment.breaches)}, observe)

    @staticmethod
    def _keep_looking(row: Any) -> bool:
        """Until impact is identified (by anyone) or the fix is deployed."""
        status = store.status_of(row)
        identified = Milestone.IMPACT_IDENTIFIED in status.milestones
        return not identified and store.is_collecting(status.state)

    def record_failure(
        self, conn: Connection, job: ClaimedJob, failure: JobFailure, final: bool, now: datetime
    ) -> None:
        row = store.load_row(conn, job.payload["recovery_id"], for_update=True)
        if row is None:
            return
        source = job.payload["source"]
        error = _without_prefix(failure.message, source)
        entry = {**_entry(row, source), "status": "error", "error": error, "checked_at": now.isoformat()}
        entry["reason"] = failure.reason
        entry["retrying"] = not final
        _save(conn, row, source, entry, now, audit="impact" if _changed(row, source, entry) else None)


class ImpactVerify:
    """`impact.verify`: after the fix, are customers back to normal?"""

    def __init__(self, jobs: ImpactJobs) -> None:
        self.jobs = jobs

    def target(self, job: ClaimedJob) -> str | None:
        return self.jobs.target(job)

    def perform(self, job: ClaimedJob, now: datetime) -> Recorder:
        if job.payload.get("source") is None:
            return lambda conn, at: self._record(conn, job, None, at)
        assessment = self.jobs.read(job, now)
        return lambda conn, at: self._record(conn, job, assessment, at)

    def _record(
        self, conn: Connection, job: ClaimedJob, assessment: ImpactAssessment | None, now: datetime
    ) -> Recorded:
        row = store.load_row(conn, job.payload["recovery_id"], for_update=True)
        if row is None or not self._current(row, job):
            return Recorded({"skipped": "the recovery was reopened, canceled or is gone"})
        source = job.payload.get("source")
        if source is None:
            evidence = {"reason": "no impact source to verify: the alerts resolving is the evidence"}
            return Recorded({"verified": True}, self._verified(conn, row, evidence, now))
        assert assessment is not None
        verification = self._verification(job, assessment, now)
        entry = {**_entry(row, source), "verification": verification}
        audit = "verification" if _verification_changed(row, source, verification) else None
        _save(conn, row, source, entry, now, audit=audit)
        observe: list[Callable[[], None]] = []
        if verification["status"] == "back_to_normal":
            refreshed = store.load_row(conn, row.id)
            if self._all_verified(refreshed, job.payload["cycle"]):
                evidence = {"sources": ", ".join(refreshed.impact_sources)}
                observe = self._verified(conn, refreshed, evidence, now)
        elif verification["status"] == "still_affected":
            self._again(conn, job, now)
        return Recorded({"verification": verification["status"]}, observe)

    def _verification(self, job: ClaimedJob, assessment: ImpactAssessment, now: datetime) -> dict[str, Any]:
        deadline = datetime.fromisoformat(job.payload["deadline"])
        if not assessment.affected:
            status = "back_to_normal"
        elif now < deadline:
            status = "still_affected"
        else:
            status = "unverified"
        return {
            "cycle": job.payload["cycle"],
            "status": status,
            "checked_at": now.isoformat(),
            "breaches": list(assessment.breaches),
            "counts": dict(assessment.reading.counts),
        }

    def _again(self, conn: Connection, job: ClaimedJob, now: datetime) -> None:
        payload = job.payload
        again = verify_job(
            payload["recovery_id"],
            payload["source"],
            payload.get("context") or {},
            cycle=payload["cycle"],
            due_at=now + self.jobs.plan.verify_every,
            deadline=datetime.fromisoformat(payload["deadline"]),
            round_=int(payload.get("round", 0)) + 1,
        )
        outbox.enqueue(conn, [again], now, self.jobs.plan.max_attempts)

    @staticmethod
    def _current(row: Any, job: ClaimedJob) -> bool:
        """The job belongs to the recovery's current cycle, and the fix is still deployed."""
        status = store.status_of(row)
        return row.reopen_count == job.payload["cycle"] and status.has_reached(RecoveryState.FIX_DEPLOYED)

    @staticmethod
    def _all_verified(row: Any, cycle: int) -> bool:
        impact = row.impact or {}
        for source in row.impact_sources:
            verification = (impact.get(source) or {}).get("verification") or {}
            if verification.get("cycle") != cycle or verification.get("status") != "back_to_normal":
                return False
        return True

    def _verified(
        self, conn: Connection, row: Any, evidence: Mapping[str, str], now: datetime
    ) -> list[Callable[[], None]]:
        event = RecoveryEvent(RecoveryEventKind.IMPACT_VERIFIED, SOURCE, evidence)
        return self.jobs.transition(conn, row, event, now)

    def record_failure(
        self, conn: Connection, job: ClaimedJob, failure: JobFailure, final: bool, now: datetime
    ) -> None:
        row = store.load_row(conn, job.payload["recovery_id"], for_update=True)
        source = job.payload.get("source")
        if row is None or source is None or not self._current(row, job):
            return
        status = "unverified" if final else "error"
        verification = {
            "cycle": job.payload["cycle"],
            "status": status,
            "checked_at": now.isoformat(),
            "error": _without_prefix(failure.message, source),
            "reason": failure.reason,
        }
        audit = "verification" if _verification_changed(row, source, verification) else None
        entry = {**_entry(row, source), "verification": verification}
        _save(conn, row, source, entry, now, audit=audit)
