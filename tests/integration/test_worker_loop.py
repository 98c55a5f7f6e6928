"""`Worker.run` in a thread: woken by NOTIFY on PostgreSQL and by polling on SQLite, finishing the job
it runs when told to stop, and two workers on one PostgreSQL database never running a job twice."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from recoverlink.domain.outbox import JobState
from recoverlink.store import migrate, outbox
from recoverlink.store.engine import Store, StoreOptions, make_engine
from recoverlink.telemetry import Metrics
from recoverlink.wakeup import ListenWaiter, PollWaiter, waiter_for
from recoverlink.worker import Worker
from tests.conftest import FakeClock
from tests.support.outbox import ECHO, FakeHandler, Jobs, worker_options
from tests.support.processes import wait_until

ENOUGH_SECONDS = 5.0  # generous: NOTIFY wakes a worker in milliseconds, polling here in 50 ms


def make_worker(
    store: Store, clock: FakeClock, handler: FakeHandler, name: str, concurrency: int = 2
) -> Worker:
    options = worker_options(concurrency=concurrency, poll_interval_seconds=0.05)
    metrics = Metrics(CollectorRegistry())
    return Worker(store, {ECHO: handler}, options, metrics, clock=clock, name=name, jitter=lambda: 0.5)


@contextmanager
def running(worker: Worker) -> Iterator[threading.Event]:
    """Run the worker's loop in a thread until the block ends (or sets the yielded stop event)."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=loop, name=f"test-{worker.name}", daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive(), "the worker loop did not stop within 10 s"
    assert errors == []


def listening_backends(store: Store) -> int:
    """PostgreSQL sessions whose last statement was our LISTEN (the worker's idle connection)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'"
    )
    with store.read() as conn:
        return int(conn.execute(query).scalar_one())


def test_each_backend_waits_its_own_way_listen_on_postgresql_poll_on_sqlite(store: Store) -> None:
    waiter = waiter_for(store, poll_interval_seconds=0.05)
    try:
        assert isinstance(waiter, ListenWaiter if store.backend == "postgresql" else PollWaiter)
    finally:
        waiter.close()


@pytest.mark.postgres
def test_a_listening_waiter_wakes_when_a_job_is_committed_in_another_transaction(
    postgres_store: Store, clock: FakeClock
) -> None:
    waiter = waiter_for(postgres_store, poll_interval_seconds=0.05)
    stop = threading.Event()
    try:
        waiter.wait(0, stop)  # connects and LISTENs
        Jobs(postgres_store, clock).add("lookup")
        started = time.monotonic()
        waiter.wait(30, stop)
        assert time.monotonic() - started < ENOUGH_SECONDS, "woken by the NOTIFY, not the 30 s timeout"
    finally:
        waiter.close()


def test_a_waiter_returns_soon_after_stop_is_set(store: Store) -> None:
    waiter = waiter_for(store, poll_interval_seconds=30)
    stop = threading.Event()
    stopper = threading.Timer(0.1, stop.set)
    try:
        waiter.wait(0, stop)
        started = time.monotonic()
        stopper.start()
        waiter.wait(30, stop)
        assert time.monotonic() - started < ENOUGH_SECONDS, "waited for the timeout, not for stop"
    finally:
        stopper.cancel()
        waiter.close()


def test_a_job_enqueued_while_the_worker_waits_runs_without_anyone_asking(
    store: Store, clock: FakeClock
) -> None:
    handler = FakeHandler()
    jobs = Jobs(store, clock)
    with running(make_worker(store, clock, handler, "worker-a")):
        if store.backend == "postgresql":
            wait_until(
                lambda: listening_backends(store) > 0, timeout=ENOUGH_SECONDS, what="the worker to LISTEN"
            )
        job_id = jobs.add("lookup")
        assert handler.started.wait(ENOUGH_SECONDS), "the job did not start"
        wait_until(lambda: jobs.get(job_id).state is JobState.DONE, timeout=ENOUGH_SECONDS, what="the job")
    assert handler.runs == handler.committed == [job_id]


def test_stopping_the_loop_lets_the_running_job_finish_and_record_its_result(
    store: Store, clock: FakeClock
) -> None:
    gate = threading.Event()
    handler = FakeHandler(gate=gate)
    jobs = Jobs(store, clock)
    job_id = jobs.add("slow-lookup")
    with running(make_worker(store, clock, handler, "worker-a")) as stop:
        assert handler.started.wait(ENOUGH_SECONDS), "the job did not start"
        stop.set()
        assert jobs.get(job_id).state is JobState.RUNNING
        gate.set()  # the remote answers after the stop was asked for
    job = jobs.get(job_id)
    assert (job.state, job.result) == (JobState.DONE, {"attempt": 1})
    assert handler.committed == [job_id]


@pytest.mark.postgres
def test_two_workers_on_one_postgresql_database_never_run_the_same_job_twice(
    postgres_store: Store, postgres_url: str, clock: FakeClock
) -> None:
    other_store = Store(make_engine(postgres_url, StoreOptions(pool_size=6)))
    migrate.upgrade(other_store.engine)  # already at head: a no-op, as for a second replica
    handlers = {"worker-a": FakeHandler(), "worker-b": FakeHandler()}
    jobs = Jobs(postgres_store, clock)
    try:
        with (
            running(make_worker(postgres_store, clock, handlers["worker-a"], "worker-a", concurrency=4)),
            running(make_worker(other_store, clock, handlers["worker-b"], "worker-b", concurrency=4)),
        ):
            ids = [job_id for batch in range(3) for job_id in jobs.add_many(100, prefix=f"batch-{batch}")]
            wait_until(
                lambda: len(handlers["worker-a"].committed) + len(handlers["worker-b"].committed) >= 300,
                timeout=30,
                what="300 jobs to be done",
            )
    finally:
        other_store.dispose()

    ran = handlers["worker-a"].runs + handlers["worker-b"].runs
    assert [job_id for job_id, times in Counter(ran).items() if times > 1] == []
    assert sorted(ran) == sorted(ids)
    assert all(handler.runs for handler in handlers.values()), "both workers took part"
    with postgres_store.read() as conn:
        done, _ = outbox.list_jobs(conn, outbox.JobFilter(states=("done",)), limit=1000)
    assert len(done) == 300
    assert {job.claimed_by for job in done} == {"worker-a", "worker-b"}
