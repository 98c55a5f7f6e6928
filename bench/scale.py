"""Scale-out benchmark (issue #10): what one PostgreSQL sustains behind 1 and 2 replicas, how long
the 10,000-alert storm takes to drain, and what memory and latency look like at 1,000,000 alerts.

Everything runs against a throw-away PostgreSQL server of its own (tests/support/throwaway_postgres:
initdb in a temp directory, 127.0.0.1, fsync off), or, with --pg-url, against throw-away databases
on an existing server (created and dropped, as bench/ingest.py does). Three parts:

1. throughput: 1 and then 2 `recoverlink serve --no-worker` replicas, each with a `recoverlink
   worker` beside it, on one database; the example config (deploy/recoverlink.yaml) with the fake
   ServiceNow as ITSM. wrk (bench/wrk/webhook.lua) splits the connections across the replicas'
   ports, for the `insert` load (3 new alerts per notification) and the `duplicate` load (the same
   3-alert notification again), as bench/ingest.py defines them. Per cell: notifications/s,
   alerts/s, p50/p99 (the worse replica's), non-2xx, PostgreSQL commits/s, machine CPU busy, the
   largest gunicorn worker RSS.
2. storm: tests/reliability/storm.py's topology (an Alertmanager HA pair, two replicas, two
   workers, the fake ServiceNow) and its storm, by default 50 services x 4 alert names x 50
   instances = 10,000 alerts, 2 new recoveries per service per 5 minutes: time until every alert
   is stored and placed and every recovery has its incident, and the one-incident-per-recovery
   check.
3. memory: `recoverlink db upgrade`, then bench/recoveries.py's synthetic history bulk-loaded
   with COPY (by default 100,000 recoveries, 1,000,000 alerts, audit events), then `recoverlink
   serve` (gunicorn + the outbox worker beside it) on it: RSS of every process at start, after a
   webhook load, and after two rounds of API, board and /metrics requests (with their latency),
   and the database size on disk.

    .venv/bin/python bench/scale.py [--quick] [--parts throughput,storm,memory]
        [--duration 8] [--warmup 2] [--concurrency 2,8,32] [--replicas 1,2] [--paths insert,duplicate]
        [--storm 50x4x50] [--storm-max-new 2] [--storm-timeout 900]
        [--stored-alerts 1000000] [--stored-recoveries 100000] [--page-requests 100]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test] [--keep]

Needs wrk and Debian's prometheus-alertmanager (`make bench-scale` installs the latter), and root
for the throw-away server (it runs as the postgres OS user).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from sqlalchemy.engine import make_url

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # tests.reliability: the storm and the process helpers

from tests.e2e.conftest import recoverlink_script, write_yaml  # noqa: E402
from tests.reliability.stack import (  # noqa: E402
    WEBHOOK_TOKEN,
    Recoverlink,
    children,
    is_outbox_worker,
    recoverlink_env,
    serving,
    working,
)
from tests.reliability.storm import StormPlan, StormResult, run_storm, storm_topology  # noqa: E402
from tests.support.fake_servicenow import FakeServiceNow  # noqa: E402
from tests.support.processes import RunningProcess  # noqa: E402
from tests.support.throwaway_postgres import running_postgres, throwaway_postgres_problem  # noqa: E402

import benchlib  # noqa: E402
import ingest  # noqa: E402  (bench/ingest.py: wrk runs, bodies, RSS)
import recoveries  # noqa: E402  (bench/recoveries.py: the synthetic history and its COPY loader)

PARTS = ("throughput", "storm", "memory")
LOAD_PATHS = ("insert", "duplicate")
ALERTS_PER_NOTIFICATION = 3  # the fixture group bench/ingest.py sends
QUICK = {
    "duration": 3,
    "warmup": 1,
    "concurrency": [2, 8],
    "storm": (10, 4, 10),
    "stored_alerts": 20_000,
    "stored_recoveries": 2_000,
    "page_requests": 10,
    "memory_load_seconds": 3,
}


# --------------------------------------------------------------------------- arguments


def _ints(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("give positive integers, comma-separated")
    return values


def _choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        values = [part.strip() for part in text.split(",") if part.strip()]
        if not values or set(values) - set(allowed):
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}")
        return values

    return parse


def _storm_shape(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in text.lower().split("x")]
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError("SERVICESxALERTNAMESxINSTANCES, e.g. 50x4x50")
    return parts[0], parts[1], parts[2]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="small sizes for a smoke run (explicit options win)")
    add("--parts", type=_choices(PARTS), default=list(PARTS))
    add("--duration", type=int, help="measured seconds per throughput cell (default 8)")
    add("--warmup", type=int, help="warm-up seconds per throughput cell (default 2)")
    add("--concurrency", type=_ints, help="total connections, split across replicas (default 2,8,32)")
    add("--replicas", type=_ints, default=[1, 2], help="replica counts to measure (default 1,2)")
    add("--paths", type=_choices(LOAD_PATHS), default=list(LOAD_PATHS))
    add("--storm", type=_storm_shape, help="SERVICESxALERTNAMESxINSTANCES (default 50x4x50)")
    add("--storm-max-new", type=int, default=2, help="storm mode's max_new_recoveries (default 2)")
    add("--storm-timeout", type=float, default=900.0, help="seconds to wait for the drain")
    add("--stored-alerts", type=int, help="alerts bulk-loaded for the memory part (default 1000000)")
    add("--stored-recoveries", type=int, help="recoveries bulk-loaded with them (default 100000)")
    add("--page-requests", type=int, help="requests per page per round (default 100)")
    add("--memory-load-seconds", type=int, help="webhook load per path in the memory part (default 10)")
    add("--pg-url", help="use throw-away databases on this server instead of a server of our own")
    add("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    add("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    defaults: dict[str, Any] = {
        "duration": 8,
        "warmup": 2,
        "concurrency": [2, 8, 32],
        "storm": (50, 4, 50),
        "stored_alerts": 1_000_000,
        "stored_recoveries": 100_000,
        "page_requests": 100,
        "memory_load_seconds": 10,
    }
    for name, value in (QUICK if args.quick else defaults).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.stored_recoveries < 10 or args.stored_alerts < args.stored_recoveries:
        parser.error("--stored-recoveries must be at least 10 and --stored-alerts at least that")
    return args


# --------------------------------------------------------------------------- the database server


@dataclass
class PgServer:
    """Where each part gets a fresh database: `create(name)` returns its SQLAlchemy URL."""

    create: Callable[[str], str]
    describe: str
    cpu_seconds: Callable[[], float] | None = None  # the server's CPU so far (only for our own server)


def dsn_of(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def open_pg_server(pg_url: str | None, stack: contextlib.ExitStack) -> PgServer:
    """A throw-away server of our own, or throw-away databases on `pg_url`'s server; `stack` ends them."""
    if pg_url is None:
        problem = throwaway_postgres_problem()
        if problem:
            raise SystemExit(f"no throw-away PostgreSQL: {problem} (or pass --pg-url)")
        server = stack.enter_context(running_postgres())
        version = _server_version(server.dsn())
        describe = f"throw-away {version} on port {server.port}, fsync=off"
        postmaster = server.popen.pid if server.popen else 0
        return PgServer(server.create_database, describe, lambda: tree_cpu_seconds(postmaster))

    def create(_name: str) -> str:
        return stack.enter_context(benchlib.throwaway_postgres(pg_url)).sqlalchemy_url

    return PgServer(create, f"{_server_version(dsn_of(pg_url))} at {make_url(pg_url).host} (--pg-url)")


def _server_version(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"


def commits(dsn: str) -> int:
    """Committed transactions (reads too) in this database so far (pg_stat_database, flushed about
    every second)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def database_sizes(dsn: str) -> dict[str, int]:
    """Bytes on disk: the whole database, and each big table with its indexes and TOAST."""
    tables = ("alerts", "notifications", "recoveries", "recovery_alerts", "audit_events", "outbox_jobs")
    with psycopg.connect(dsn, autocommit=True) as conn:
        sizes = {"database": _one(conn, "SELECT pg_database_size(current_database())")}
        for table in tables:
            sizes[table] = _one(conn, f"SELECT pg_total_relation_size('{table}')")
    return sizes


def _one(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()  # type: ignore[arg-type]  # our constant SQL
    return int(row[0]) if row else 0


# --------------------------------------------------------------------------- processes


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cpu_seconds_of(pid: int, *, with_reaped_children: bool = False) -> float:
    """utime + stime of `pid` (and of the children it has waited for), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """CPU of a postmaster and its backends, live and exited (it reaps every backend it forks)."""
    live = sum(cpu_seconds_of(child) for child in children(root))
    return cpu_seconds_of(root, with_reaped_children=True) + live


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


def gunicorn_workers(serve_pid: int) -> list[int]:
    """`recoverlink serve` is the gunicorn master: its children but the outbox worker."""
    return [pid for pid in children(serve_pid) if not is_outbox_worker(pid)]


def rss_snapshot(serve: RunningProcess, workers: Sequence[RunningProcess] = ()) -> dict[str, float]:
    """RSS in MB of the master, each gunicorn worker, and each outbox worker (beside it or separate)."""
    found = {"master": ingest.rss_mb(serve.pid) or 0.0}
    for n, pid in enumerate(gunicorn_workers(serve.pid)):
        found[f"gunicorn worker {n + 1}"] = ingest.rss_mb(pid) or 0.0
    beside = [pid for pid in children(serve.pid) if is_outbox_worker(pid)]
    for n, pid in enumerate([*beside, *(w.pid for w in workers)]):
        found[f"outbox worker {n + 1}"] = ingest.rss_mb(pid) or 0.0
    return found


def max_gunicorn_rss(replicas: Sequence[Recoverlink]) -> float:
    pids = [pid for r in replicas for pid in gunicorn_workers(r.process.pid)]
    return max((ingest.rss_mb(pid) or 0.0 for pid in pids), default=0.0)


# --------------------------------------------------------------------------- configs


def example_config(directory: Path, servicenow: FakeServiceNow, servicenow_url: str) -> Path:
    """deploy/recoverlink.yaml with its state in `directory` (the shared webhook token, the admin
    token where tests.reliability.stack.Recoverlink reads it), the fake ServiceNow as ITSM, and a
    public board (so /board needs no sign-in)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "webhook.token").write_text(WEBHOOK_TOKEN + "\n", encoding="utf-8")
    password = directory / "sn.password"
    password.write_text(servicenow.password + "\n", encoding="utf-8")
    _, config = ingest.recoverlink_config(directory, "127.0.0.1:0")
    config["api"]["bootstrap_admin_token"]["file"] = str(directory / "var" / "admin.token")
    config["server"]["metrics_dir"] = str(directory / "var" / "metrics")
    config["board"]["public"] = True
    config["itsm"] = {
        "poll_every": "1h",
        "servicenow": {
            "url": servicenow_url,
            "auth": {"basic": {"username": servicenow.user, "password": {"file": str(password)}}},
            "timeout_seconds": 5,
        },
    }
    return write_yaml(directory / "recoverlink.yaml", config)


# --------------------------------------------------------------------------- part 1: throughput


@dataclass
class ReplicaSet:
    replicas: list[Recoverlink]
    workers: list[RunningProcess]
    dsn: str
    runs: list[ingest.Runs]  # one numbering per replica, so parallel wrk runs never share fingerprints
    pg_cpu: Callable[[], float] | None = None


@contextlib.contextmanager
def replica_set(directory: Path, count: int, database_url: str) -> Iterator[ReplicaSet]:
    """`count` x (`serve --no-worker` + `worker`) on one database (the first one migrates it)."""
    servicenow = FakeServiceNow()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(servicenow.serve())
        configs = [example_config(directory / f"replica-{n}", servicenow, url) for n in range(count)]
        replicas = [
            stack.enter_context(
                serving(f"replica-{n}", c, database_url=database_url, no_worker=True, migrate=n == 0)
            )
            for n, c in enumerate(configs)
        ]
        workers = [
            stack.enter_context(working(f"worker-{n}", c, database_url=database_url))
            for n, c in enumerate(configs)
        ]
        runs = []
        for n in range(count):
            numbering = ingest.Runs()
            numbering.number = n * (4096 // count)
            runs.append(numbering)
        yield ReplicaSet(replicas, workers, dsn_of(database_url), runs)


@dataclass
class LoadRow:
    replicas: int
    path: str
    concurrency: int
    notifications_per_s: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int
    commits_per_s: float
    cpu_busy: float
    pg_cores: float | None
    rss_mb: float
    notes: list[str] = field(default_factory=list)

    @property
    def alerts_per_s(self) -> float:
        return ALERTS_PER_NOTIFICATION * self.notifications_per_s


def split(total: int, parts: int) -> list[int]:
    """`total` connections over `parts` replicas, at least one each."""
    return [max(1, total // parts + (1 if n < total % parts else 0)) for n in range(parts)]


def wrk_across(
    rs: ReplicaSet, path: str, body: Path, concurrency: int, seconds: int
) -> list[ingest.WrkResult]:
    """One wrk per replica, at the same time, the connections split between them."""
    shares = split(concurrency, len(rs.replicas))

    def one(n: int) -> ingest.WrkResult:
        return rs.runs[n].wrk(
            rs.replicas[n].url,
            path=path,
            body=body,
            token=WEBHOOK_TOKEN,
            connections=shares[n],
            seconds=seconds,
            threads=1,
        )

    with ThreadPoolExecutor(len(rs.replicas)) as pool:
        return list(pool.map(one, range(len(rs.replicas))))


def count_alerts(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return _one(conn, "SELECT count(*) FROM alerts")


def load_cell(rs: ReplicaSet, path: str, body: Path, concurrency: int, args: Any) -> LoadRow:
    """Warm up, then measure one (replicas, path, concurrency) cell."""
    if args.warmup:
        wrk_across(rs, path, body, concurrency, args.warmup)
    stored, committed, cpu = count_alerts(rs.dsn), commits(rs.dsn), cpu_ticks()
    pg_before = rs.pg_cpu() if rs.pg_cpu else 0.0
    started = time.monotonic()
    results = wrk_across(rs, path, body, concurrency, args.duration)
    seconds = max(r.seconds for r in results)
    busy = busy_share(cpu, cpu_ticks())
    pg_cores = (rs.pg_cpu() - pg_before) / (time.monotonic() - started) if rs.pg_cpu else None
    time.sleep(1.1)  # backends flush their commit counts to pg_stat_database about every second
    committed = commits(rs.dsn) - committed
    elapsed = time.monotonic() - started
    ok = sum(r.ok for r in results)
    row = LoadRow(
        replicas=len(rs.replicas),
        path=path,
        concurrency=concurrency,
        notifications_per_s=ok / seconds,
        p50_ms=max(r.p50_ms for r in results),
        p99_ms=max(r.p99_ms for r in results),
        non2xx=sum(r.non2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        commits_per_s=committed / elapsed,
        cpu_busy=busy,
        pg_cores=pg_cores,
        rss_mb=max_gunicorn_rss(rs.replicas),
    )
    added = count_alerts(rs.dsn) - stored
    if path == "insert" and added < ALERTS_PER_NOTIFICATION * ok:
        row.notes.append(f"only {added} alerts stored for {ok} accepted insert notifications")
    statuses = [r.statuses for r in results if r.non2xx]
    if statuses:
        row.notes.append(f"statuses: {statuses}")
    return row


def throughput(server: PgServer, directory: Path, args: Any) -> list[LoadRow]:
    bodies = ingest.write_bodies(directory)
    rows = []
    for count in args.replicas:
        url = server.create(f"throughput_{count}")
        with replica_set(directory / f"replicas-{count}", count, url) as rs:
            rs.pg_cpu = server.cpu_seconds
            print(f"[throughput] {count} replica(s): {', '.join(r.url for r in rs.replicas)}", flush=True)
            for path in args.paths:
                for concurrency in args.concurrency:
                    row = load_cell(rs, path, bodies[path], concurrency, args)
                    print("  " + "  ".join(load_cells(row)) + "".join(f"\n  ! {n}" for n in row.notes))
                    rows.append(row)
            for process in [*(r.process for r in rs.replicas), *rs.workers]:
                if process.popen.poll() is not None:
                    rows[-1].notes.append(f"{process.name} exited with {process.popen.returncode}")
    return rows


LOAD_COLUMNS = (
    ("replicas", ">"),
    ("path", "<"),
    ("conc", ">"),
    ("notif/s", ">"),
    ("alerts/s", ">"),
    ("p50 ms", ">"),
    ("p99 ms", ">"),
    ("non-2xx", ">"),
    ("sock err", ">"),
    ("PG xact/s", ">"),
    ("CPU busy", ">"),
    ("PG cores", ">"),
    ("max gunicorn RSS MB", ">"),
)


def load_cells(row: LoadRow) -> list[str]:
    return [
        str(row.replicas),
        row.path,
        str(row.concurrency),
        f"{row.notifications_per_s:,.0f}",
        f"{row.alerts_per_s:,.0f}",
        f"{row.p50_ms:.1f}",
        f"{row.p99_ms:.1f}",
        str(row.non2xx),
        str(row.socket_errors),
        f"{row.commits_per_s:,.0f}",
        f"{row.cpu_busy:.0%}",
        f"{row.pg_cores:.2f}" if row.pg_cores is not None else "",
        f"{row.rss_mb:.0f}",
    ]


# --------------------------------------------------------------------------- part 2: the storm


@dataclass
class StormFigures:
    result: StormResult
    xacts_per_s: float
    cpu_busy: float
    pg_cores: float | None
    rss: dict[str, float]


def storm(server: PgServer, directory: Path, args: Any) -> StormFigures:
    """tests/reliability/storm.py's storm through its topology, timed until drained."""
    services, alertnames, instances = args.storm
    plan = StormPlan(services, alertnames, instances, args.storm_max_new, seed=args.seed)
    url = server.create("storm")
    print(f"[storm] {plan.alerts:,} alerts: {services} services x {alertnames} x {instances}", flush=True)
    (directory / "storm").mkdir()
    with storm_topology(directory / "storm", plan, url) as topology:
        xacts, cpu, started = commits(topology.dsn), cpu_ticks(), time.monotonic()
        pg_before = server.cpu_seconds() if server.cpu_seconds else 0.0
        result = run_storm(
            topology, plan, timeout=args.storm_timeout, progress=lambda m: print(f"  {m}", flush=True)
        )
        busy = busy_share(cpu, cpu_ticks())
        pg = server.cpu_seconds() - pg_before if server.cpu_seconds else None
        xacts = commits(topology.dsn) - xacts
        rss = {"max gunicorn worker": max_gunicorn_rss(topology.replicas)}
        for n, worker in enumerate(topology.workers):
            rss[f"worker {n + 1}"] = ingest.rss_mb(worker.pid) or 0.0
    print(f"  {result.summary()}", flush=True)
    elapsed = time.monotonic() - started
    return StormFigures(result, xacts / elapsed, busy, pg / elapsed if pg is not None else None, rss)


def storm_rows(figures: StormFigures) -> tuple[list[list[str]], str]:
    """(what, measured, predicted or check) lines of the storm's outcome, and a line of RSS."""
    r, plan = figures.result, figures.result.plan
    ids = {int(x["id"]) for x in r.recoveries}
    one = sum(1 for i in ids if r.incidents_per_recovery.get(i) == 1)
    stray = len(set(r.incidents_per_recovery) - ids)
    wrong = sum(1 for n in r.per_service().values() if n != plan.recoveries_per_service)
    rss = ", ".join(f"{k} {v:.0f}" for k, v in figures.rss.items())
    return [
        ["alerts pushed to both Alertmanagers", f"{plan.alerts:,}", ""],
        ["webhook deliveries (both members, all attempts)", f"{r.webhook_deliveries:,.0f}", ""],
        ["push time", f"{r.push_seconds:.1f} s", ""],
        ["drain time (stored, placed, incidents linked, outbox empty)", f"{r.drain_seconds:.1f} s", ""],
        ["drain rate", f"{plan.alerts / r.drain_seconds:,.0f} alerts/s", ""],
        ["episodes stored / placed", f"{r.stored_episodes:,} / {r.placed_episodes:,}", f"{plan.alerts:,}"],
        ["recoveries", f"{len(r.recoveries):,}", f"predicted {plan.expected_recoveries:,}"],
        ["services with another count than predicted", str(wrong), "0"],
        ["storm parents", str(len(r.parents)), f"predicted {plan.services}"],
        ["storm episodes (metric)", f"{r.storm_episodes_metric:,.0f}", f"predicted {_absorbed(plan):,}"],
        ["ServiceNow incidents", f"{r.incidents_total:,}", f"one per recovery: {len(ids):,}"],
        ["recoveries with exactly one incident", f"{one:,} of {len(ids):,}", _verdict(one == len(ids))],
        ["incidents of no recovery", str(stray), _verdict(stray == 0)],
        ["PostgreSQL transactions/s while draining", f"{figures.xacts_per_s:,.0f}", ""],
        ["machine CPU busy while draining", f"{figures.cpu_busy:.0%}", ""],
        ["PostgreSQL CPU while draining (cores)", _cores(figures.pg_cores), ""],
    ], f"RSS MB at the end: {rss}"


def _absorbed(plan: StormPlan) -> int:
    return plan.services * plan.storm_episodes_per_parent


def _cores(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "n/a (--pg-url)"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# --------------------------------------------------------------------------- part 3: memory at size


@dataclass
class PageRow:
    what: str
    n: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    size_kb: float
    note: str = ""


@dataclass
class MemoryFigures:
    loaded: dict[str, tuple[int, float]]
    sizes_loaded: dict[str, int]
    sizes_after: dict[str, int]
    rss: dict[str, dict[str, float]]  # stage -> process -> MB
    pages: list[PageRow]
    webhook: list[PageRow]
    outbox: dict[str, int]
    notes: list[str] = field(default_factory=list)


def db_upgrade(config: Path, database_url: str) -> None:
    argv = [recoverlink_script(), "db", "upgrade", "--config", str(config)]
    done = subprocess.run(
        argv, env=recoverlink_env(database_url), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"recoverlink db upgrade failed:\n{done.stdout}\n{done.stderr}")


def bulk_load(dsn: str, args: Any) -> tuple[recoveries.DataSet, dict[str, tuple[int, float]]]:
    """bench/recoveries.py's synthetic year (correlation keys from the example enricher), by COPY."""
    from recoverlink.config.enrichment_loader import load_enrichment
    from recoverlink.config.loader import load_config

    example = recoveries.EXAMPLE_CONFIG
    loaded = load_enrichment(load_config(example), example.parent, str(example))
    rng = random.Random(args.seed)
    data = recoveries.build_dataset(rng, loaded.enricher, args.stored_recoveries, args.stored_alerts)
    return data, recoveries.load_postgresql(dsn, data)


def page_plan(data: recoveries.DataSet, rng: random.Random) -> list[tuple[str, Callable[[], str]]]:
    base = "/api/v1/recoveries"
    open_states = ",".join(recoveries.COLLECTING)
    count = len(data.recoveries)
    return [
        ("GET /api/v1/recoveries?limit=50", lambda: f"{base}?limit=50"),
        ("GET /api/v1/recoveries?state=<open>", lambda: f"{base}?limit=50&state={open_states}"),
        ("GET /api/v1/recoveries?team=<random>", lambda: f"{base}?limit=50&team={rng.choice(data.teams)}"),
        ("GET /api/v1/recoveries/<random id>", lambda: f"{base}/{rng.randint(1, count)}"),
        ("GET /board", lambda: "/board"),
        ("GET /board/cards", lambda: "/board/cards"),
        ("GET /status", lambda: "/status"),
        ("GET /metrics", lambda: "/metrics"),
    ]


def measure_page(session: requests.Session, base: str, what: str, path: Callable[[], str], n: int) -> PageRow:
    times, sizes, bad = [], [], 0
    for _ in range(n):
        started = time.perf_counter()
        answer = session.get(base + path(), timeout=120)
        times.append((time.perf_counter() - started) * 1000)
        sizes.append(len(answer.content))
        bad += answer.status_code != 200
    return PageRow(
        what,
        n,
        statistics.median(times),
        recoveries.percentile(times, 0.99),
        max(times),
        statistics.fmean(sizes) / 1024,
        f"{bad} non-200" if bad else "",
    )


def measure_pages(rl: Recoverlink, data: recoveries.DataSet, n: int, rng: random.Random) -> list[PageRow]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {rl.admin_token}"
    plan = page_plan(data, rng)
    for _, path in plan:  # warm-up: first queries, template compilation, plan caches
        session.get(rl.url + path(), timeout=120)
    return [measure_page(session, rl.url, what, path, n) for what, path in plan]


def webhook_load(rl: Recoverlink, bodies: dict[str, Path], seconds: int) -> list[PageRow]:
    """wrk at 8 connections, insert then duplicate, against the loaded database."""
    runs, rows = ingest.Runs(), []
    for path in LOAD_PATHS:
        done = runs.wrk(
            rl.url,
            path=path,
            body=bodies[path],
            token=WEBHOOK_TOKEN,
            connections=8,
            seconds=seconds,
            threads=1,
        )
        note = f"{done.ok / done.seconds:,.0f} notif/s" + (f", {done.non2xx} non-2xx" if done.non2xx else "")
        rows.append(
            PageRow(f"POST /webhook ({path}, 8 conc)", done.requests, done.p50_ms, done.p99_ms, 0, 0, note)
        )
    return rows


def outbox_states(dsn: str) -> dict[str, int]:
    """Outbox jobs by kind and state, and the alerts the worker marked stale: what it did meanwhile."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute("SELECT kind || ' ' || state, count(*) FROM outbox_jobs GROUP BY 1 ORDER BY 1")
        states = {str(k): int(v) for k, v in found.fetchall()}
        states["(alerts marked stale)"] = _one(conn, "SELECT count(*) FROM alerts WHERE stale_at IS NOT NULL")
    return states


def memory(server: PgServer, directory: Path, args: Any) -> MemoryFigures:
    """Bulk-load the history, then serve on it and watch RSS, latency and size."""
    url = server.create("memory")
    dsn, servicenow, rng = dsn_of(url), FakeServiceNow(), random.Random(args.seed + 11)
    bodies = ingest.write_bodies(directory)
    with servicenow.serve() as sn_url:
        config = example_config(directory / "memory", servicenow, sn_url)
        db_upgrade(config, url)
        started = time.monotonic()
        data, loaded = bulk_load(dsn, args)
        print(
            f"[memory] loaded {data.alert_count:,} alerts in {time.monotonic() - started:.0f} s", flush=True
        )
        sizes_loaded = database_sizes(dsn)
        with serving("memory-serve", config, database_url=url, migrate=False) as rl:
            time.sleep(5)  # the worker's first sweeps over the loaded store
            rss = {"after start (+5 s)": rss_snapshot(rl.process)}
            webhook = webhook_load(rl, bodies, args.memory_load_seconds)
            rss["after webhook load"] = rss_snapshot(rl.process)
            pages = measure_pages(rl, data, args.page_requests, rng)
            rss["after pages, round 1"] = rss_snapshot(rl.process)
            again = measure_pages(rl, data, args.page_requests, rng)
            rss["after pages, round 2"] = rss_snapshot(rl.process)
            for row in again:
                row.what += " (round 2)"
    return MemoryFigures(
        loaded, sizes_loaded, database_sizes(dsn), rss, pages + again, webhook, outbox_states(dsn)
    )


def memory_tables(m: MemoryFigures) -> list[str]:
    """RSS per process and stage; request latency at size; database size on disk."""
    stages = list(m.rss)
    processes = list(dict.fromkeys(p for stage in m.rss.values() for p in stage))
    rss_body = [[p, *(f"{m.rss[s].get(p, 0.0):.0f}" for s in stages)] for p in processes]
    rss = benchlib.render_table([("RSS MB", "<"), *((s, ">") for s in stages)], rss_body)
    latency = benchlib.render_table(
        [("request", "<"), ("n", ">"), ("p50 ms", ">"), ("p99 ms", ">"), ("max ms", ">"), ("KB", ">"),
         ("", "<")],
        [
            [r.what, str(r.n), f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}", f"{r.max_ms:.0f}" if r.max_ms else "",
             f"{r.size_kb:.1f}" if r.size_kb else "", r.note]
            for r in [*m.webhook, *m.pages]
        ],
    )  # fmt: skip
    sizes = benchlib.render_table(
        [("on disk MiB", "<"), ("after load", ">"), ("after the run", ">"), ("rows loaded", ">")],
        [
            [t, f"{m.sizes_loaded[t] / 2**20:,.0f}", f"{m.sizes_after[t] / 2**20:,.0f}",
             f"{m.loaded[t][0]:,}" if t in m.loaded else ""]
            for t in m.sizes_loaded
        ],
    )  # fmt: skip
    jobs = ", ".join(f"{k} {v:,}" for k, v in m.outbox.items()) or "none"
    return [rss, latency, sizes, f"outbox jobs at the end: {jobs}"]


# --------------------------------------------------------------------------- main


def missing_tools(parts: Sequence[str]) -> list[str]:
    missing = []
    if {"throughput", "memory"} & set(parts) and shutil.which("wrk") is None:
        missing.append("wrk (scripts/ensure-debian-packages wrk)")
    if "storm" in parts and not Path("/usr/bin/prometheus-alertmanager").exists():
        missing.append("prometheus-alertmanager (scripts/ensure-debian-packages prometheus-alertmanager)")
    return missing


def header(args: Any) -> str:
    now = datetime.now(UTC)
    s, a, i = args.storm
    return (
        f"recoverlink scale-out benchmark, {now:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}; parts {','.join(args.parts)}; "
        f"{args.warmup} s warm-up + {args.duration} s per throughput cell; storm {s}x{a}x{i}; "
        f"{args.stored_alerts:,} stored alerts / {args.stored_recoveries:,} recoveries\n"
        f"{ingest.describe_source()}"
    )


def run_parts(args: Any, tmp: Path) -> list[str]:
    """Each part in turn on one database server; the tables to print at the end."""
    out = []
    with contextlib.ExitStack() as stack:
        server = open_pg_server(args.pg_url, stack)
        print(server.describe, flush=True)
        out.append(f"database: {server.describe}")
        if "throughput" in args.parts:
            rows = throughput(server, tmp, args)
            table = benchlib.render_table(LOAD_COLUMNS, [load_cells(r) for r in rows])
            notes = [f"  ! {r.replicas} x {r.path} c={r.concurrency}: {n}" for r in rows for n in r.notes]
            out.append("\n".join(["webhook throughput (p50/p99: the worse replica's)", table, *notes]))
        if "storm" in args.parts:
            figures = storm(server, tmp, args)
            body, rss = storm_rows(figures)
            table = benchlib.render_table([("storm", "<"), ("measured", ">"), ("expected", "<")], body)
            out.append(f"{table}\n{rss}")
        if "memory" in args.parts:
            out.extend(memory_tables(memory(server, tmp, args)))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_tools(args.parts)
    if missing:
        print("missing: " + "; ".join(missing), file=sys.stderr)
        return 2
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the fake ServiceNow's request lines
    print(header(args), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="rl-bench-scale-"))
    try:
        tables = run_parts(args, tmp)
    except (pytest.fail.Exception, pytest.skip.Exception) as exc:  # the test helpers' way to give up
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("\n\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
