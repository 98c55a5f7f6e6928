"""The outbox worker: claim due jobs, run them, record each outcome, retry with backoff, dead-letter.

A job's remote part (`JobHandler.perform`) runs outside any transaction; what it learned is then
recorded (`Recorder`) in one transaction with the job's completion, fenced by the claim token, so
a worker that lost its lease records nothing and a crash between the two repeats only the remote
call (handlers make that call idempotent). Wake-up: LISTEN/NOTIFY on PostgreSQL, polling on SQLite.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from sqlalchemy import Connection

from recoverlink.config.model import WorkerConfig
from recoverlink.domain.errors import DependencyError, StoreUnavailable
from recoverlink.domain.outbox import DeadLetter, JobFailure, RetryPolicy, TokenBucket, after_failure
from recoverlink.store import outbox
from recoverlink.store.engine import Store
from recoverlink.store.outbox import ClaimedJob, LostClaim
from recoverlink.telemetry import Metrics
from recoverlink.wakeup import Waiter, waiter_for

log = logging.getLogger(__name__)
# The process's provider (tracing.configure_tracing); a no-op one when tracing is off.
_TRACER = trace.get_tracer("recoverlink.worker")


@dataclass(frozen=True)
class Recorded:
    """What a job's record step stored: the job's result, and what to observe once committed."""

    result: Mapping[str, Any]
    after_commit: Sequence[Callable[[], None]] = ()


Recorder = Callable[[Connection, datetime], Recorded]


class Deferred(Exception):
    """Raised by `perform` when the job cannot run yet (the incident it updates is not created
    yet): the job is handed back for `seconds` without counting an attempt."""

    def __init__(self, seconds: float, why: str) -> None:
        super().__init__(why)
        self.seconds = seconds
        self.why = why


class JobHandler(Protocol):
    """One job kind. `perform` does the remote work and raises `DependencyError` when it fails."""

    def target(self, job: ClaimedJob) -> str | None:
        """The rate-limit key of the call this job makes (an HTTP host, an ITSM name), if any."""
        ...

    def perform(self, job: ClaimedJob, now: datetime) -> Recorder: ...

    def record_failure(
        self, conn: Connection, job: ClaimedJob, failure: JobFailure, final: bool, now: datetime
    ) -> None:
        """Note the failure where people look (e.g. "impact unknown" on the recovery)."""
        ...


@dataclass(frozen=True)
class WorkerOptions:
    policy: RetryPolicy
    lease: timedelta
    poll_interval_seconds: float
    concurrency: int
    rate_limits: Mapping[str, tuple[float, int]] = field(default_factory=dict)  # target -> (rate, burst)

    @classmethod
    def from_config(cls, config: WorkerConfig) -> WorkerOptions:
        return cls(
            policy=RetryPolicy(config.max_attempts, config.backoff_initial, config.backoff_max),
            lease=config.lease,
            poll_interval_seconds=config.poll_interval.total_seconds(),
            concurrency=config.concurrency,
            rate_limits={k: (v.per_second, v.burst) for k, v in config.rate_limits.items()},
        )


@dataclass
class _Periodic:
    """A maintenance task the loop runs every `interval_seconds` (e.g. marking stale episodes)."""

    interval_seconds: float
    task: Callable[[], None]
    last: float | None = None


class RateLimits:
    """One token bucket per configured target, shared by the worker's threads."""

    def __init__(
        self, limits: Mapping[str, tuple[float, int]], monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets = {target: TokenBucket(rate, burst) for target, (rate, burst) in limits.items()}
        self._lock = threading.Lock()
        self._monotonic = monotonic

    def wait_seconds(self, target: str | None) -> float:
        """0 when the call may go now (a token was taken), else how long until one is free."""
        bucket = self._buckets.get(target) if target is not None else None
        if bucket is None:
            return 0.0
        with self._lock:
            return bucket.take(self._monotonic())


class Worker:
    """Runs the jobs of the kinds in `handlers`; `run` loops until `stop` is set."""

    def __init__(
        self,
        store: Store,
        handlers: Mapping[str, JobHandler],
        options: WorkerOptions,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime],
        name: str,
        jitter: Callable[[], float] = random.random,
        maintenance: Sequence[tuple[float, Callable[[], None]]] = (),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.handlers = handlers
        self.options = options
        self.metrics = metrics
        self.clock = clock
        self.name = name
        self.jitter = jitter
        self.limits = RateLimits(options.rate_limits, monotonic)
        self._maintenance = [_Periodic(interval, task) for interval, task in maintenance]
        self._inflight = 0
        self._slots = threading.Condition()
        self._store_error: str | None = None
        self._backlog = False

    # --- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event, waiter: Waiter | None = None) -> None:
        """Claim and run jobs until `stop` is set; jobs already running are finished first."""
        waiter = waiter or waiter_for(self.store, self.options.poll_interval_seconds)
        log.info("worker started", extra={"worker": self.name, "concurrency": self.options.concurrency})
        try:
            with ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="recoverlink-job") as pool:
                while not stop.is_set():
                    self._run_maintenance()
                    room = self._wait_for_room(stop)
                    jobs = self._claim(room) if room else []
                    for job in jobs:
                        self._reserve()
                        pool.submit(self._run_and_release, job)
                    if room and len(jobs) < room:
                        waiter.wait(self._idle_seconds(), stop)
        finally:
            waiter.close()
            log.info("worker stopped", extra={"worker": self.name})

    def run_due(self, limit: int = 100) -> int:
        """Run every job that is due now, one at a time, in this thread; how many ran (for tests)."""
        ran = 0
        while True:
            jobs = self._claim(limit)
            if not jobs:
                return ran
            for job in jobs:
                self.run_job(job)
                ran += 1

    def _wait_for_room(self, stop: threading.Event) -> int:
        """How many jobs to claim: while a backlog lasts, up to one more round than the threads run
        at once (they queue in the pool), so one claim serves several jobs instead of each finished
        job costing a claim of its own. A queued job waits at most for one job ahead of it, well
        inside its lease."""
        concurrency = self.options.concurrency
        with self._slots:
            while self._inflight > concurrency and not stop.is_set():
                self._slots.wait(timeout=0.5)
            return 2 * concurrency - self._inflight

    def _reserve(self) -> None:
        with self._slots:
            self._inflight += 1

    def _run_and_release(self, job: ClaimedJob) -> None:
        try:
            self.run_job(job)
        except Exception:
            # run_job handles every expected outcome; this is a bug, and the lease will retry the job.
            log.exception("job crashed the worker thread", extra={"job_id": job.id, "kind": job.kind})
        finally:
            with self._slots:
                self._inflight -= 1
                self._slots.notify()

    def _idle_seconds(self) -> float:
        """How long to wait for a wake-up: until the next job is due, at most a second."""
        try:
            with self.store.read() as conn:
                due = outbox.next_due_at(conn)
        except StoreUnavailable:
            return 1.0
        if due is None:
            return 1.0
        return min(1.0, max(0.0, (due - self.clock()).total_seconds()))

    def _claim(self, limit: int) -> list[ClaimedJob]:
        now = self.clock()
        try:
            if self.store.backend == "sqlite" and not self._backlog:
                # A read first: an idle SQLite worker must not take the write lock ten times a second.
                with self.store.read() as conn:
                    if not outbox.has_due(conn, now):
                        return []
            with self.store.write() as conn:
                jobs = outbox.claim(conn, now, self.options.lease, limit, self.name)
        except StoreUnavailable as exc:
            self._store_unavailable(exc)
            return []
        self._store_error = None
        self._backlog = len(jobs) == limit  # a full claim: more are likely due, skip the look first
        return jobs

    def _store_unavailable(self, exc: StoreUnavailable) -> None:
        if str(exc) != self._store_error:
            log.warning("store unavailable; jobs wait", extra={"worker": self.name, "error": str(exc)})
        self._store_error = str(exc)
        time.sleep(min(1.0, self.options.poll_interval_seconds * 10))

    def _run_maintenance(self) -> None:
        now = time.monotonic()
        for periodic in self._maintenance:
            if periodic.last is None or now - periodic.last >= periodic.interval_seconds:
                periodic.last = now
                try:
                    periodic.task()
                except StoreUnavailable as exc:
                    self._store_unavailable(exc)

    # --- one job -----------------------------------------------------------------------------

    def run_job(self, job: ClaimedJob) -> None:
        """Run one claimed job to an outcome: done, retry later, deferred, or dead; traced as a child
        of the trace that enqueued it (`worker.run_job`), when tracing is on."""
        parent = propagate.extract(
            {k: str(v) for k, v in job.payload.items() if k in ("traceparent", "tracestate")}
        )
        attributes: dict[str, str | int] = {
            "recoverlink.job_id": job.id,
            "recoverlink.job_kind": job.kind,
            "recoverlink.attempt": job.attempts,
        }
        if job.recovery_id is not None:
            attributes["recoverlink.recovery_id"] = job.recovery_id
        with _TRACER.start_as_current_span(
            "worker.run_job", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ):
            self._run_job(job)

    def _run_job(self, job: ClaimedJob) -> None:
        handler = self.handlers.get(job.kind)
        if handler is None:
            failure = JobFailure(f"no handler for job kind {job.kind!r}", "unknown_kind", retryable=False)
            self._fail(job, None, failure)
            return
        if job.attempts > job.max_attempts:
            # Only a lease that expired again and again gets here: the job keeps killing its worker.
            reason = f"lease expired {job.attempts - 1} times: the worker died while running it"
            self._fail(job, handler, JobFailure(reason, "lease_expired", retryable=False))
            return
        wait = self.limits.wait_seconds(handler.target(job))
        if wait > 0:
            self._defer(job, wait)
            return
        try:
            recorder = handler.perform(job, self.clock())
        except DependencyError as exc:
            self._fail(job, handler, _failure(exc))
            return
        except Deferred as waiting:
            log.debug("job deferred", extra={"job_id": job.id, "kind": job.kind, "why": waiting.why})
            self._defer(job, waiting.seconds)
            return
        self._finish(job, recorder)

    def _finish(self, job: ClaimedJob, recorder: Recorder) -> None:
        now = self.clock()
        try:
            with self.store.write() as conn:
                recorded = recorder(conn, now)
                outbox.finish(conn, job, now, recorded.result)
        except LostClaim as exc:
            self._lost(job, exc)
            return
        except StoreUnavailable as exc:
            # Nothing was recorded; the lease expires and the job runs again.
            log.warning("cannot record job outcome", extra={"job_id": job.id, "error": str(exc)})
            self._count(job, "unrecorded")
            return
        for observe in recorded.after_commit:
            observe()
        self._count(job, "done")
        log.debug("job done", extra={"job_id": job.id, "kind": job.kind, "attempt": job.attempts})

    def _fail(self, job: ClaimedJob, handler: JobHandler | None, failure: JobFailure) -> None:
        now = self.clock()
        # The job's own limit, set when it was enqueued: what the API and the CLI show as "3/8".
        policy = replace(self.options.policy, max_attempts=job.max_attempts)
        decision = after_failure(policy, job.attempts, failure, self.jitter(), now)
        final = isinstance(decision, DeadLetter)
        try:
            with self.store.write() as conn:
                if handler is not None:
                    handler.record_failure(conn, job, failure, final, now)
                if isinstance(decision, DeadLetter):
                    outbox.bury(conn, job, now, failure, decision.why)
                else:
                    outbox.retry_at(conn, job, now, decision.due_at, failure)
        except LostClaim as exc:
            self._lost(job, exc)
            return
        except StoreUnavailable as exc:
            log.warning("cannot record job failure", extra={"job_id": job.id, "error": str(exc)})
            self._count(job, "unrecorded")
            return
        self._log_failure(job, failure, decision)
        self._count(job, "dead" if final else "retry")

    def _defer(self, job: ClaimedJob, wait_seconds: float) -> None:
        now = self.clock()
        try:
            with self.store.write() as conn:
                outbox.defer(conn, job, now, now + timedelta(seconds=wait_seconds))
        except (LostClaim, StoreUnavailable) as exc:
            log.info("cannot defer job", extra={"job_id": job.id, "error": str(exc)})
            return
        self._count(job, "deferred")

    def _lost(self, job: ClaimedJob, exc: LostClaim) -> None:
        log.info("job outcome not recorded: claim lost", extra={"job_id": job.id, "error": str(exc)})
        self._count(job, "lost")

    def _log_failure(self, job: ClaimedJob, failure: JobFailure, decision: object) -> None:
        """Once per change of reason: a job failing the same way every minute says it once."""
        fields = {"job_id": job.id, "kind": job.kind, "attempt": job.attempts, "reason": failure.reason}
        if isinstance(decision, DeadLetter):
            log.error("job dead-lettered", extra={**fields, "error": failure.message, "why": decision.why})
        elif job.last_reason != failure.reason:
            log.warning("job failed; will retry", extra={**fields, "error": failure.message})
        else:
            log.debug("job failed again; will retry", extra=fields)

    def _count(self, job: ClaimedJob, outcome: str) -> None:
        self.metrics.outbox_runs.labels(kind=job.kind, outcome=outcome).inc()


def _failure(exc: DependencyError) -> JobFailure:
    return JobFailure(str(exc), exc.reason, exc.retryable, exc.retry_after_seconds)
