"""Webhook ingest benchmark: recoverlink under gunicorn against the floor of its own stack.

For each backend (SQLite, PostgreSQL) it starts recoverlink the way users do (`recoverlink serve
--config <temp config> --migrate`, the example config's workers and threads) and the floor app
(bench/floor_app.py: Flask + json.loads + a raw-driver upsert, under the same gunicorn settings),
then drives both from a separate process, wrk with bench/wrk/webhook.lua, on loopback:

- path `duplicate`: the same 3-alert group (tests/fixtures/alertmanager/firing_group.json) again
  and again, as Alertmanager re-sends a group on every group/repeat interval;
- path `insert`: the same group with 3 new fingerprints (and labels) per request, so every
  request is a new notification with 3 new alert episodes.

Each cell (backend x path x concurrency x app) gets a short warm-up, then a measured run; with
--repeat N, N of each, recoverlink and floor alternating. The table shows each cell's median run
(by notifications/s; the lower middle one for an even N) with the largest RSS and every error of
all its runs, and the range of notifications/s over the runs; a line per cell prints the spread of
notifications/s and p99. Concurrency is wrk's connection count: each connection has one request in
flight, so it is the number of requests in flight, never more.

Both apps run under the gunicorn settings of `recoverlink serve` (src/recoverlink/server.py): on a
TCP port every worker listens itself (SO_REUSEPORT) and the kernel spreads wrk's connections over
the workers. Before that, one shared socket let whichever worker woke first accept them, and all 8
connections of a run could land in one worker (3,087 requests against 2 measured): a lottery that
moved a cell by up to 2x between runs, for the floor too. The kernel's spread is a hash, so 6/2 or
7/1 still comes up in about 3 runs of 10. So once a measured run's connections are established,
the benchmark counts them per worker (from /proc), and a run whose busiest worker holds more than
a quarter over an even share (6 or more of 8 on 2 workers) is stopped and started again, at most
4 times, for both apps alike; the notes say so, and --any-spread keeps every run as it comes. The
"conns/worker" column shows the median run's spread. Warm-ups are never re-run.

It prints notifications/s, alerts/s, p50/p99 latency, the largest gunicorn worker RSS, the non-2xx
count and, for recoverlink, its throughput as a share of the floor's; then whether the targets hold
at concurrency 8 on SQLite (share >= 50 % on both paths, p99 < 25 ms, RSS < 150 MB per worker).

    .venv/bin/python bench/ingest.py [--duration 8] [--warmup 2] [--repeat 1] [--any-spread]
        [--backends sqlite,postgresql] [--paths duplicate,insert] [--concurrency 1,8,32]
        [--apps recoverlink,floor] [--pg-url postgresql://postgres@127.0.0.1:5432/test] [--keep]

PostgreSQL runs use a throw-away database (rl_bench_<random>) created through --pg-url and dropped
at the end. Needs `wrk` (Debian package) on PATH.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import math
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

import benchlib
from benchlib import throwaway_postgres
from recoverlink.server import spreads_connections

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
FIXTURE = ROOT / "tests" / "fixtures" / "alertmanager" / "firing_group.json"
EXAMPLE_CONFIG = ROOT / "deploy" / "recoverlink.yaml"
LUA = BENCH / "wrk" / "webhook.lua"
WEBHOOK = "/webhook/alertmanager"

APPS = ("recoverlink", "floor")
BACKENDS = ("sqlite", "postgresql")
PATHS = ("duplicate", "insert")

# Targets from the issue, checked at concurrency 8 on SQLite.
TARGET_CONCURRENCY = 8
TARGET_SHARE = 0.5
TARGET_P99_MS = 25.0
TARGET_RSS_MB = 150.0


def _csv(choices: tuple[str, ...] | None = None, kind: type = str) -> Any:
    def parse(text: str) -> list[Any]:
        values = [kind(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError("give at least one value")
        bad = [v for v in values if choices is not None and v not in choices]
        allowed = ", ".join(choices or ())
        if bad:
            raise argparse.ArgumentTypeError(f"unknown value(s) {bad}; choose from {allowed}")
        return values

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # wrk takes whole seconds.
    parser.add_argument("--duration", type=int, default=8, help="measured seconds per run (default 8)")
    parser.add_argument(
        "--warmup", type=int, default=2, help="warm-up seconds per cell, 0 for none (default 2)"
    )
    parser.add_argument("--backends", type=_csv(BACKENDS), default=list(BACKENDS))
    parser.add_argument("--paths", type=_csv(PATHS), default=list(PATHS))
    parser.add_argument("--concurrency", type=_csv(kind=int), default=[1, 8, 32])
    parser.add_argument("--apps", type=_csv(APPS), default=list(APPS))
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per cell; the table shows their median (default 1)"
    )
    parser.add_argument(
        "--any-spread",
        action="store_true",
        help="keep every run however the kernel spread its connections over the workers "
        "(default: a run with more than 5 of 8 on one worker is started again, up to 4 times)",
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (at most the concurrency)")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("RECOVERLINK_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="an existing PostgreSQL database to connect to for CREATE/DROP DATABASE",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, SQLite files)")
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="serve without the outbox worker beside gunicorn (make run starts one)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    if any(c < 1 for c in args.concurrency):
        parser.error("--concurrency values must be at least 1")
    if args.duration < 1 or args.warmup < 0 or args.repeat < 1:
        parser.error("--duration and --repeat must be at least 1, --warmup at least 0")
    return args


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def children_of(pid: int) -> list[int]:
    """Direct children of `pid` (the gunicorn workers of a master), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: fields start after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return sorted(found)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process `pid` holds open."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:
        return set()
    return inodes


ESTABLISHED, LISTEN = "01", "0A"  # TCP states as /proc/net/tcp writes them


def _tcp_inodes(port: int, state: str) -> set[str]:
    """Inodes of the TCP sockets in `state` whose local port is `port` (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                # local_address is HEXADDR:HEXPORT, then rem_address, st; field 9 is the inode.
                if fields[3] == state and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    found.add(fields[9])
    return found


@dataclass
class Server:
    """A gunicorn master we started, its log, and how to reach it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def listen(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.listen}"

    def start(self, ready_timeout: float = 60.0) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        deadline = time.monotonic() + ready_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/-/ready")
                answer = conn.getresponse()
                last = f"{answer.status} {answer.read(300)!r}"
                if answer.status == 200:
                    return
            except OSError as exc:
                last = repr(exc)
            finally:
                conn.close()
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"{self.name} not ready after {ready_timeout:.0f} s (last answer: {last}):\n{self.log_tail()}"
        )

    def worker_pids(self) -> list[int]:
        return children_of(self.process.pid) if self.process else []

    def connections_per_worker(self) -> list[int]:
        """How many established client connections each gunicorn worker holds, most first. The
        workers are the children holding a listening socket of the port (not the outbox worker)."""
        listening, established = _tcp_inodes(self.port, LISTEN), _tcp_inodes(self.port, ESTABLISHED)
        sockets = [_socket_inodes(pid) for pid in self.worker_pids()]
        held = [len(inodes & established) for inodes in sockets if inodes & listening]
        return sorted(held, reverse=True)

    def max_worker_rss_mb(self) -> float:
        return max((rss_mb(pid) or 0.0 for pid in self.worker_pids()), default=0.0)

    def stop(self) -> None:
        """SIGTERM to the master we started (gunicorn stops its workers), SIGKILL after 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def logged_errors(self) -> int:
        """Error-level lines in the server log (JSON lines for recoverlink, gunicorn text for the floor)."""
        count = 0
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                count += "[ERROR]" in line or "[CRITICAL]" in line or line.startswith("Traceback")
                continue
            count += isinstance(entry, dict) and entry.get("level") in ("error", "critical")
        return count


# --------------------------------------------------------------------------- databases


@dataclass
class Database:
    """Where one backend's runs store their data: URLs for recoverlink and for the floor's raw driver."""

    backend: str
    recoverlink_url: str | None  # None: the SQLite path of the config
    floor_dsn: str
    count_dsn: dict[str, str]  # app -> what count_rows connects to


@contextlib.contextmanager
def database(backend: str, tmp: Path, pg_url: str) -> Iterator[Database]:
    if backend == "sqlite":
        yield Database(
            backend,
            recoverlink_url=None,
            floor_dsn=str(tmp / "floor.db"),
            count_dsn={"recoverlink": str(tmp / "recoverlink.db"), "floor": str(tmp / "floor.db")},
        )
        return
    with throwaway_postgres(pg_url) as pg:
        yield Database(
            backend,
            recoverlink_url=pg.sqlalchemy_url,
            floor_dsn=pg.dsn,
            count_dsn={"recoverlink": pg.dsn, "floor": pg.dsn},
        )


COUNT_SQL = {"recoverlink": "SELECT count(*) FROM alerts", "floor": "SELECT count(*) FROM floor_alerts"}


def count_rows(db: Database, app: str) -> int:
    sql = COUNT_SQL[app]
    if db.backend == "sqlite":
        with contextlib.closing(sqlite3.connect(db.count_dsn[app], timeout=30)) as conn:
            return int(conn.execute(sql).fetchone()[0])
    import psycopg

    with psycopg.connect(db.count_dsn[app]) as conn:
        row = conn.execute(sql).fetchone()
        return int(row[0]) if row else 0


# --------------------------------------------------------------------------- the two apps


# Keys of the example config whose values are paths (relative to the config file's directory):
# what the service writes goes to the temp dir, what it reads (catalog, rules) stays where it is.
STATE_PATH_KEYS = frozenset({"file", "sqlite_path", "metrics_dir"})
INPUT_PATH_KEYS = frozenset({"files", "backstage", "tests", "path", "paths", "dir"})


def _absolutize(node: Any, tmp: Path, key: str | None = None) -> Any:
    """Point the state files of the example config into `tmp` and its inputs at absolute paths."""
    if isinstance(node, dict):
        return {k: _absolutize(v, tmp, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_absolutize(v, tmp, key) for v in node]
    if isinstance(node, str) and key in STATE_PATH_KEYS:
        return str(tmp / Path(node).name)
    if isinstance(node, str) and key in INPUT_PATH_KEYS and not Path(node).is_absolute():
        return str(EXAMPLE_CONFIG.parent.resolve() / node)
    return node


def recoverlink_config(tmp: Path, listen: str) -> tuple[Path, dict[str, Any]]:
    """A config modelled on deploy/recoverlink.yaml with absolute paths in `tmp`."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    config = _absolutize(yaml.load(EXAMPLE_CONFIG.read_text()), tmp)
    config.setdefault("server", {})["listen"] = listen
    path = tmp / "recoverlink.yaml"
    with path.open("w") as out:
        yaml.dump(config, out)
    return path, config


def start_recoverlink(db: Database, tmp: Path, no_worker: bool = False) -> tuple[Server, str, dict[str, Any]]:
    """`recoverlink serve --config ... --migrate --listen ...`, as users start it; also returns the token."""
    port = free_port()
    listen = f"127.0.0.1:{port}"
    config_path, config = recoverlink_config(tmp, listen)
    env = dict(os.environ)
    env.pop("RECOVERLINK_CONFIG", None)
    env.pop("RECOVERLINK_LISTEN", None)
    env.pop("RECOVERLINK_DATABASE_URL", None)
    if db.recoverlink_url is not None:
        env["RECOVERLINK_DATABASE_URL"] = db.recoverlink_url
    argv = [str(BIN / "recoverlink"), "serve", "--config", str(config_path), "--migrate", "--listen", listen]
    if no_worker:
        argv.append("--no-worker")
    server = Server("recoverlink", argv, env, port, tmp / "recoverlink.log")
    server.start()
    token = Path(config["webhook"]["auth"]["bearer"]["file"]).read_text().strip()
    return server, token, config


def start_floor(db: Database, tmp: Path, token: str, workers: int, threads: int) -> Server:
    """bench/floor_app.py under gunicorn with the settings recoverlink's server.py gives it."""
    sys.path.insert(0, str(BENCH))
    try:
        import floor_app
    finally:
        sys.path.remove(str(BENCH))
    floor_app.create_table(db.backend, db.floor_dsn)
    port = free_port()
    listen = f"127.0.0.1:{port}"
    # The listening setup `recoverlink serve` picks for the same address (server.gunicorn_options).
    spread = ["--reuse-port"] if spreads_connections(listen, os.environ) else []
    argv = [
        str(BIN / "gunicorn"),
        "--bind",
        listen,
        *spread,
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread" if threads > 1 else "sync",
        "--timeout",
        "30",
        "--graceful-timeout",
        "10",
        "--error-logfile",
        "-",
        "--log-level",
        "info",
        "--no-control-socket",
        "--pythonpath",
        str(BENCH),
        "floor_app:create_app()",
    ]
    env = dict(os.environ, FLOOR_BACKEND=db.backend, FLOOR_DSN=db.floor_dsn, FLOOR_TOKEN=token)
    server = Server("floor", argv, env, port, tmp / "floor.log")
    server.start()
    return server


# --------------------------------------------------------------------------- load


def write_bodies(tmp: Path) -> dict[str, Path]:
    """The duplicate body (compact JSON + newline, as Alertmanager sends it) and the insert template."""
    document = json.loads(FIXTURE.read_text())
    duplicate = tmp / "duplicate.json"
    duplicate.write_text(json.dumps(document, separators=(",", ":")) + "\n")
    for index, alert in enumerate(document["alerts"]):
        # A new label set has a new fingerprint: vary one label with the fingerprint.
        alert["fingerprint"] = f"@FP{index}@"
        alert["labels"]["instance"] = f"payments-api-@FP{index}@:8080"
    insert = tmp / "insert.json"
    insert.write_text(json.dumps(document, separators=(",", ":")) + "\n")
    return {"duplicate": duplicate, "insert": insert}


@dataclass
class WrkResult:
    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]
    output: str
    connections: list[int] = field(default_factory=list)  # per worker, once all were established
    discarded: list[WrkResult] = field(default_factory=list)  # runs stopped for an uneven spread

    @property
    def ok(self) -> int:
        return self.requests - self.non2xx


# A run whose busiest worker holds more than this much over an even share of the connections is
# started again (5 of 8 on 2 workers passes, 6 does not), at most RESPREAD_ATTEMPTS times.
SPREAD_TOLERANCE = 1.25
RESPREAD_ATTEMPTS = 4
CONNECT_TIMEOUT_SECONDS = 3.0


def is_spread_evenly(split: list[int], connections: int) -> bool:
    """Whether no worker holds more than SPREAD_TOLERANCE times its even share (unknown: yes)."""
    if not split:
        return True
    fair = math.ceil(connections / len(split))
    return split[0] <= math.ceil(fair * SPREAD_TOLERANCE)


def wait_for_connections(sample: Callable[[], list[int]], connections: int) -> list[int]:
    """The split once all `connections` are established (or what it is after a few seconds)."""
    deadline = time.monotonic() + CONNECT_TIMEOUT_SECONDS
    split = sample()
    while sum(split) < connections and time.monotonic() < deadline:
        time.sleep(0.05)
        split = sample()
    return split


@dataclass
class Load:
    """What one wrk run sends: the path's mode and body, the token, connections and wrk threads."""

    path: str
    body: Path
    token: str
    connections: int
    threads: int


class Runs:
    """Numbers wrk runs (the Lua script makes fingerprints unique per run number)."""

    def __init__(self, respread: bool = True) -> None:
        self.number = 0
        self.respread = respread

    def wrk(
        self, url: str, load: Load, seconds: int, spread: Callable[[], list[int]] | None = None
    ) -> WrkResult:
        """One wrk run. With `spread` (connections per worker), a run the kernel spread unevenly
        over the workers is stopped at once and started again, up to RESPREAD_ATTEMPTS times."""
        discarded: list[WrkResult] = []
        while True:
            wrk = self._start(url, load, seconds)
            split = wait_for_connections(spread, load.connections) if spread is not None else []
            final = not self.respread or len(discarded) >= RESPREAD_ATTEMPTS
            if final or is_spread_evenly(split, load.connections):
                result = self._finish(wrk, seconds + 60)
                return dataclasses.replace(result, connections=split, discarded=discarded)
            wrk.send_signal(signal.SIGINT)  # wrk stops and still reports what it did
            discarded.append(dataclasses.replace(self._finish(wrk, 30), connections=split))

    def _start(self, url: str, load: Load, seconds: int) -> subprocess.Popen[str]:
        self.number += 1
        argv = [
            "wrk",
            "-t",
            str(max(1, min(load.threads, load.connections))),
            "-c",
            str(load.connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(LUA),
            url + WEBHOOK,
            "--",
            load.path,
            str(load.body),
            load.token,
            str(self.number % 4096),
        ]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    @staticmethod
    def _finish(wrk: subprocess.Popen[str], timeout_seconds: float) -> WrkResult:
        stdout, stderr = wrk.communicate(timeout=timeout_seconds)
        line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
        if wrk.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({wrk.returncode}):\n{stdout}\n{stderr}")
        data = json.loads(line.removeprefix("BENCH_RESULT "))
        errors = data["errors"]
        return WrkResult(
            requests=data["requests"],
            seconds=data["duration_us"] / 1e6,
            non2xx=data["non2xx"],
            socket_errors=sum(errors.values()),
            p50_ms=data["latency_us"]["p50"] / 1000,
            p99_ms=data["latency_us"]["p99"] / 1000,
            statuses=data["statuses"],
            output=stdout,
        )


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    backend: str
    app: str
    path: str
    concurrency: int
    notifications_per_s: float
    alerts_per_s: float
    p50_ms: float
    p99_ms: float
    rss_mb: float
    non2xx: int
    socket_errors: int
    share: float | None = None
    notes: list[str] = field(default_factory=list)
    worker_connections: list[int] = field(default_factory=list)  # per worker, halfway through
    runs_per_s: list[float] = field(default_factory=list)  # notifications/s of every run of the cell


def median_run(rows: list[Row]) -> Row:
    """The run of a cell with the median notifications/s (the lower middle one of an even count),
    with the largest RSS, every error and note of all runs, and every run's rate."""
    middle = sorted(rows, key=lambda r: r.notifications_per_s)[(len(rows) - 1) // 2]
    return dataclasses.replace(
        middle,
        rss_mb=max(r.rss_mb for r in rows),
        non2xx=sum(r.non2xx for r in rows),
        socket_errors=sum(r.socket_errors for r in rows),
        notes=[note for r in rows for note in r.notes],
        runs_per_s=[r.notifications_per_s for r in rows],
    )


def spread_line(rows: list[Row]) -> str:
    """How far the runs of one cell are apart: notifications/s and p99, lowest to highest."""
    rates = [r.notifications_per_s for r in rows]
    p99s = [r.p99_ms for r in rows]
    low, high = min(rates), max(rates)
    return (
        f"{len(rows)} runs: notif/s {low:,.0f}-{high:,.0f} (median {statistics.median(rates):,.0f}, "
        f"range {(high - low) / high if high else 0:.0%} of the highest), "
        f"p99 {min(p99s):.1f}-{max(p99s):.1f} ms"
    )


def split_text(connections: list[int]) -> str:
    return "/".join(str(n) for n in connections)


COLUMNS = (
    ("backend", "<"),
    ("app", "<"),
    ("path", "<"),
    ("conc", ">"),
    ("notif/s", ">"),
    ("alerts/s", ">"),
    ("p50 ms", ">"),
    ("p99 ms", ">"),
    ("max worker RSS MB", ">"),
    ("non-2xx", ">"),
    ("sock err", ">"),
    ("conns/worker", ">"),
    ("runs notif/s", ">"),
    ("share of floor", ">"),
)


def _cells(row: Row) -> list[str]:
    return [
        row.backend,
        row.app,
        row.path,
        str(row.concurrency),
        f"{row.notifications_per_s:,.0f}",
        f"{row.alerts_per_s:,.0f}",
        f"{row.p50_ms:.2f}",
        f"{row.p99_ms:.2f}",
        f"{row.rss_mb:.1f}",
        str(row.non2xx),
        str(row.socket_errors),
        split_text(row.worker_connections),
        _range_text(row.runs_per_s),
        f"{row.share:.0%}" if row.share is not None else "",
    ]


def _range_text(rates: list[float]) -> str:
    return f"{min(rates):,.0f}-{max(rates):,.0f}" if len(rates) > 1 else ""


def render_table(rows: list[Row]) -> str:
    return benchlib.render_table(COLUMNS, [_cells(r) for r in rows])


def check_targets(rows: list[Row]) -> tuple[bool | None, list[str]]:
    """The issue's targets at concurrency 8 on SQLite; None when those cells were not measured."""
    lines = []
    verdicts = []
    for path in PATHS:
        cell = {
            r.app: r
            for r in rows
            if r.backend == "sqlite" and r.path == path and r.concurrency == TARGET_CONCURRENCY
        }
        rl = cell.get("recoverlink")
        if rl is None or rl.share is None:
            lines.append(f"  {path:<9} not measured (needs recoverlink and floor, sqlite, concurrency 8)")
            continue
        checks = [
            (f"share of floor {rl.share:.0%} >= {TARGET_SHARE:.0%}", rl.share >= TARGET_SHARE),
            (f"p99 {rl.p99_ms:.1f} ms < {TARGET_P99_MS:.0f} ms", rl.p99_ms < TARGET_P99_MS),
            (f"worker RSS {rl.rss_mb:.0f} MB < {TARGET_RSS_MB:.0f} MB", rl.rss_mb < TARGET_RSS_MB),
            (
                f"no errors ({rl.non2xx} non-2xx, {rl.socket_errors} socket)",
                rl.non2xx + rl.socket_errors == 0,
            ),
        ]
        for text, ok in checks:
            lines.append(f"  {path:<9} {'PASS' if ok else 'FAIL'}  {text}")
            verdicts.append(ok)
    return (all(verdicts) if verdicts else None), lines


# --------------------------------------------------------------------------- main


def describe_source() -> str:
    """Which recoverlink code the servers run: the package path and, in a git checkout, the revision."""
    found = subprocess.run(
        [str(BIN / "python"), "-c", "import recoverlink; print(recoverlink.__file__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    where = str(Path(found.stdout.strip()).parent) if found.returncode == 0 else "not importable"
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    if head.returncode != 0:
        return f"recoverlink from {where} (not a git checkout)"
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True, check=False
    ).stdout.strip()
    state = " + uncommitted src changes" if dirty else ""
    return f"recoverlink from {where}, {ROOT} at {head.stdout.strip()}{state}"


@dataclass
class Cell:
    """What one (path, concurrency) of a backend runs against: the servers, the database, the body."""

    servers: dict[str, Server]
    db: Database
    token: str
    path: str
    body: Path
    conc: int


def run_cell(runs: Runs, server: Server, cell: Cell, app: str, args: Any) -> Row:
    """Warm up, then one measured run of `app` (re-started while its connections are uneven)."""
    before = count_rows(cell.db, app)
    load = Load(cell.path, cell.body, cell.token, cell.conc, args.wrk_threads)
    notes = []
    warm = runs.wrk(server.base_url, load, args.warmup) if args.warmup > 0 else None
    if warm is not None and (warm.non2xx or warm.socket_errors):
        notes.append(f"warm-up: {warm.non2xx} non-2xx {warm.statuses}, {warm.socket_errors} socket errors")
    result = runs.wrk(server.base_url, load, args.duration, spread=server.connections_per_worker)
    rss = server.max_worker_rss_mb()
    if result.discarded:
        splits = ", ".join(split_text(d.connections) for d in result.discarded)
        notes.append(f"started again after uneven connection spreads: {splits}")
    if cell.path == "insert":
        notes.extend(insert_check(cell, count_rows(cell.db, app) - before, [warm, *result.discarded, result]))
    if result.non2xx:
        notes.append(f"statuses: {result.statuses}")
    rate = result.ok / result.seconds
    return Row(
        backend=cell.db.backend,
        app=app,
        path=cell.path,
        concurrency=cell.conc,
        notifications_per_s=rate,
        alerts_per_s=3 * rate,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        rss_mb=rss,
        non2xx=result.non2xx,
        socket_errors=result.socket_errors,
        notes=notes,
        worker_connections=result.connections,
    )


def insert_check(cell: Cell, added: int, results: list[WrkResult | None]) -> list[str]:
    """Every 2xx must have stored 3 new episodes (requests in flight when a wrk run stops may add more)."""
    done = [r for r in results if r is not None]
    ok = sum(r.ok for r in done)
    if 3 * ok <= added <= 3 * (ok + len(done) * cell.conc):
        return []
    return [f"insert check: {added} new rows for {ok} accepted requests (expected 3 each)"]


def run_line(row: Row) -> str:
    """One run as the benchmark goes: rate, latencies, RSS, errors, and how connections spread."""
    return (
        f"  {row.backend:<10} {row.app:<11} {row.path:<9} c={row.concurrency:<3} "
        f"{row.notifications_per_s:8,.0f} notif/s  p50 {row.p50_ms:6.2f} ms  "
        f"p99 {row.p99_ms:6.2f} ms  rss {row.rss_mb:5.1f} MB  non-2xx {row.non2xx}  "
        f"conns/worker {split_text(row.worker_connections) or '-'}"
        + "".join(f"\n      ! {note}" for note in row.notes)
    )


def run_repeats(runs: Runs, cell: Cell, args: Any) -> list[Row]:
    """Every app of `args.apps` `args.repeat` times, alternating (so drift on the machine hits both
    alike); one median row per app, after a line with the spread of its runs."""
    repeats: dict[str, list[Row]] = {app: [] for app in args.apps}
    for _ in range(args.repeat):
        for app in args.apps:
            row = run_cell(runs, cell.servers[app], cell, app, args)
            repeats[app].append(row)
            print(run_line(row), flush=True)
    if args.repeat > 1:
        for app, rows in repeats.items():
            print(f"  {'':<10} {app:<11} {cell.path:<9} c={cell.conc:<3} {spread_line(rows)}", flush=True)
    return [median_run(rows) for rows in repeats.values()]


def run_backend(backend: str, tmp_root: Path, args: Any, runs: Runs, bodies: dict[str, Path]) -> list[Row]:
    tmp = tmp_root / backend
    tmp.mkdir()
    rows: list[Row] = []
    servers: dict[str, Server] = {}
    with database(backend, tmp, args.pg_url) as db:
        try:
            # recoverlink is started first in any case: its generated webhook token serves both apps,
            # and its config gives the worker and thread counts the floor runs with.
            rl, token, config = start_recoverlink(db, tmp, no_worker=args.no_worker)
            servers["recoverlink"] = rl
            workers = int(config.get("server", {}).get("workers", 2))
            threads = int(config.get("server", {}).get("threads", 4))
            if "floor" in args.apps:
                servers["floor"] = start_floor(db, tmp, token, workers, threads)
            listening = (
                "a socket per worker (SO_REUSEPORT)"
                if spreads_connections(rl.listen, os.environ)
                else "one shared socket"
            )
            print(
                f"[{backend}] gunicorn {workers} workers x {threads} threads, {listening}; "
                f"recoverlink on {rl.base_url}"
                + (f", floor on {servers['floor'].base_url}" if "floor" in servers else ""),
                flush=True,
            )
            for path in args.paths:
                for conc in args.concurrency:
                    rows.extend(run_repeats(runs, Cell(servers, db, token, path, bodies[path], conc), args))
        finally:
            for server in servers.values():
                server.stop()
        for name, server in servers.items():
            errors = server.logged_errors()
            if errors:
                print(f"  ! {name} ({backend}) logged {errors} error lines: {server.log_path}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk (make bench-ingest does it)", file=sys.stderr)
        return 2
    if "recoverlink" not in args.apps:
        print("note: recoverlink is started anyway (its token and config serve the floor too)")
    started = datetime.now(UTC)
    tmp_root = Path(tempfile.mkdtemp(prefix="rl-bench-"))
    runs = Runs(respread=not args.any_spread)
    rows: list[Row] = []
    print(
        f"recoverlink ingest benchmark, {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}; "
        f"{args.warmup} s warm-up + {args.duration} s per run, {args.repeat} run(s) per cell; "
        f"temp dir {tmp_root}",
        flush=True,
    )
    print(describe_source(), flush=True)
    try:
        bodies = write_bodies(tmp_root)
        for backend in args.backends:
            rows.extend(run_backend(backend, tmp_root, args, runs, bodies))
    finally:
        if args.keep:
            print(f"kept {tmp_root}")
        else:
            shutil.rmtree(tmp_root, ignore_errors=True)

    floors = {(r.backend, r.path, r.concurrency): r for r in rows if r.app == "floor"}
    for row in rows:
        floor = floors.get((row.backend, row.path, row.concurrency))
        if row.app == "recoverlink" and floor is not None and floor.notifications_per_s > 0:
            row.share = row.notifications_per_s / floor.notifications_per_s
    rows = [r for r in rows if r.app in args.apps]
    rows.sort(
        key=lambda r: (
            BACKENDS.index(r.backend),
            PATHS.index(r.path),
            r.concurrency,
            APPS.index(r.app),
        )
    )
    print()
    print(render_table(rows))
    met, lines = check_targets(rows)
    print()
    verdict = {True: "MET", False: "NOT MET", None: "not checked"}[met]
    print(f"targets at concurrency {TARGET_CONCURRENCY} on SQLite (recoverlink): {verdict}")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2) + "\n")
    failed = any(r.non2xx or r.socket_errors for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
