"""The outbox table on SQLite and PostgreSQL: idempotent enqueue, claiming with leases, outcomes fenced
by the claim token, operator retries and discards, the backlog gauge, and concurrent claimers."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Connection

from recoverlink.domain.errors import JobStateConflict, NotFound
from recoverlink.domain.outbox import BacklogState, JobFailure, JobState
from recoverlink.store import outbox
from recoverlink.store.engine import Store
from recoverlink.store.outbox import JobRecord, LostClaim, NewJob
from tests.conftest import FakeClock
from tests.support.outbox import ECHO, LEASE, Jobs

OTHER = "fake.other"
TIMEOUT = JobFailure("read timed out after 5s", "timeout", retryable=True)
OperatorAction = Callable[[Connection, int, datetime], JobRecord]


@pytest.fixture
def jobs(store: Store, clock: FakeClock) -> Jobs:
    return Jobs(store, clock)


def test_enqueuing_one_key_twice_is_one_job_with_the_first_payload(jobs: Jobs) -> None:
    first = NewJob(ECHO, "impact.lookup/7/checkout/0", {"try": 1}, jobs.clock())
    again = NewJob(ECHO, "impact.lookup/7/checkout/0", {"try": 2}, jobs.clock() + timedelta(hours=1))
    with jobs.store.write() as conn:
        outbox.enqueue(conn, [first], jobs.clock(), 3)
    with jobs.store.write() as conn:
        outbox.enqueue(conn, [again, first], jobs.clock(), 3)
    with jobs.store.read() as conn:
        listed, _ = outbox.list_jobs(conn, outbox.JobFilter(), limit=10)
    assert [(j.idempotency_key, j.payload, j.due_at) for j in listed] == [
        ("impact.lookup/7/checkout/0", {"try": 1}, jobs.clock())
    ]


# --- claiming ----------------------------------------------------------------------------------


def test_claim_takes_only_due_jobs_oldest_due_first_up_to_the_limit(jobs: Jobs) -> None:
    now = jobs.clock()
    newest = jobs.add("due-now")
    oldest = jobs.add("due-3-min-ago", due_in=timedelta(minutes=-3))
    middle = jobs.add("due-1-min-ago", due_in=timedelta(minutes=-1))
    future = jobs.add("due-in-1-min", due_in=timedelta(minutes=1))

    claimed = jobs.claim(limit=2, worker="worker-a")

    assert sorted(job.id for job in claimed) == sorted([oldest, middle])
    by_id = {job.id: job for job in claimed}
    assert by_id[oldest].was_due_at == now - timedelta(minutes=3)
    assert {(job.attempts, job.lease_until, job.has_failed) for job in claimed} == {(1, now + LEASE, False)}
    record = jobs.get(oldest)
    assert (record.state, record.attempts, record.claimed_by) == (JobState.RUNNING, 1, "worker-a")
    assert (record.due_at, record.first_started_at) == (now + LEASE, now)
    assert [job.id for job in jobs.claim(limit=10)] == [newest]
    assert jobs.get(future).state is JobState.PENDING


def test_a_claimed_job_is_claimed_again_only_when_its_lease_expires(jobs: Jobs) -> None:
    job_id = jobs.add("slow")
    first = jobs.claim_only(job_id, worker="worker-a")
    jobs.clock.now += LEASE - timedelta(seconds=1)
    assert jobs.claim(worker="worker-b") == []
    jobs.clock.now += timedelta(seconds=1)

    second = jobs.claim_only(job_id, worker="worker-b")

    assert (second.attempts, second.was_due_at) == (2, first.lease_until)
    assert second.claim_token != first.claim_token
    record = jobs.get(job_id)
    assert (record.claimed_by, record.first_started_at) == ("worker-b", first.lease_until - LEASE)


def test_the_first_claims_outcome_after_a_reclaim_raises_lost_claim_and_changes_nothing(jobs: Jobs) -> None:
    job_id = jobs.add("slow")
    first = jobs.claim_only(job_id)
    jobs.clock.now += LEASE
    second = jobs.claim_only(job_id, worker="worker-b")
    before = jobs.get(job_id)

    outcomes: list[Callable[[Connection], None]] = [
        lambda conn: outbox.finish(conn, first, jobs.clock(), {"from": "first"}),
        lambda conn: outbox.retry_at(conn, first, jobs.clock(), jobs.clock(), TIMEOUT),
        lambda conn: outbox.bury(conn, first, jobs.clock(), TIMEOUT, "gave up"),
        lambda conn: outbox.defer(conn, first, jobs.clock(), jobs.clock()),
    ]
    for outcome in outcomes:
        with pytest.raises(LostClaim), jobs.store.write() as conn:
            outcome(conn)
        assert jobs.get(job_id) == before

    with jobs.store.write() as conn:
        outbox.finish(conn, second, jobs.clock(), {"from": "second"})
    assert (jobs.get(job_id).state, jobs.get(job_id).result) == (JobState.DONE, {"from": "second"})


def test_finish_records_the_result_and_ends_the_claim(jobs: Jobs) -> None:
    job = jobs.claim_only(jobs.add("quick"))
    jobs.clock.now += timedelta(seconds=2)
    with jobs.store.write() as conn:
        outbox.finish(conn, job, jobs.clock(), {"customers_affected": 12})
    record = jobs.get(job.id)
    assert (record.state, record.result, record.finished_at) == (
        JobState.DONE,
        {"customers_affected": 12},
        jobs.clock(),
    )
    with pytest.raises(LostClaim), jobs.store.write() as conn:
        outbox.finish(conn, job, jobs.clock(), {"twice": True})


def test_retry_at_makes_the_job_pending_at_that_time_with_the_failure(jobs: Jobs) -> None:
    job = jobs.claim_only(jobs.add("flaky"))
    later = jobs.clock() + timedelta(minutes=2)
    with jobs.store.write() as conn:
        outbox.retry_at(conn, job, jobs.clock(), later, TIMEOUT)
    record = jobs.get(job.id)
    assert (record.state, record.due_at, record.attempts) == (JobState.PENDING, later, 1)
    assert (record.last_error, record.last_reason) == ("read timed out after 5s", "timeout")
    jobs.clock.now = later
    again = jobs.claim_only(job.id)
    assert (again.attempts, again.last_reason, again.has_failed) == (2, "timeout", True)


def test_bury_dead_letters_the_job_with_why(jobs: Jobs) -> None:
    job = jobs.claim_only(jobs.add("hopeless"))
    with jobs.store.write() as conn:
        outbox.bury(conn, job, jobs.clock(), TIMEOUT, "gave up after 3 attempts (timeout)")
    record = jobs.get(job.id)
    assert (record.state, record.finished_at, record.last_reason) == (JobState.DEAD, jobs.clock(), "timeout")
    assert record.last_error == "read timed out after 5s [gave up after 3 attempts (timeout)]"
    jobs.clock.now += timedelta(days=1)
    assert jobs.claim() == []


def test_defer_hands_the_job_back_without_counting_the_attempt(jobs: Jobs) -> None:
    job = jobs.claim_only(jobs.add("rate-limited"))
    soon = jobs.clock() + timedelta(seconds=3)
    with jobs.store.write() as conn:
        outbox.defer(conn, job, jobs.clock(), soon)
    record = jobs.get(job.id)
    assert (record.state, record.due_at, record.attempts, record.last_reason) == (
        JobState.PENDING,
        soon,
        0,
        None,
    )


def test_next_due_at_and_has_due_follow_pending_jobs_and_leases(jobs: Jobs) -> None:
    now = jobs.clock()
    with jobs.store.read() as conn:
        assert (outbox.next_due_at(conn), outbox.has_due(conn, now)) == (None, False)
    running = jobs.claim_only(jobs.add("running"))
    jobs.add("later", due_in=timedelta(minutes=10))
    jobs.dead("dead")
    with jobs.store.read() as conn:
        assert outbox.next_due_at(conn) == running.lease_until == now + LEASE
        assert outbox.has_due(conn, now) is False
        assert outbox.has_due(conn, now + LEASE) is True


# --- operators ---------------------------------------------------------------------------------


def test_retry_now_makes_a_dead_job_due_now_with_fresh_attempts(jobs: Jobs) -> None:
    job_id = jobs.dead("hopeless")
    jobs.clock.now += timedelta(hours=1)
    with jobs.store.write() as conn:
        retried = outbox.retry_now(conn, job_id, jobs.clock())
    assert (retried.state, retried.due_at, retried.attempts, retried.finished_at) == (
        JobState.PENDING,
        jobs.clock(),
        0,
        None,
    )
    assert jobs.claim_only(job_id).attempts == 1


@pytest.mark.parametrize(
    ("action", "allowed"),
    [
        (outbox.retry_now, ("dead", "discarded", "pending")),
        (outbox.discard, ("pending", "running", "dead")),
    ],
)
def test_a_done_job_can_be_neither_retried_nor_discarded(
    jobs: Jobs, action: OperatorAction, allowed: tuple[str, ...]
) -> None:
    job_id = jobs.done("finished")
    before = jobs.get(job_id)
    with pytest.raises(JobStateConflict) as refused, jobs.store.write() as conn:
        action(conn, job_id, jobs.clock())
    assert (refused.value.status, refused.value.current, refused.value.allowed) == (409, "done", allowed)
    assert jobs.get(job_id) == before


@pytest.mark.parametrize("action", [outbox.retry_now, outbox.discard])
def test_retrying_or_discarding_an_unknown_job_is_not_found(jobs: Jobs, action: OperatorAction) -> None:
    with pytest.raises(NotFound, match="job 404 not found"), jobs.store.write() as conn:
        action(conn, 404, jobs.clock())


def test_discarding_a_running_job_makes_its_workers_finish_raise_lost_claim(jobs: Jobs) -> None:
    job = jobs.claim_only(jobs.add("running"))
    with jobs.store.write() as conn:
        discarded = outbox.discard(conn, job.id, jobs.clock())
    assert discarded.state is JobState.DISCARDED
    with pytest.raises(LostClaim), jobs.store.write() as conn:
        outbox.finish(conn, job, jobs.clock(), {"late": True})
    assert (jobs.get(job.id).state, jobs.get(job.id).result) == (JobState.DISCARDED, None)
    jobs.clock.now += LEASE
    assert jobs.claim() == [], "a discarded job is never claimed, even after its lease"


# --- the backlog gauge -------------------------------------------------------------------------


def test_backlog_counts_due_retrying_and_dead_jobs_per_kind_and_the_oldest_due_age(jobs: Jobs) -> None:
    jobs.dead("dead")
    jobs.done("done")
    retrying = jobs.claim_only(jobs.add("retrying"))
    with jobs.store.write() as conn:
        outbox.retry_at(conn, retrying, jobs.clock(), jobs.clock() + timedelta(minutes=10), TIMEOUT)
    jobs.claim_only(jobs.add("running", kind=OTHER))
    discarded = jobs.add("discarded", kind=OTHER)
    with jobs.store.write() as conn:
        outbox.discard(conn, discarded, jobs.clock())
    jobs.add("first")
    jobs.add("later", due_in=timedelta(minutes=30))
    jobs.clock.now += timedelta(seconds=90)

    with jobs.store.read() as conn:
        backlog = outbox.backlog(conn, jobs.clock())

    assert backlog.counts == {
        (ECHO, BacklogState.DUE): 1,  # "later" is scheduled, not yet backlog
        (ECHO, BacklogState.RETRYING): 1,
        (ECHO, BacklogState.DEAD): 1,
        (OTHER, BacklogState.DUE): 1,
    }
    assert backlog.oldest_due_age_seconds == {ECHO: 90.0}, "the running job's lease has not expired"
    with jobs.store.read() as conn:
        assert sorted(outbox.kinds(conn)) == [ECHO, OTHER]


# --- concurrent claimers -----------------------------------------------------------------------


def claim_all_at_once(store: Store, clock: FakeClock, claimers: int, limit: int) -> list[int]:
    """`claimers` threads claim `limit` jobs at a time until nothing is left; every job id claimed."""
    start = threading.Barrier(claimers)

    def claim_until_empty(worker: str) -> list[int]:
        start.wait(timeout=10)
        taken: list[int] = []
        while True:
            with store.write() as conn:
                claimed = outbox.claim(conn, clock(), LEASE, limit, worker)
            if not claimed:
                return taken
            taken.extend(job.id for job in claimed)

    with ThreadPoolExecutor(claimers) as pool:
        futures = [pool.submit(claim_until_empty, f"worker-{n}") for n in range(claimers)]
        per_worker = [future.result(timeout=60) for future in futures]
    assert sum(1 for taken in per_worker if taken) > 1, "only one claimer got any job: no contention"
    return [job_id for taken in per_worker for job_id in taken]


@pytest.mark.postgres
def test_threads_claiming_from_one_pool_at_once_on_postgresql_never_get_the_same_job(
    postgres_store: Store, clock: FakeClock
) -> None:
    ids = Jobs(postgres_store, clock).add_many(200)
    claimed = claim_all_at_once(postgres_store, clock, claimers=8, limit=5)
    assert [job_id for job_id, times in Counter(claimed).items() if times > 1] == []
    assert sorted(claimed) == sorted(ids)


def test_threads_claiming_from_one_pool_at_once_on_sqlite_never_get_the_same_job(
    sqlite_store: Store, clock: FakeClock
) -> None:
    ids = Jobs(sqlite_store, clock).add_many(200)
    claimed = claim_all_at_once(sqlite_store, clock, claimers=4, limit=5)
    assert [job_id for job_id, times in Counter(claimed).items() if times > 1] == []
    assert sorted(claimed) == sorted(ids)
