"""The outbox: jobs written in the same transaction as the change that caused them, claimed by workers.

Claiming takes due jobs with `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL (two workers never
take the same row) and under the single write lock on SQLite. A claimed job is `running` with
`due_at` moved to the end of its lease: when its worker dies, the job simply becomes due again.
Every outcome is written with the claim's token, so a worker that lost its lease records nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import propagate
from sqlalchemy import (
    Connection,
    DateTime,
    Integer,
    String,
    TextClause,
    and_,
    bindparam,
    column,
    func,
    not_,
    select,
    text,
    update,
)

from recoverlink.domain.errors import JobStateConflict, NotFound, RecoverlinkError
from recoverlink.domain.outbox import BacklogState, JobFailure, JobState, backlog_state
from recoverlink.store.common import (
    WriteBatch,
    driver_json,
    driver_time,
    from_db_time,
    to_db_time,
    values_params,
    values_sql,
)
from recoverlink.store.schema import CLAIMABLE_WHERE, Json, outbox_jobs

NOTIFY_CHANNEL = "recoverlink_outbox"
CLAIMABLE = (JobState.PENDING.value, JobState.RUNNING.value)
_J = outbox_jobs.c


class LostClaim(RecoverlinkError):
    """The job is no longer ours (its lease expired and another worker took it, or it was
    discarded): whatever this worker was about to record must roll back."""

    code = "lost-claim"


@dataclass(frozen=True)
class NewJob:
    """Work to do later, keyed so that asking twice is one job."""

    kind: str
    idempotency_key: str
    payload: Mapping[str, Any]
    due_at: datetime
    recovery_id: int | None = None
    priority: int = 5  # lower runs first among due jobs (creating an incident: 0)


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker holds until `lease_until`; `was_due_at` is when it became due."""

    id: int
    kind: str
    idempotency_key: str
    recovery_id: int | None
    payload: Mapping[str, Any]
    attempts: int  # including this run
    max_attempts: int
    claim_token: str
    was_due_at: datetime
    created_at: datetime
    lease_until: datetime
    last_reason: str | None  # why the previous run failed, if it did

    @property
    def has_failed(self) -> bool:
        return self.last_reason is not None


@dataclass(frozen=True)
class JobRecord:
    """One job as operators see it."""

    id: int
    kind: str
    idempotency_key: str
    recovery_id: int | None
    state: JobState
    due_at: datetime
    attempts: int
    max_attempts: int
    claimed_by: str | None
    last_error: str | None
    last_reason: str | None
    result: Mapping[str, Any] | None
    payload: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime
    first_started_at: datetime | None
    finished_at: datetime | None


def trace_carrier() -> dict[str, str]:
    """The current trace context (`traceparent`), kept in each job so its run joins the trace of the
    change that caused it; empty when no trace is being recorded."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {k: v for k, v in carrier.items() if k in ("traceparent", "tracestate")}


_ENQUEUE_COLUMNS = [
    "kind", "idempotency_key", "recovery_id", "payload", "state", "priority", "due_at", "attempts",
    "max_attempts", "created_at", "updated_at",
]  # fmt: skip
_NOTIFY = text(f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')")


def enqueue_writes(
    batch: WriteBatch, conn: Connection, jobs: Sequence[NewJob], now: datetime, max_attempts: int
) -> None:
    """Add jobs to a batch of the caller's transaction; a key that exists already is left as it is.

    On PostgreSQL the insert's trigger (migration 0005) wakes the workers waiting on LISTEN at commit.
    """
    if not jobs:
        return
    at = driver_time(conn, now)
    carrier = trace_carrier()
    rows = [
        {
            "kind": job.kind,
            "idempotency_key": job.idempotency_key,
            "recovery_id": job.recovery_id,
            "payload": driver_json({**job.payload, **carrier}),
            "state": JobState.PENDING.value,
            "priority": job.priority,
            "due_at": driver_time(conn, job.due_at),
            "attempts": 0,
            "max_attempts": max_attempts,
            "created_at": at,
            "updated_at": at,
        }
        for job in jobs
    ]
    sql = values_sql(outbox_jobs, _ENQUEUE_COLUMNS, len(rows)) + " ON CONFLICT (idempotency_key) DO NOTHING"
    batch.add(sql, values_params(_ENQUEUE_COLUMNS, rows))


def enqueue(conn: Connection, jobs: Sequence[NewJob], now: datetime, max_attempts: int) -> None:
    """Add jobs inside the caller's transaction now (see `enqueue_writes`)."""
    batch = WriteBatch()
    enqueue_writes(batch, conn, jobs, now, max_attempts)
    batch.run(conn)


# The hot statements of the worker are plain text compiled once (SQLAlchemy rebuilt and compiled the
# select()/update() constructs on every call: half the worker's CPU per job). Written the same as
# the partial index's WHERE (schema.CLAIMABLE_WHERE) so that SQLite's planner uses it too.
_PICK_SQL = (
    f"SELECT id, due_at, priority FROM outbox_jobs WHERE {CLAIMABLE_WHERE.text} AND due_at <= :now "  # noqa: S608
    "ORDER BY priority, due_at, id LIMIT :limit"
)
_PICK_COLUMNS = (column("id", Integer()), column("due_at", DateTime()), column("priority", Integer()))
_PICK = {
    "sqlite": text(_PICK_SQL).bindparams(bindparam("now", type_=DateTime())).columns(*_PICK_COLUMNS),
    "postgresql": text(_PICK_SQL + " FOR UPDATE SKIP LOCKED")
    .bindparams(bindparam("now", type_=DateTime()))
    .columns(*_PICK_COLUMNS),
}
_TAKE = (
    text(
        "UPDATE outbox_jobs SET state = 'running', attempts = attempts + 1, due_at = :lease_until, "
        "claim_token = :token, claimed_by = :worker, updated_at = :now, "
        "first_started_at = COALESCE(first_started_at, :now) WHERE id IN :ids "
        "RETURNING id, kind, idempotency_key, recovery_id, payload, attempts, max_attempts, created_at, "
        "last_reason"
    )
    .bindparams(
        bindparam("ids", expanding=True),
        bindparam("lease_until", type_=DateTime()),
        bindparam("now", type_=DateTime()),
    )
    .columns(
        column("id", Integer()),
        column("kind", String()),
        column("idempotency_key", String()),
        column("recovery_id", Integer()),
        column("payload", Json),
        column("attempts", Integer()),
        column("max_attempts", Integer()),
        column("created_at", DateTime()),
        column("last_reason", String()),
    )
)


def claim(conn: Connection, now: datetime, lease: timedelta, limit: int, worker: str) -> list[ClaimedJob]:
    """Take up to `limit` due jobs (lowest priority value, then oldest due first) for `lease`; the
    caller commits at once."""
    at = to_db_time(now)
    rows = conn.execute(_PICK[conn.dialect.name], {"now": at, "limit": limit})
    picked = {row.id: (row.priority, from_db_time(row.due_at)) for row in rows}
    if not picked:
        return []
    token = secrets.token_hex(16)
    lease_until = at + lease
    params = {"ids": list(picked), "lease_until": lease_until, "token": token, "worker": worker, "now": at}
    jobs = [
        ClaimedJob(
            id=row.id,
            kind=row.kind,
            idempotency_key=row.idempotency_key,
            recovery_id=row.recovery_id,
            payload=row.payload,
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            claim_token=token,
            was_due_at=picked[row.id][1],
            created_at=from_db_time(row.created_at),
            lease_until=from_db_time(lease_until),
            last_reason=row.last_reason,
        )
        for row in conn.execute(_TAKE, params)
    ]
    return sorted(jobs, key=lambda job: (picked[job.id], job.id))


def _outcome(assignments: str, **types: Any) -> TextClause:
    """An outcome UPDATE that applies only while the claim is still ours (fenced by its token)."""
    fence = "WHERE id = :job_id AND claim_token = :token"
    sql = f"UPDATE outbox_jobs SET {assignments}, claim_token = NULL {fence}"  # noqa: S608
    return text(sql).bindparams(*(bindparam(name, type_=kind) for name, kind in types.items()))


_FINISH = _outcome(
    "state = 'done', result = :result, finished_at = :now, updated_at = :now", result=Json, now=DateTime()
)
_RETRY = _outcome(
    "state = 'pending', due_at = :due_at, last_error = :error, last_reason = :reason, updated_at = :now",
    due_at=DateTime(),
    now=DateTime(),
)
_BURY = _outcome(
    "state = 'dead', last_error = :error, last_reason = :reason, finished_at = :now, updated_at = :now",
    now=DateTime(),
)
_DEFER = _outcome(
    "state = 'pending', due_at = :due_at, attempts = attempts - 1, updated_at = :now",
    due_at=DateTime(),
    now=DateTime(),
)


def _fenced(conn: Connection, job: ClaimedJob, statement: TextClause, values: Mapping[str, Any]) -> None:
    """Write an outcome only while the claim is still ours; else raise LostClaim."""
    result = conn.execute(statement, {**values, "job_id": job.id, "token": job.claim_token})
    if result.rowcount != 1:
        raise LostClaim(f"job {job.id} is no longer held by this worker")


def finish(conn: Connection, job: ClaimedJob, now: datetime, result: Mapping[str, Any]) -> None:
    _fenced(conn, job, _FINISH, {"result": dict(result), "now": to_db_time(now)})


def retry_at(conn: Connection, job: ClaimedJob, now: datetime, due_at: datetime, failure: JobFailure) -> None:
    values = {"due_at": to_db_time(due_at), "error": failure.message, "reason": failure.reason}
    _fenced(conn, job, _RETRY, {**values, "now": to_db_time(now)})


def bury(conn: Connection, job: ClaimedJob, now: datetime, failure: JobFailure, why: str) -> None:
    """Dead-letter the job: it stays visible (API, CLI, gauge) until retried or discarded."""
    values = {"error": f"{failure.message} [{why}]", "reason": failure.reason, "now": to_db_time(now)}
    _fenced(conn, job, _BURY, values)


def defer(conn: Connection, job: ClaimedJob, now: datetime, due_at: datetime) -> None:
    """Hand the job back without counting the run (a rate limit said wait)."""
    _fenced(conn, job, _DEFER, {"due_at": to_db_time(due_at), "now": to_db_time(now)})


_NEXT_DUE = text(f"SELECT min(due_at) AS due FROM outbox_jobs WHERE {CLAIMABLE_WHERE.text}").columns(  # noqa: S608
    column("due", DateTime())
)
_HAS_DUE = text(
    f"SELECT id FROM outbox_jobs WHERE {CLAIMABLE_WHERE.text} AND due_at <= :now LIMIT 1"  # noqa: S608
).bindparams(bindparam("now", type_=DateTime()))


def next_due_at(conn: Connection) -> datetime | None:
    """When the earliest claimable job becomes due (a running one: when its lease expires)."""
    value = conn.execute(_NEXT_DUE).scalar_one()
    return from_db_time(value) if value is not None else None


def has_due(conn: Connection, now: datetime) -> bool:
    return conn.execute(_HAS_DUE, {"now": to_db_time(now)}).first() is not None


# --- operators -------------------------------------------------------------------------------


def _record(row: Any) -> JobRecord:
    def at(value: datetime | None) -> datetime | None:
        return from_db_time(value) if value is not None else None

    return JobRecord(
        id=row.id,
        kind=row.kind,
        idempotency_key=row.idempotency_key,
        recovery_id=row.recovery_id,
        state=JobState(row.state),
        due_at=from_db_time(row.due_at),
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        claimed_by=row.claimed_by,
        last_error=row.last_error,
        last_reason=row.last_reason,
        result=row.result,
        payload=row.payload,
        created_at=from_db_time(row.created_at),
        updated_at=from_db_time(row.updated_at),
        first_started_at=at(row.first_started_at),
        finished_at=at(row.finished_at),
    )


@dataclass(frozen=True)
class JobFilter:
    states: Sequence[str] = ()
    kind: str | None = None
    recovery_id: int | None = None


def list_jobs(
    conn: Connection, filters: JobFilter, *, limit: int, before_id: int | None = None
) -> tuple[list[JobRecord], int | None]:
    """Newest first; the second value is the id to continue before, when there are more."""
    query = select(outbox_jobs).order_by(_J.id.desc()).limit(limit + 1)
    if filters.states:
        query = query.where(_J.state.in_(list(filters.states)))
    if filters.kind is not None:
        query = query.where(_J.kind == filters.kind)
    if filters.recovery_id is not None:
        query = query.where(_J.recovery_id == filters.recovery_id)
    if before_id is not None:
        query = query.where(_J.id < before_id)
    rows = [_record(r) for r in conn.execute(query)]
    more = rows[limit].id + 1 if len(rows) > limit else None
    return rows[:limit], more


def get_job(conn: Connection, job_id: int, *, for_update: bool = False) -> JobRecord | None:
    query = select(outbox_jobs).where(_J.id == job_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).one_or_none()
    return _record(row) if row is not None else None


def _operator_change(
    conn: Connection, job_id: int, allowed: Sequence[JobState], action: str, values: Mapping[str, Any]
) -> JobRecord:
    job = get_job(conn, job_id, for_update=True)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    if job.state not in allowed:
        raise JobStateConflict(job_id, job.state.value, action, [s.value for s in allowed])
    conn.execute(update(outbox_jobs).where(_J.id == job_id).values(values))
    changed = get_job(conn, job_id)
    assert changed is not None
    return changed


def retry_now(conn: Connection, job_id: int, now: datetime) -> JobRecord:
    """Make a dead, discarded or waiting job due now, with a fresh set of attempts."""
    at = to_db_time(now)
    values = {"state": JobState.PENDING.value, "due_at": at, "attempts": 0, "finished_at": None}
    allowed = (JobState.DEAD, JobState.DISCARDED, JobState.PENDING)
    job = _operator_change(conn, job_id, allowed, "retried", {**values, "updated_at": at})
    if conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY)  # an update fires no trigger: wake the workers ourselves
    return job


def discard(conn: Connection, job_id: int, now: datetime) -> JobRecord:
    """Give up on a job; a worker running it records nothing (its claim is gone)."""
    at = to_db_time(now)
    values = {"state": JobState.DISCARDED.value, "claim_token": None, "finished_at": at, "updated_at": at}
    allowed = (JobState.PENDING, JobState.RUNNING, JobState.DEAD)
    return _operator_change(conn, job_id, allowed, "discarded", values)


# --- gauges ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backlog:
    counts: Mapping[tuple[str, BacklogState], int]
    oldest_due_age_seconds: Mapping[str, float]  # by kind: 0 when nothing is due


def backlog(conn: Connection, now: datetime) -> Backlog:
    """What `recoverlink_outbox_jobs` and `recoverlink_outbox_oldest_due_job_age_seconds` show.

    A job scheduled for later (a follow-up in 24 h, the next impact look) is not backlog until it is
    due; a job waiting to retry is, as `retrying`."""
    failed = _J.last_error.is_not(None).label("failed")
    open_states = [*CLAIMABLE, JobState.DEAD.value]
    at = to_db_time(now)
    scheduled = and_(_J.state == JobState.PENDING.value, _J.last_error.is_(None), _J.due_at > at)
    query = (
        select(_J.kind, _J.state, failed, func.count())
        .where(_J.state.in_(open_states), not_(scheduled))
        .group_by(_J.kind, _J.state, failed)
    )
    counts: dict[tuple[str, BacklogState], int] = {}
    for kind, state, has_failed, count in conn.execute(query):
        label = backlog_state(JobState(state), bool(has_failed))
        if label is not None:
            counts[(kind, label)] = counts.get((kind, label), 0) + int(count)
    oldest = conn.execute(
        select(_J.kind, func.min(_J.due_at)).where(_J.state.in_(CLAIMABLE), _J.due_at <= at).group_by(_J.kind)
    )
    ages = {kind: max(0.0, (at - due).total_seconds()) for kind, due in oldest}
    return Backlog(counts=counts, oldest_due_age_seconds=ages)


def kinds(conn: Connection) -> list[str]:
    return [k for (k,) in conn.execute(select(_J.kind).distinct())]
