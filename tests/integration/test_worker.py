"""One worker running due jobs with `run_due` on SQLite and PostgreSQL, with a fake handler and a fake
clock: results, retries with backoff, Retry-After, dead letters, rate limits, expired leases, claims
lost to a discard, and `recoverlink_outbox_job_runs_total`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from recoverlink.domain.outbox import JobState
from recoverlink.job_operations import discard_job
from recoverlink.store.engine import Store
from recoverlink.store.outbox import ClaimedJob
from recoverlink.telemetry import Metrics
from recoverlink.worker import JobHandler, Worker
from tests.conftest import FakeClock
from tests.support.outbox import ECHO, LEASE, MAX_ATTEMPTS, FakeHandler, Jobs, unavailable, worker_options

JITTER = 0.5  # every wait is 3/4 of its exponential step: 45 s after the first failure, 90 s after the second
HOST = "impact.example.com:443"


@pytest.fixture
def jobs(store: Store, clock: FakeClock) -> Jobs:
    return Jobs(store, clock)


@pytest.fixture
def handler() -> FakeHandler:
    return FakeHandler(target_name=HOST)


def make_worker(
    jobs: Jobs, registry: CollectorRegistry, handlers: Mapping[str, JobHandler], **options: Any
) -> Worker:
    return Worker(
        jobs.store,
        handlers,
        worker_options(**options),
        Metrics(registry),
        clock=jobs.clock,
        name="worker-a",
        jitter=lambda: JITTER,
    )


@pytest.fixture
def worker(jobs: Jobs, registry: CollectorRegistry, handler: FakeHandler) -> Worker:
    return make_worker(jobs, registry, {ECHO: handler})


def runs(registry: CollectorRegistry, outcome: str, kind: str = ECHO) -> float | None:
    labels = {"kind": kind, "outcome": outcome}
    return registry.get_sample_value("recoverlink_outbox_job_runs_total", labels)


def test_a_successful_run_records_its_result_in_the_jobs_transaction_and_the_job_is_done(
    jobs: Jobs, worker: Worker, handler: FakeHandler, registry: CollectorRegistry
) -> None:
    job_id = jobs.add("lookup")
    jobs.clock.now += timedelta(seconds=5)

    assert worker.run_due() == 1

    job = jobs.get(job_id)
    assert (job.state, job.result, job.attempts, job.finished_at) == (
        JobState.DONE,
        {"attempt": 1},
        1,
        jobs.clock(),
    )
    assert jobs.audit_entries("fake_job_ran") == [{"job_id": job_id, "attempt": 1}]
    assert (handler.runs, handler.committed) == ([job_id], [job_id])
    assert runs(registry, "done") == 1
    assert worker.run_due() == 0, "a done job does not run again"


def test_a_retryable_failure_is_retried_after_the_backoff_and_not_before(
    jobs: Jobs, worker: Worker, handler: FakeHandler, registry: CollectorRegistry
) -> None:
    handler.fail_next(1, unavailable("http_503"))
    job_id = jobs.add("lookup")
    failed_at = jobs.clock()

    worker.run_due()

    job = jobs.get(job_id)
    assert (job.state, job.due_at, job.attempts) == (JobState.PENDING, failed_at + timedelta(seconds=45), 1)
    assert (job.last_reason, job.last_error) == ("http_503", "impact source answered http_503")
    assert handler.failures_recorded == [(job_id, "http_503", False)]
    jobs.clock.now += timedelta(seconds=44)
    assert worker.run_due() == 0
    jobs.clock.now += timedelta(seconds=1)
    assert worker.run_due() == 1
    assert (jobs.get(job_id).state, jobs.get(job_id).result) == (JobState.DONE, {"attempt": 2})
    assert (runs(registry, "retry"), runs(registry, "done")) == (1, 1)


def test_a_job_that_keeps_failing_is_dead_after_max_attempts_with_each_failure_recorded(
    jobs: Jobs, worker: Worker, handler: FakeHandler, registry: CollectorRegistry
) -> None:
    handler.fail_next(MAX_ATTEMPTS + 1, unavailable("timeout"))
    job_id = jobs.add("lookup")
    waits = []
    for _ in range(MAX_ATTEMPTS):
        assert worker.run_due() == 1
        waits.append(jobs.get(job_id).due_at - jobs.clock())
        jobs.clock.now += timedelta(hours=1)

    job = jobs.get(job_id)
    assert (job.state, job.attempts) == (JobState.DEAD, MAX_ATTEMPTS)
    assert job.last_error == "impact source answered timeout [gave up after 3 attempts (timeout)]"
    assert waits[:2] == [timedelta(seconds=45), timedelta(seconds=90)]
    assert [final for _, _, final in handler.failures_recorded] == [False, False, True]
    assert len(jobs.audit_entries("fake_job_failed")) == MAX_ATTEMPTS
    assert worker.run_due() == 0
    assert (runs(registry, "retry"), runs(registry, "dead")) == (2, 1)


def test_retry_after_pushes_the_retry_later_than_the_backoff(
    jobs: Jobs, worker: Worker, handler: FakeHandler
) -> None:
    handler.fail_next(1, unavailable("http_429", retry_after=600))
    job_id = jobs.add("lookup")
    worker.run_due()
    assert jobs.get(job_id).due_at == jobs.clock() + timedelta(minutes=10)


def test_a_failure_retrying_cannot_fix_is_dead_lettered_at_once_and_recorded_as_final(
    jobs: Jobs, worker: Worker, handler: FakeHandler, registry: CollectorRegistry
) -> None:
    handler.fail_next(1, unavailable("bad_request", retryable=False))
    job_id = jobs.add("lookup")

    worker.run_due()

    job = jobs.get(job_id)
    assert (job.state, job.attempts, job.last_reason) == (JobState.DEAD, 1, "bad_request")
    assert job.last_error == "impact source answered bad_request [not retryable (bad_request)]"
    assert handler.failures_recorded == [(job_id, "bad_request", True)]
    assert jobs.audit_entries("fake_job_failed") == [{"job_id": job_id, "attempt": 1}]
    assert runs(registry, "dead") == 1


def test_a_job_of_a_kind_no_handler_runs_is_dead_lettered_as_unknown_kind(
    jobs: Jobs, worker: Worker, handler: FakeHandler, registry: CollectorRegistry
) -> None:
    job_id = jobs.add("mystery", kind="fake.nobody")

    worker.run_due()

    job = jobs.get(job_id)
    assert (job.state, job.last_reason) == (JobState.DEAD, "unknown_kind")
    assert job.last_error == "no handler for job kind 'fake.nobody' [not retryable (unknown_kind)]"
    assert handler.runs == []
    assert runs(registry, "dead", kind="fake.nobody") == 1


def test_a_rate_limited_target_defers_the_job_without_counting_the_attempt(
    jobs: Jobs, registry: CollectorRegistry, handler: FakeHandler
) -> None:
    worker = make_worker(jobs, registry, {ECHO: handler}, rate_limits={HOST: (1.0, 1)})
    first, second = jobs.add("first"), jobs.add("second")

    assert worker.run_due() == 2

    assert handler.runs == [first], "one call a second, the burst is one"
    assert jobs.get(first).state is JobState.DONE
    deferred = jobs.get(second)
    assert (deferred.state, deferred.attempts, deferred.last_reason) == (JobState.PENDING, 0, None)
    assert jobs.clock() < deferred.due_at <= jobs.clock() + timedelta(seconds=1)
    assert (runs(registry, "done"), runs(registry, "deferred")) == (1, 1)


def test_a_deferred_job_runs_once_the_bucket_has_refilled(
    jobs: Jobs, registry: CollectorRegistry, handler: FakeHandler
) -> None:
    seconds = [100.0]
    worker = Worker(
        jobs.store,
        {ECHO: handler},
        worker_options(rate_limits={HOST: (0.5, 1)}),
        Metrics(registry),
        clock=jobs.clock,
        name="worker-a",
        jitter=lambda: JITTER,
        monotonic=lambda: seconds[0],
    )
    first, second = jobs.add("first"), jobs.add("second")
    worker.run_due()
    assert handler.runs == [first]
    jobs.clock.now += timedelta(seconds=2)
    seconds[0] += 2  # one token back at half a call per second
    worker.run_due()
    assert handler.runs == [first, second]
    assert jobs.get(second).attempts == 1, "the deferral did not count as an attempt"


def test_a_job_whose_worker_died_runs_again_when_its_lease_expires(
    jobs: Jobs, worker: Worker, handler: FakeHandler
) -> None:
    job_id = jobs.add("lookup")
    jobs.claim_only(job_id, worker="worker-that-dies")
    assert worker.run_due() == 0
    jobs.clock.now += LEASE

    assert worker.run_due() == 1

    assert (jobs.get(job_id).state, jobs.get(job_id).result) == (JobState.DONE, {"attempt": 2})


def test_a_job_whose_lease_expired_on_every_attempt_is_dead_lettered_as_lease_expired(
    jobs: Jobs, worker: Worker, handler: FakeHandler, registry: CollectorRegistry
) -> None:
    job_id = jobs.add("kills-its-worker")
    for _ in range(MAX_ATTEMPTS):
        jobs.claim_only(job_id, worker="worker-that-dies")
        jobs.clock.now += LEASE

    worker.run_due()

    job = jobs.get(job_id)
    assert (job.state, job.attempts, job.last_reason) == (JobState.DEAD, MAX_ATTEMPTS + 1, "lease_expired")
    assert job.last_error is not None
    assert job.last_error.startswith("lease expired 3 times: the worker died while running it")
    assert handler.runs == [], "the job is not tried a fourth time"
    assert handler.failures_recorded == [(job_id, "lease_expired", True)]
    assert runs(registry, "dead") == 1


@pytest.mark.parametrize("fails", [False, True], ids=["then-succeeds", "then-fails"])
def test_a_job_discarded_while_its_handler_runs_records_nothing_and_counts_as_lost(
    jobs: Jobs, worker: Worker, handler: FakeHandler, registry: CollectorRegistry, fails: bool
) -> None:
    def operator_discards(job: ClaimedJob) -> None:
        discard_job(jobs.store, job.id, jobs.clock(), "alice", "operator")

    handler.while_running = operator_discards
    if fails:
        handler.fail_next(1, unavailable("timeout"))
    job_id = jobs.add("lookup")

    assert worker.run_due() == 1

    job = jobs.get(job_id)
    assert (job.state, job.result, job.last_reason) == (JobState.DISCARDED, None, None)
    assert jobs.audit_entries("fake_job_ran") == jobs.audit_entries("fake_job_failed") == []
    assert [entry["job_id"] for entry in jobs.audit_entries("job_discarded")] == [job_id]
    assert handler.committed == []
    assert runs(registry, "lost") == 1
    assert runs(registry, "done") is None
    assert runs(registry, "retry") is None
