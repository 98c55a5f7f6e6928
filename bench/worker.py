"""The outbox worker: jobs/s per worker with a no-op job, and commit -> job start latency.

The issue's target: p99 under 500 ms from the commit of a job to its start, and at least 300 jobs/s
per worker with a no-op job, on SQLite and PostgreSQL with 1 and 2 workers.

For each backend x worker count it migrates a fresh database (a temp SQLite file in WAL mode, as
`open_store` configures it, or a throw-away PostgreSQL database rl_bench_<random> created through
--pg-url and dropped at the end) and starts W worker processes (multiprocessing, `spawn`). Each
builds its own `Store` and a real `Worker` (`WorkerOptions.from_config(WorkerConfig())`, so
concurrency 4, a 100 ms poll on SQLite and LISTEN/NOTIFY on PostgreSQL) whose only handler is a
no-op: `perform` returns a recorder that stores `Recorded({})`. Then:

1. throughput: --jobs no-op jobs are enqueued in one transaction, the workers are released at once,
   and the run ends when every job is done. jobs/s = jobs / (last `finished_at` - first
   `first_started_at`), from the database; the split is `claimed_by`.
2. latency: with the workers idle, this process enqueues one job per transaction (as a webhook
   would) at --rate per second for --latency-seconds. Latency is `first_started_at - created_at`:
   the producer takes `now` inside its write transaction right before the INSERT and the commit,
   the worker takes its claim time just before it claims. Both use the app's clock
   (`recoverlink.worker_runtime.utc_now`, datetime.now(UTC), CLOCK_REALTIME of this host). Also
   shown: the time to `perform` (a latency job's handler stores the clock it was called at) and
   how long the producer's transaction took from its `now` to the return of the commit.

    .venv/bin/python bench/worker.py [--jobs 5000] [--rate 50] [--latency-seconds 10]
        [--backends sqlite,postgresql] [--workers 1,2] [--concurrency 4]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test] [--keep] [--json out.json]

Profile with py-spy (`.venv/bin/pip install py-spy`):
`py-spy record --subprocesses -o worker.svg -- .venv/bin/python bench/worker.py --backends sqlite`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select

import benchlib
from benchlib import throwaway_postgres
from ingest import describe_source
from recoverlink.config.model import DatabaseConfig, WorkerConfig
from recoverlink.domain.outbox import JobFailure
from recoverlink.store import migrate, outbox
from recoverlink.store.engine import Store, StoreOptions, open_store
from recoverlink.store.outbox import ClaimedJob, NewJob
from recoverlink.store.schema import outbox_jobs
from recoverlink.worker import Recorded, Recorder, Worker, WorkerOptions
from recoverlink.worker_runtime import utc_now

BACKENDS = ("sqlite", "postgresql")
NOOP = "bench.noop"  # throughput jobs: the recorder stores {}
STAMPED = "bench.noop_stamped"  # latency jobs: the recorder stores when perform was called
TARGET_P99_MS = 500.0
TARGET_JOBS_PER_WORKER = 300.0
CLOCK_NOTE = "clock: recoverlink.worker_runtime.utc_now (datetime.now(UTC), CLOCK_REALTIME, one host)"
_J = outbox_jobs.c


def _csv(choices: tuple[str, ...] | None = None, kind: type = str) -> Any:
    def parse(text: str) -> list[Any]:
        values = [kind(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError("give at least one value")
        bad = [v for v in values if choices is not None and v not in choices]
        if bad:
            allowed = ", ".join(choices or ())
            raise argparse.ArgumentTypeError(f"unknown value(s) {bad}; choose from {allowed}")
        return values

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000, help="no-op jobs of the throughput run (5000)")
    parser.add_argument("--rate", type=float, default=50.0, help="latency jobs enqueued per second (50)")
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="latency run length (10)")
    parser.add_argument("--backends", type=_csv(BACKENDS), default=list(BACKENDS))
    parser.add_argument("--workers", type=_csv(kind=int), default=[1, 2], help="worker processes (1,2)")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="jobs per worker at once (default: the config's, 4)"
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("RECOVERLINK_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="an existing PostgreSQL database to connect to for CREATE/DROP DATABASE",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (and the SQLite files)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.rate <= 0 or args.latency_seconds <= 0 or min(args.workers) < 1:
        parser.error("--jobs and --workers must be at least 1, --rate and --latency-seconds above 0")
    if args.concurrency is not None and args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return args


# --------------------------------------------------------------------------- the worker processes


@dataclass(frozen=True)
class NoopHandler:
    """A job with no remote part; with `stamp`, its result says when `perform` was called."""

    stamp: bool = False

    def target(self, job: ClaimedJob) -> str | None:
        return None

    def perform(self, job: ClaimedJob, now: datetime) -> Recorder:
        result = {"performed_at": now.timestamp()} if self.stamp else {}

        def record(conn: Connection, at: datetime) -> Recorded:
            return Recorded(result)

        return record

    def record_failure(
        self, conn: Connection, job: ClaimedJob, failure: JobFailure, final: bool, now: datetime
    ) -> None:
        """A no-op never fails."""


def worker_options(concurrency: int | None) -> WorkerOptions:
    config = WorkerConfig() if concurrency is None else WorkerConfig(concurrency=concurrency)
    return WorkerOptions.from_config(config)


def store_options() -> StoreOptions:
    return StoreOptions.from_config(DatabaseConfig())


@dataclass(frozen=True)
class WorkerSpec:
    url: str
    name: str  # what `claimed_by` shows
    concurrency: int | None


def worker_process(spec: WorkerSpec, ready: ProcessEvent, go: ProcessEvent, stop: ProcessEvent) -> None:
    """The body of one worker process: build everything, say ready, run from `go` until `stop`."""
    from prometheus_client import CollectorRegistry

    from recoverlink.telemetry import Metrics

    store = open_store(spec.url, store_options())
    with store.read():
        pass  # the first connection is opened before the clock starts
    handlers = {NOOP: NoopHandler(), STAMPED: NoopHandler(stamp=True)}
    metrics = Metrics(CollectorRegistry())
    options = worker_options(spec.concurrency)
    worker = Worker(store, handlers, options, metrics, clock=utc_now, name=spec.name)
    stopping = threading.Event()

    def follow_stop() -> None:
        stop.wait()
        stopping.set()

    threading.Thread(target=follow_stop, daemon=True).start()
    ready.set()
    go.wait()
    try:
        worker.run(stopping)
    finally:
        store.dispose()


@dataclass
class Workers:
    processes: list[SpawnProcess]
    go: ProcessEvent
    stop: ProcessEvent

    def release(self) -> None:
        self.go.set()

    def shut_down(self, timeout: float = 20.0) -> None:
        """Set `stop` and join; terminate (only these processes) what is still running after `timeout`."""
        self.stop.set()
        deadline = time.monotonic() + timeout
        for process in self.processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                print(f"worker {process.name} still running; terminating it", flush=True)
                process.terminate()
                process.join(5)

    def cpu_seconds(self) -> float:
        """User + system CPU of the worker processes so far (all their threads), from /proc."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for process in self.processes:
            stat = Path(f"/proc/{process.pid}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()  # the name may contain spaces: fields after ')'
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        return total

    def check_alive(self) -> None:
        dead = [p for p in self.processes if not p.is_alive()]
        if dead:
            codes = ", ".join(f"{p.name} exited with {p.exitcode}" for p in dead)
            raise RuntimeError(f"worker process died: {codes}")


def start_workers(url: str, count: int, concurrency: int | None, timeout: float = 60.0) -> Workers:
    """Spawn `count` workers and wait until each has built its store and worker."""
    ctx = multiprocessing.get_context("spawn")
    go, stop = ctx.Event(), ctx.Event()
    processes, readies = [], []
    for index in range(1, count + 1):
        ready = ctx.Event()
        spec = WorkerSpec(url, f"bench-w{index}", concurrency)
        process = ctx.Process(
            target=worker_process, args=(spec, ready, go, stop), name=spec.name, daemon=True
        )
        process.start()
        processes.append(process)
        readies.append(ready)
    workers = Workers(processes, go, stop)
    deadline = time.monotonic() + timeout
    for ready in readies:
        while not ready.wait(0.2):
            workers.check_alive()
            if time.monotonic() > deadline:
                workers.shut_down()
                raise RuntimeError(f"workers not ready after {timeout:.0f} s")
    return workers


# --------------------------------------------------------------------------- databases


@contextlib.contextmanager
def database(backend: str, tmp: Path, pg_url: str, label: str) -> Iterator[str]:
    """A fresh, migrated database for one cell; yields its SQLAlchemy URL."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp / f'{label}.db'}"
        migrate_url(url)
        yield url
        return
    with throwaway_postgres(pg_url) as pg:
        migrate_url(pg.sqlalchemy_url)
        yield pg.sqlalchemy_url


def migrate_url(url: str) -> None:
    store = open_store(url, store_options())
    try:
        migrate.upgrade(store.engine)
    finally:
        store.dispose()


# --------------------------------------------------------------------------- the two runs


def max_attempts() -> int:
    return WorkerConfig().max_attempts


def enqueue_batch(store: Store, count: int, prefix: str) -> None:
    """`count` no-op jobs in one transaction, due now."""
    with store.write() as conn:
        now = utc_now()
        jobs = [NewJob(NOOP, f"{prefix}{i}", {}, now) for i in range(count)]
        outbox.enqueue(conn, jobs, now, max_attempts())


def produce(store: Store, rate: float, seconds: float, prefix: str) -> list[float]:
    """One job per transaction at `rate`/s; returns each transaction's seconds from `now` to committed."""
    total = max(1, round(rate * seconds))
    start = time.monotonic()
    commit_seconds = []
    for i in range(total):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with store.write() as conn:
            now = utc_now()  # right before the INSERT and the commit
            outbox.enqueue(conn, [NewJob(STAMPED, f"{prefix}{i}", {}, now)], now, max_attempts())
        commit_seconds.append((utc_now() - now).total_seconds())
    return commit_seconds


def count_states(store: Store, prefix: str) -> dict[str, int]:
    query = select(_J.state, func.count()).where(_J.idempotency_key.like(f"{prefix}%")).group_by(_J.state)
    with store.read() as conn:
        return {str(state): int(n) for state, n in conn.execute(query)}


def wait_done(store: Store, prefix: str, count: int, workers: Workers, timeout: float) -> None:
    """Until `count` jobs of `prefix` are done; fail on a job in another final state or a dead worker."""
    deadline = time.monotonic() + timeout
    while True:
        states = count_states(store, prefix)
        if states.get("done", 0) >= count:
            return
        if states.get("dead") or states.get("discarded"):
            raise RuntimeError(f"jobs {prefix}*: {states}")
        workers.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs {prefix}* not done after {timeout:.0f} s: {states}")
        time.sleep(0.2)


@dataclass(frozen=True)
class JobTimes:
    created_at: datetime
    first_started_at: datetime
    finished_at: datetime
    claimed_by: str
    performed_at: float | None


def job_times(store: Store, prefix: str) -> list[JobTimes]:
    columns = (_J.created_at, _J.first_started_at, _J.finished_at, _J.claimed_by, _J.result)
    query = select(*columns).where(_J.idempotency_key.like(f"{prefix}%"))
    with store.read() as conn:
        rows = conn.execute(query).all()
    return [
        JobTimes(
            created_at=r.created_at,
            first_started_at=r.first_started_at,
            finished_at=r.finished_at,
            claimed_by=r.claimed_by,
            performed_at=(r.result or {}).get("performed_at"),
        )
        for r in rows
    ]


def aware(value: datetime) -> datetime:
    """The stored form is naive UTC."""
    return value.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- results


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Row:
    backend: str
    workers: int
    jobs: int
    seconds: float
    split: dict[str, int]
    own_rates: dict[str, float]  # each worker's jobs / (its last finish - its first start)
    cpu_ms_per_job: float = float("nan")  # the worker processes' CPU during the throughput run
    latency_ms: list[float] = field(default_factory=list)
    perform_ms: list[float] = field(default_factory=list)
    commit_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else 0.0

    @property
    def per_worker(self) -> float:
        return self.rate / self.workers

    def p(self, values: Sequence[float], fraction: float) -> float:
        return percentile(values, fraction) if values else float("nan")

    @property
    def latency_ok(self) -> bool:
        return bool(self.latency_ms) and self.p(self.latency_ms, 0.99) < TARGET_P99_MS

    @property
    def throughput_ok(self) -> bool:
        return self.per_worker >= TARGET_JOBS_PER_WORKER


def throughput_row(backend: str, workers: int, times: list[JobTimes]) -> Row:
    start = min(t.first_started_at for t in times)
    end = max(t.finished_at for t in times)
    split: dict[str, int] = {}
    own: dict[str, list[JobTimes]] = {}
    for t in times:
        split[t.claimed_by] = split.get(t.claimed_by, 0) + 1
        own.setdefault(t.claimed_by, []).append(t)
    own_rates = {}
    for name, mine in own.items():
        span = (max(t.finished_at for t in mine) - min(t.first_started_at for t in mine)).total_seconds()
        own_rates[name] = len(mine) / span if span > 0 else 0.0
    seconds = (end - start).total_seconds()
    return Row(backend, workers, len(times), seconds, dict(sorted(split.items())), own_rates)


def add_latencies(row: Row, times: list[JobTimes], commit_seconds: list[float]) -> None:
    row.latency_ms = [(t.first_started_at - t.created_at).total_seconds() * 1000 for t in times]
    row.perform_ms = [
        (t.performed_at - aware(t.created_at).timestamp()) * 1000 for t in times if t.performed_at is not None
    ]
    row.commit_ms = [s * 1000 for s in commit_seconds]


COLUMNS = [
    ("backend", "<"),
    ("workers", ">"),
    ("jobs", ">"),
    ("jobs/s total", ">"),
    ("jobs/s per worker", ">"),
    ("worker CPU ms/job", ">"),
    ("latency jobs", ">"),
    ("p50 ms", ">"),
    ("p99 ms", ">"),
    ("max ms", ">"),
    ("to perform p99 ms", ">"),
    ("producer txn p99 ms", ">"),
    ("jobs per worker (own jobs/s)", "<"),
]


def cells(row: Row) -> list[str]:
    split = ", ".join(f"{name} {n:,} ({row.own_rates[name]:,.0f}/s)" for name, n in row.split.items())
    return [
        row.backend,
        str(row.workers),
        f"{row.jobs:,}",
        f"{row.rate:,.0f}",
        f"{row.per_worker:,.0f}",
        f"{row.cpu_ms_per_job:.2f}",
        f"{len(row.latency_ms):,}",
        f"{row.p(row.latency_ms, 0.5):.1f}",
        f"{row.p(row.latency_ms, 0.99):.1f}",
        f"{max(row.latency_ms, default=float('nan')):.1f}",
        f"{row.p(row.perform_ms, 0.99):.1f}",
        f"{row.p(row.commit_ms, 0.99):.1f}",
        split,
    ]


def verdicts(rows: Sequence[Row]) -> list[str]:
    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    lines = []
    for r in rows:
        where = f"{r.backend:<10} {r.workers} worker(s)"
        lines.append(
            f"  {where}  {mark(r.latency_ok)}  commit -> start p99 {r.p(r.latency_ms, 0.99):.1f} ms "
            f"< {TARGET_P99_MS:.0f} ms"
        )
        lines.append(
            f"  {where}  {mark(r.throughput_ok)}  {r.per_worker:,.0f} jobs/s per worker "
            f">= {TARGET_JOBS_PER_WORKER:.0f}"
        )
    return lines


# --------------------------------------------------------------------------- one cell


def run_cell(backend: str, count: int, tmp: Path, args: argparse.Namespace) -> Row:
    label = f"{backend}-{count}w"
    with database(backend, tmp, args.pg_url, label) as url:
        store = open_store(url, store_options())
        workers = start_workers(url, count, args.concurrency)
        try:
            enqueue_batch(store, args.jobs, "tp-")
            cpu_before = workers.cpu_seconds()
            workers.release()
            wait_done(store, "tp-", args.jobs, workers, timeout=max(60.0, args.jobs / 20))
            cpu = workers.cpu_seconds() - cpu_before
            row = throughput_row(backend, count, job_times(store, "tp-"))
            row.cpu_ms_per_job = cpu * 1000 / args.jobs
            print(f"{label}: {args.jobs:,} jobs in {row.seconds:.2f} s ({row.rate:,.0f}/s)", flush=True)
            time.sleep(1.5)  # the workers go idle (and, on PostgreSQL, LISTEN)
            commit_seconds = produce(store, args.rate, args.latency_seconds, "lat-")
            wait_done(store, "lat-", len(commit_seconds), workers, timeout=30.0)
            add_latencies(row, job_times(store, "lat-"), commit_seconds)
            print(f"{label}: latency p99 {row.p(row.latency_ms, 0.99):.1f} ms", flush=True)
        finally:
            workers.shut_down()
            store.dispose()
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    options = worker_options(args.concurrency)
    print(
        f"recoverlink outbox worker benchmark, {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}; {args.jobs:,} no-op jobs, then "
        f"{args.rate:g} jobs/s for {args.latency_seconds:g} s; concurrency {options.concurrency}, "
        f"poll {options.poll_interval_seconds * 1000:.0f} ms (SQLite)",
        flush=True,
    )
    print(describe_source(), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="rl-bench-worker-"))
    rows: list[Row] = []
    try:
        for backend in args.backends:
            rows.extend(run_cell(backend, count, tmp, args) for count in args.workers)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(benchlib.render_table(COLUMNS, [cells(r) for r in rows]))
    print(CLOCK_NOTE)
    print()
    met = all(r.latency_ok and r.throughput_ok for r in rows)
    print(f"targets: {'MET' if met else 'NOT MET'}")
    print("\n".join(verdicts(rows)))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
