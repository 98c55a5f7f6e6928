"""`recovery.follow_up`: 24 h and 48 h after a recovery closed, count what came back.

Repeat alerts: episodes of the same failure (same correlation key) that started after the close,
within the window. Repeat contacts: the count a source names as `repeat_contacts`, read now.
Both are counted once per follow-up, by the worker that runs it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection

from recoverlink.domain.errors import ImpactSourceError
from recoverlink.domain.outbox import JobFailure
from recoverlink.impact_jobs import ACTOR, SOURCE, ImpactJobs, render_context
from recoverlink.recovery_jobs import FOLLOW_UP_WINDOWS
from recoverlink.store import recoveries as store
from recoverlink.store.outbox import ClaimedJob
from recoverlink.worker import Recorded, Recorder


class FollowUp:
    def __init__(self, jobs: ImpactJobs) -> None:
        self.jobs = jobs

    def target(self, job: ClaimedJob) -> str | None:
        """Follow-ups read several sources at most once a day each: no rate limit applies."""
        return None

    def perform(self, job: ClaimedJob, now: datetime) -> Recorder:
        error = None
        try:
            contacts = self._repeat_contacts(job, now)
        except ImpactSourceError as exc:
            if exc.retryable and job.attempts < job.max_attempts:
                raise
            # Out of tries: repeat alerts still count; the contacts are reported as unknown.
            contacts, error = 0.0, f"{exc.reason}: {exc}"
        return lambda conn, at: self._record(conn, job, contacts, error, at)

    def _repeat_contacts(self, job: ClaimedJob, now: datetime) -> float:
        total = 0.0
        for name in job.payload.get("sources") or []:
            source = self.jobs.sources.get(name)
            count = source.repeat_contacts_count if source is not None else None
            if source is None or count is None:
                continue
            reading = source.read(render_context(job, now))
            total += reading.counts.get(count, 0.0)
        return total

    def _record(
        self, conn: Connection, job: ClaimedJob, contacts: float, error: str | None, now: datetime
    ) -> Recorded:
        payload = job.payload
        window = payload["window"]
        closed_at = datetime.fromisoformat(payload["closed_at"])
        length: timedelta = FOLLOW_UP_WINDOWS[window]
        repeats = store.repeat_alerts(conn, payload["correlation_key"], closed_at, closed_at + length)
        details: dict[str, object] = {"window": window, "repeat_alerts": repeats, "repeat_contacts": contacts}
        if error is not None:
            details["repeat_contacts_error"] = error
        store.append_audit(
            conn,
            payload["recovery_id"],
            at=now,
            source=SOURCE.value,
            actor=ACTOR,
            kind="follow_up",
            details=details,
        )
        team = payload.get("team")
        observe = [lambda: self.jobs.metrics.repeats_counted(team, window, repeats, contacts)]
        return Recorded(details, observe)

    def record_failure(
        self, conn: Connection, job: ClaimedJob, failure: JobFailure, final: bool, now: datetime
    ) -> None:
        """Only a source can fail a follow-up, and `perform` stops retrying it on its last attempt;
        a failure that still ends the job is noted on the recovery's timeline."""
        if final:
            details = {"window": job.payload["window"], "error": f"{failure.reason}: {failure.message}"}
            store.append_audit(
                conn, job.payload["recovery_id"], at=now, source=SOURCE.value, actor=ACTOR,
                kind="follow_up", details=details,
            )  # fmt: skip
