"""What operators do to outbox jobs, shared by `/api/v1/jobs` and `recoverlink jobs`: retry now and
discard (each with an audit entry on the job's recovery), and the JSON form of a job."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from recoverlink.store import outbox
from recoverlink.store import recoveries as recovery_store
from recoverlink.store.engine import Store
from recoverlink.store.outbox import JobRecord


def retry_job(store: Store, job_id: int, now: datetime, actor: str, source: str) -> JobRecord:
    """Make a dead, discarded or waiting job due now with a fresh set of attempts."""
    with store.write() as conn:
        job = outbox.retry_now(conn, job_id, now)
        _audit(conn, job, "job_retried", now=now, actor=actor, source=source)
    return job


def discard_job(store: Store, job_id: int, now: datetime, actor: str, source: str) -> JobRecord:
    """Give up on a job; a worker running it right now records nothing."""
    with store.write() as conn:
        job = outbox.discard(conn, job_id, now)
        _audit(conn, job, "job_discarded", now=now, actor=actor, source=source)
    return job


def _audit(conn: Connection, job: JobRecord, kind: str, *, now: datetime, actor: str, source: str) -> None:
    details = {"job_id": job.id, "job_kind": job.kind, "last_error": job.last_error}
    recovery_store.append_audit(
        conn, job.recovery_id, at=now, source=source, actor=actor, kind=kind, details=details
    )


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def job_record(job: JobRecord) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state.value,
        "recovery_id": job.recovery_id,
        "idempotency_key": job.idempotency_key,
        "due_at": _time(job.due_at),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "claimed_by": job.claimed_by,
        "last_reason": job.last_reason,
        "last_error": job.last_error,
        "result": dict(job.result) if job.result is not None else None,
        "payload": dict(job.payload),
        "created_at": _time(job.created_at),
        "updated_at": _time(job.updated_at),
        "first_started_at": _time(job.first_started_at),
        "finished_at": _time(job.finished_at),
    }
