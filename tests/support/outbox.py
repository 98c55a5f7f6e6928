"""Fakes and helpers for outbox tests: a `FakeHandler` that implements `JobHandler`, and `Jobs`, which
enqueues, claims and reads jobs of one store at the time of a `FakeClock`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from recoverlink.domain.errors import DependencyError
from recoverlink.domain.outbox import JobFailure, RetryPolicy
from recoverlink.store import outbox
from recoverlink.store import recoveries as recovery_store
from recoverlink.store.engine import Store
from recoverlink.store.outbox import ClaimedJob, JobRecord, NewJob
from recoverlink.store.schema import audit_events
from recoverlink.worker import Recorded, Recorder, WorkerOptions
from tests.conftest import FakeClock

ECHO = "fake.echo"  # the kind FakeHandler runs
LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 3
POLICY = RetryPolicy(max_attempts=MAX_ATTEMPTS, initial=timedelta(minutes=1), maximum=timedelta(minutes=10))


def worker_options(**changes: Any) -> WorkerOptions:
    values: dict[str, Any] = {
        "policy": POLICY,
        "lease": LEASE,
        "poll_interval_seconds": 0.05,
        "concurrency": 2,
    }
    return WorkerOptions(**{**values, **changes})


def unavailable(
    reason: str = "http_503", *, retryable: bool = True, retry_after: float | None = None
) -> DependencyError:
    """What an impact source raises: an answer of `reason`."""
    return DependencyError(
        f"impact source answered {reason}",
        retryable=retryable,
        reason=reason,
        retry_after_seconds=retry_after,
    )


@dataclass
class FakeHandler:
    """A `JobHandler` that records what it is asked to do.

    `perform` appends the job id to `runs`, raises the next error of `failures` if any, else returns a
    Recorder that writes a `fake_job_ran` audit row and makes `{"attempt": n}` the job's result.
    `record_failure` appends to `failures_recorded` and writes a `fake_job_failed` audit row. With a
    `gate`, `perform` waits for it (a slow remote); `started` is set when a run begins.
    """

    target_name: str | None = None
    failures: list[DependencyError] = field(default_factory=list)
    gate: threading.Event | None = None
    while_running: Callable[[ClaimedJob], None] | None = None
    runs: list[int] = field(default_factory=list)
    failures_recorded: list[tuple[int, str, bool]] = field(default_factory=list)
    committed: list[int] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, times: int, error: DependencyError) -> None:
        self.failures.extend([error] * times)

    def target(self, job: ClaimedJob) -> str | None:
        return self.target_name

    def perform(self, job: ClaimedJob, now: datetime) -> Recorder:
        with self._lock:
            self.runs.append(job.id)
            failure = self.failures.pop(0) if self.failures else None
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(timeout=10), "the test never opened the gate"
        if self.while_running is not None:
            self.while_running(job)
        if failure is not None:
            raise failure

        def record(conn: Connection, at: datetime) -> Recorded:
            audit(conn, job, "fake_job_ran", at)
            return Recorded({"attempt": job.attempts}, after_commit=[lambda: self.committed.append(job.id)])

        return record

    def record_failure(
        self, conn: Connection, job: ClaimedJob, failure: JobFailure, final: bool, now: datetime
    ) -> None:
        with self._lock:
            self.failures_recorded.append((job.id, failure.reason, final))
        audit(conn, job, "fake_job_failed", now)


def audit(conn: Connection, job: ClaimedJob, kind: str, at: datetime) -> None:
    details = {"job_id": job.id, "attempt": job.attempts}
    recovery_store.append_audit(
        conn, job.recovery_id, at=at, source="worker", actor="fake", kind=kind, details=details
    )


@dataclass
class Jobs:
    """The outbox of one store, at the time of `clock`."""

    store: Store
    clock: FakeClock

    def add(
        self,
        key: str,
        *,
        kind: str = ECHO,
        due_in: timedelta = timedelta(0),
        recovery_id: int | None = None,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> int:
        """Enqueue one job in its own transaction; its id."""
        job = NewJob(kind, key, {"key": key}, self.clock() + due_in, recovery_id)
        with self.store.write() as conn:
            outbox.enqueue(conn, [job], self.clock(), max_attempts)
        return self.id_of(key)

    def add_many(self, count: int, *, kind: str = ECHO, prefix: str = "job") -> list[int]:
        jobs = [NewJob(kind, f"{prefix}-{n}", {"n": n}, self.clock()) for n in range(count)]
        with self.store.write() as conn:
            outbox.enqueue(conn, jobs, self.clock(), MAX_ATTEMPTS)
        ids = self.ids_by_key()
        return [ids[job.idempotency_key] for job in jobs]

    def id_of(self, key: str) -> int:
        return self.ids_by_key()[key]

    def ids_by_key(self) -> dict[str, int]:
        with self.store.read() as conn:
            jobs, _ = outbox.list_jobs(conn, outbox.JobFilter(), limit=10_000)
        return {job.idempotency_key: job.id for job in jobs}

    def claim(
        self, limit: int = 100, *, worker: str = "worker-a", lease: timedelta = LEASE
    ) -> list[ClaimedJob]:
        with self.store.write() as conn:
            return outbox.claim(conn, self.clock(), lease, limit, worker)

    def claim_only(self, job_id: int, *, worker: str = "worker-a") -> ClaimedJob:
        """Claim what is due, which the test arranged to be this job alone."""
        claimed = self.claim(worker=worker)
        assert [job.id for job in claimed] == [job_id]
        return claimed[0]

    def get(self, job_id: int) -> JobRecord:
        with self.store.read() as conn:
            job = outbox.get_job(conn, job_id)
        assert job is not None
        return job

    def dead(self, key: str, **add: Any) -> int:
        """A job that failed in a way retrying cannot fix."""
        job = self.claim_only(self.add(key, **add))
        failure = JobFailure("400 Bad Request", "bad_request", retryable=False)
        with self.store.write() as conn:
            outbox.bury(conn, job, self.clock(), failure, "not retryable (bad_request)")
        return job.id

    def done(self, key: str, **add: Any) -> int:
        job = self.claim_only(self.add(key, **add))
        with self.store.write() as conn:
            outbox.finish(conn, job, self.clock(), {"ok": True})
        return job.id

    def audit_entries(self, kind: str) -> list[dict[str, Any]]:
        """The details of every audit row of this kind, oldest first."""
        query = select(audit_events.c.details).where(audit_events.c.kind == kind).order_by(audit_events.c.id)
        with self.store.read() as conn:
            return [dict(details) for (details,) in conn.execute(query)]
