"""Recoveries at scale: list and detail latency through the API, and correlation cost per alert.

The spec: with 100,000 stored recoveries and 1,000,000 alerts, list page p99 and detail p99 under
50 ms, correlation under 2 ms per incoming alert, on SQLite and PostgreSQL. Correlation's target
is checked as a cost per alert: the mean of the correlation step over the mix of joins and
openings (--join-share); its p99 per kind is printed beside it.

For each backend it migrates a fresh database (a temp SQLite file, or a throw-away PostgreSQL
database rl_bench_<random> created through --pg-url and dropped at the end) and bulk-loads a
synthetic history with the raw driver (sqlite3 executemany; psycopg COPY with triggers off):

- one notification per recovery (the alerts' first_notification_id);
- --recoveries recoveries over a year, ~200 services and 30 teams, states spread over the state
  model (the newest ~4 % still open or fixed, the rest mostly closed), milestones and counters
  consistent with the state, some linked to an earlier recovery of the same key, a few storms;
- --alerts alert episodes, each attached to one recovery in recovery_alerts (10 per recovery on
  average, Pareto-skewed: most have a few, some hundreds), with realistic labels and the
  enrichment JSON of the example config's payments-api alert as the template;
- 3 to 6 audit events per recovery (opened, owner known, correlation, each transition).

Correlation keys come from the example enricher itself (deploy/recoverlink.yaml), so incoming
alerts of a stored open recovery's service and alertname really join it. PostgreSQL gets VACUUM
ANALYZE after the load (what autovacuum does to a table that size); SQLite gets no ANALYZE (the
app does not run one) unless --sqlite-analyze.

Measured through the real Flask app (create_app, a viewer token, the Flask test client, so auth,
query parsing, the queries and JSON rendering all count): list pages (first page; state=closed;
the open states; a team; a service; deep pages by following next_cursor) and detail of random
recoveries; --requests each after --warmup. Then ingest_webhook on new one-alert deliveries
(new fingerprints; --join-share of them joining a stored open recovery, the rest opening a new
one), with the correlation step (track_recoveries) timed on its own, and the duplicate path
(the same deliveries again) for comparison.

    .venv/bin/python bench/recoveries.py [--recoveries 100000] [--alerts 1000000]
        [--backends sqlite,postgresql] [--requests 300] [--warmup 30] [--deliveries 400]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test] [--keep] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import benchlib
from benchlib import throwaway_postgres

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
EXAMPLE_CONFIG = ROOT / "deploy" / "recoverlink.yaml"
BACKENDS = ("sqlite", "postgresql")

TARGET_LIST_P99_MS = 50.0
TARGET_DETAIL_P99_MS = 50.0
TARGET_CORRELATION_MS = 2.0

# The synthetic history ends here; the app's clock and the ingest clock start here.
BASE_NOW = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
HISTORY = timedelta(days=365)

COLLECTING = ("opened", "impact_confirmed", "workaround_available", "fix_in_progress")
# State weights: the newest recoveries (RECENT_SHARE of them) are mostly still open; older ones done.
RECENT_SHARE = 0.04
RECENT_STATES = {
    "opened": 30,
    "impact_confirmed": 15,
    "workaround_available": 10,
    "fix_in_progress": 20,
    "fix_deployed": 15,
    "closed": 8,
    "canceled": 2,
}
OLD_STATES = {"closed": 78, "postmortem_complete": 12, "fix_deployed": 3, "canceled": 7}
# The transitions (event, from, to) each state went through after `opened`.
PATHS: dict[str, list[tuple[str, str, str]]] = {
    "opened": [],
    "impact_confirmed": [("impact_confirmed", "opened", "impact_confirmed")],
    "workaround_available": [
        ("impact_confirmed", "opened", "impact_confirmed"),
        ("workaround_published", "impact_confirmed", "workaround_available"),
    ],
    "fix_in_progress": [
        ("impact_confirmed", "opened", "impact_confirmed"),
        ("fix_started", "impact_confirmed", "fix_in_progress"),
    ],
    "fix_deployed": [("alerts_resolved", "opened", "fix_deployed")],
    "closed": [("alerts_resolved", "opened", "fix_deployed"), ("incident_closed", "fix_deployed", "closed")],
    "postmortem_complete": [
        ("alerts_resolved", "opened", "fix_deployed"),
        ("incident_closed", "fix_deployed", "closed"),
        ("postmortem_completed", "closed", "postmortem_complete"),
    ],
    "canceled": [("canceled", "opened", "canceled")],
}
MILESTONE_OF = {
    "impact_confirmed": "impact_identified",
    "workaround_available": "workaround_published",
    "fix_deployed": "fix_deployed",
    "closed": "closed",
    "postmortem_complete": "postmortem_complete",
}

DOMAINS = (
    "payments", "orders", "cart", "search", "catalog", "inventory", "shipping", "pricing", "identity",
    "accounts", "billing", "invoices", "crm", "contact-center", "notifications", "email", "sms",
    "loyalty", "reviews", "recommendations", "media", "cdn", "gateway", "auth", "sessions", "profile",
    "ledger", "fraud", "risk", "reporting", "analytics", "export", "import", "scheduler", "audit",
    "documents", "partners", "warehouse", "returns", "support",
)  # fmt: skip
KINDS = ("api", "worker", "db", "web", "queue")
ALERTNAMES = (
    "HighErrorRate", "HighLatency", "InstanceDown", "PodCrashLooping", "DiskFull", "HighMemory",
    "HighCPU", "QueueBacklog", "CertificateExpiring", "ReplicationLag", "ConnectionPoolExhausted",
    "Http5xxBurst", "SLOBurnRateFast", "SLOBurnRateSlow", "DeploymentFailed", "ProbeFailed",
    "TooManyRestarts", "GCPauseLong", "ThreadPoolSaturated", "CacheMissRate", "DNSFailures",
    "UpstreamTimeouts", "RateLimited", "JobFailed", "BackupMissing", "LockContention",
    "ConsumerLag", "NodeNotReady", "VolumeDegraded", "TLSHandshakeErrors",
)  # fmt: skip
SEVERITIES = ("critical", "major", "warning", "minor")
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
CATALOG_TEAMS = ("payments", "crm", "contact-center", "billing", "sre", "cx-operations", "identity")


def _csv(choices: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        values = [part.strip() for part in text.split(",") if part.strip()]
        bad = [v for v in values if v not in choices]
        if not values or bad:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        return values

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--recoveries", type=int, default=100_000, help="stored recoveries (default 100000)")
    parser.add_argument("--alerts", type=int, default=1_000_000, help="stored alerts (default 1000000)")
    parser.add_argument("--backends", type=_csv(BACKENDS), default=list(BACKENDS))
    parser.add_argument("--requests", type=int, default=300, help="measured requests per kind (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="warm-up requests per kind (default 30)")
    parser.add_argument(
        "--deliveries", type=int, default=400, help="measured new one-alert deliveries (default 400)"
    )
    parser.add_argument(
        "--join-share", type=float, default=0.7, help="share of new alerts joining an open recovery"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sqlite-analyze", action="store_true", help="run ANALYZE on SQLite after the load")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("RECOVERLINK_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="an existing PostgreSQL database to connect to for CREATE/DROP DATABASE",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (and the SQLite file)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    if args.recoveries < 10 or args.alerts < args.recoveries:
        parser.error("--recoveries must be at least 10 and --alerts at least --recoveries")
    if args.requests < 1 or args.warmup < 0 or args.deliveries < 10 or not 0 <= args.join_share <= 1:
        parser.error("--requests >= 1, --warmup >= 0, --deliveries >= 10, 0 <= --join-share <= 1")
    return args


# --------------------------------------------------------------------------- the data set


def _ts(value: datetime) -> str:
    """Naive UTC as SQLAlchemy's SQLite DateTime stores it (PostgreSQL parses it too)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def fingerprint(n: int) -> str:
    """Distinct 16-hex-digit fingerprints (multiplying by an odd constant is a bijection mod 2**64)."""
    return f"{(n * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF:016x}"


def group_key(alertname: str, service: str) -> str:
    return f'{{}}:{{alertname="{alertname}", service="{service}"}}'


@dataclass(frozen=True)
class Pair:
    """A (service, alertname): the recoveries of one kind of failure share its correlation key."""

    service: str
    alertname: str
    team: str
    severity: str
    priority: str
    key: str
    enrichment_json: str
    annotations_json: str
    generator_url: str


@dataclass
class Recovery:
    id: int
    pair: Pair
    state: str
    opened_at: datetime
    alerts: int
    storm: bool
    linked_to: int | None
    first_alert_id: int = 0


@dataclass
class DataSet:
    pairs: list[Pair]
    recoveries: list[Recovery]
    services: list[str]
    teams: list[str]
    open_pairs: list[Pair]  # pairs whose key an open recovery holds (an incoming alert joins it)
    ruleset_version: str

    @property
    def alert_count(self) -> int:
        return sum(r.alerts for r in self.recoveries)


def build_pairs(rng: random.Random, enricher: Any) -> tuple[list[Pair], list[str], list[str], str]:
    from recoverlink.domain.enrichment import AlertFacts, enrichment_record

    services = [f"{d}-{k}" for d in DOMAINS for k in KINDS]
    teams = list(CATALOG_TEAMS) + [f"team-{d}" for d in DOMAINS[: 30 - len(CATALOG_TEAMS)]]
    team_of = {s: teams[i % len(teams)] for i, s in enumerate(services)}
    template = enrichment_record(
        enricher.enrich(
            AlertFacts(
                {"alertname": "PaymentsApiHighLatency", "service": "payments-api", "severity": "warning"},
                {"summary": "payments-api p99 latency high"},
                "60f6a9f85446c6e8",
                "firing",
            )
        )
    )
    pairs = []
    for service in services:
        for alertname in rng.sample(ALERTNAMES, len(ALERTNAMES)):
            severity = rng.choice(SEVERITIES)
            labels = {
                "alertname": alertname,
                "instance": f"{service}-0:8080",
                "service": service,
                "severity": severity,
            }
            summary = f"{service} {alertname}"
            real = enricher.enrich(AlertFacts(labels, {"summary": summary}, fingerprint(0), "firing"))
            key = real.correlation_key or f"group/{group_key(alertname, service)}"
            priority = rng.choice(PRIORITIES)
            record = {
                **template,
                "service": service,
                "service_ref": f"component:default/{service}",
                "owner": team_of[service],
                "priority": priority,
                "correlation_key": key,
                "fields": {"summary": summary},
                "runbook_url": f"https://runbooks.example.com/{service}/{alertname.lower()}",
                "dashboard_url": f"https://grafana.example.com/d/{service}",
            }
            annotations = {
                "summary": summary,
                "description": f"{alertname} on {service}: threshold crossed",
                "runbook_url": record["runbook_url"],
            }
            pairs.append(
                Pair(
                    service=service,
                    alertname=alertname,
                    team=team_of[service],
                    severity=severity,
                    priority=priority,
                    key=key,
                    enrichment_json=json.dumps(record),
                    annotations_json=json.dumps(annotations),
                    generator_url=f"http://prometheus:9090/graph?g0.expr=ALERTS%7Balertname%3D%22{alertname}%22%7D",
                )
            )
    return pairs, services, teams, str(template["ruleset_version"])


def alert_sizes(rng: random.Random, recoveries: int, alerts: int) -> list[int]:
    """At least one alert each; the rest Pareto-weighted (most recoveries small, a few large)."""
    weights = [rng.paretovariate(2.0) for _ in range(recoveries)]
    sizes = [1] * recoveries
    for index in rng.choices(range(recoveries), weights=weights, k=alerts - recoveries):
        sizes[index] += 1
    return sizes


def build_dataset(rng: random.Random, enricher: Any, recoveries: int, alerts: int) -> DataSet:
    pairs, services, teams, version = build_pairs(rng, enricher)
    sizes = alert_sizes(rng, recoveries, alerts)
    step = HISTORY / recoveries
    start = BASE_NOW - HISTORY
    recent_from = int(recoveries * (1 - RECENT_SHARE))
    open_keys: set[str] = set()
    open_pairs: list[Pair] = []
    last_of_key: dict[str, int] = {}
    result = []
    alert_id = 1
    # Pairs are weighted: some failures recur far more often than others.
    pair_weights = [rng.paretovariate(1.2) for _ in pairs]
    drawn = rng.choices(pairs, weights=pair_weights, k=recoveries)
    spare = rng.sample(pairs, len(pairs))
    for index in range(recoveries):
        rid = index + 1
        table = RECENT_STATES if index >= recent_from else OLD_STATES
        state = rng.choices(list(table), weights=list(table.values()))[0]
        pair = drawn[index]
        if state in COLLECTING:
            # One open recovery per key (the open_key unique index): take a key nobody holds.
            while pair.key in open_keys and spare:
                pair = spare.pop()
            if pair.key in open_keys:
                state = "fix_deployed"
            else:
                open_keys.add(pair.key)
                open_pairs.append(pair)
        if state not in COLLECTING:
            # While a recovery collects, its key's alerts join it: no later recovery of that key.
            while pair.key in open_keys:
                pair = rng.choice(pairs)
        previous = last_of_key.get(pair.key)
        linked = previous if previous is not None and rng.random() < 0.1 else None
        last_of_key[pair.key] = rid
        opened_at = start + step * index + timedelta(seconds=rng.uniform(0, step.total_seconds() / 2))
        recovery = Recovery(rid, pair, state, opened_at, sizes[index], rng.random() < 0.005, linked, alert_id)
        alert_id += recovery.alerts
        result.append(recovery)
    return DataSet(pairs, result, services, teams, open_pairs, version)


# Column order of each bulk-loaded table.
COLUMNS = {
    "notifications": (
        "id", "dedup_key", "received_at", "last_received_at", "delivery_count", "receiver", "status",
        "group_key", "external_url", "truncated_alerts", "alert_count", "raw_body",
    ),
    "alerts": (
        "id", "fingerprint", "starts_at", "status", "ends_at", "labels", "annotations", "generator_url",
        "flags", "first_seen_at", "last_seen_at", "resolved_at", "first_notification_id", "enrichment",
        "ruleset_version",
    ),
    "recoveries": (
        "id", "correlation_key", "open_key", "state", "title", "service", "service_ref", "team",
        "priority", "opened_at", "state_changed_at", "updated_at", "milestones", "owner",
        "escalation_bounces", "reopen_count", "incident_resolved", "incident_closed", "itsm_configured",
        "resolution_policy", "reopen_window_seconds", "linked_to", "storm", "storm_episodes", "symptoms",
        "workaround", "public_message",
    ),
    "recovery_alerts": ("id", "recovery_id", "alert_id", "role", "attached_at"),
    "audit_events": (
        "id", "recovery_id", "at", "source", "actor", "kind", "from_state", "to_state", "details",
    ),
}  # fmt: skip


def _timeline(recovery: Recovery) -> list[tuple[str, str, str, datetime]]:
    """(event, from, to, at) of each transition after opening, 20 min to a few days apart."""
    at = recovery.opened_at
    steps = []
    for n, (event, before, after) in enumerate(PATHS[recovery.state]):
        at += timedelta(minutes=20 + 97 * n + recovery.id % 53) * (1 if n < 2 else 30)
        steps.append((event, before, after, min(at, BASE_NOW)))
    return steps


def _roles(recovery: Recovery) -> Iterator[str]:
    for n in range(recovery.alerts):
        if recovery.storm and n >= 3:
            yield "storm"
        elif n and (recovery.id + n) % 29 == 0:
            yield "symptom"
        else:
            yield "member"


def notification_rows(data: DataSet) -> Iterator[tuple[Any, ...]]:
    for r in data.recoveries:
        at = _ts(r.opened_at)
        gk = group_key(r.pair.alertname, r.pair.service)
        body = json.dumps({"receiver": "webhook", "status": "firing", "groupKey": gk, "version": "4"})
        yield (
            r.id, f"{r.id:064x}", at, at, 1, "webhook", "firing", gk, "http://alertmanager:9093", 0,
            r.alerts, body.encode(),
        )  # fmt: skip


def alert_rows(data: DataSet) -> Iterator[tuple[Any, ...]]:
    for r in data.recoveries:
        pair = r.pair
        collecting = r.state in COLLECTING
        for n in range(r.alerts):
            alert_id = r.first_alert_id + n
            starts = r.opened_at + timedelta(seconds=7 * n)
            labels = json.dumps(
                {
                    "alertname": pair.alertname,
                    "instance": f"{pair.service}-{n}:8080",
                    "service": pair.service,
                    "severity": pair.severity,
                    "team": pair.team,
                }
            )
            firing = collecting and (alert_id % 5) != 0
            seen = BASE_NOW - timedelta(minutes=alert_id % 240) if firing else starts + timedelta(minutes=45)
            resolved = None if firing else _ts(seen)
            yield (
                alert_id, fingerprint(alert_id), _ts(starts), "firing" if firing else "resolved", resolved,
                labels, pair.annotations_json, pair.generator_url, "[]", _ts(starts), _ts(seen), resolved,
                r.id, pair.enrichment_json, data.ruleset_version,
            )  # fmt: skip


def recovery_rows(data: DataSet) -> Iterator[tuple[Any, ...]]:
    for r in data.recoveries:
        pair = r.pair
        steps = _timeline(r)
        milestones = {"opened": r.opened_at, "owner_known": r.opened_at + timedelta(seconds=1)}
        for _event, _before, after, at in steps:
            if after in MILESTONE_OF:
                milestones[MILESTONE_OF[after]] = at
        changed = steps[-1][3] if steps else r.opened_at
        roles = Counter(_roles(r))
        collecting = r.state in COLLECTING
        yield (
            r.id, pair.key, pair.key if collecting else None, r.state, f"{pair.service} {pair.alertname}",
            pair.service, f"component:default/{pair.service}", pair.team, pair.priority, _ts(r.opened_at),
            _ts(changed), _ts(changed), json.dumps({k: v.isoformat() for k, v in milestones.items()}),
            pair.team, 0, 1 if r.id % 41 == 0 else 0, r.state in ("closed", "postmortem_complete"),
            r.state in ("closed", "postmortem_complete"), False, "close", 3600.0, r.linked_to, r.storm,
            roles["storm"], roles["symptom"],
            "Fail over to the secondary region" if r.state == "workaround_available" else None, None,
        )  # fmt: skip


def recovery_alert_rows(data: DataSet) -> Iterator[tuple[Any, ...]]:
    for r in data.recoveries:
        for n, role in enumerate(_roles(r)):
            alert_id = r.first_alert_id + n
            yield (alert_id, r.id, alert_id, role, _ts(r.opened_at + timedelta(seconds=7 * n + 1)))


def audit_rows(data: DataSet) -> Iterator[tuple[Any, ...]]:
    audit_id = 0
    for r in data.recoveries:
        at = _ts(r.opened_at)
        opened = {"correlation_key": r.pair.key, "linked_to": r.linked_to, "reason": "no open recovery"}
        owner = {
            "event": "owner_known",
            "stamped": ["owner_known"],
            "evidence": {"owner_source": "catalog"},
            "reason": None,
        }
        fp = fingerprint(r.first_alert_id)
        placed = {"outcome": "opened", "reason": "no open recovery", "fingerprint": fp}
        events: list[tuple[str, str, str, str | None, str | None, dict[str, Any], str]] = [
            ("alertmanager", "alertmanager", "opened", None, "opened", opened, at),
            ("alertmanager", "alertmanager", "transition", "opened", "opened", owner, at),
            ("alertmanager", "alertmanager", "correlation", None, None, placed, at),
        ]
        for event, before, after, when in _timeline(r):
            source = "alertmanager" if event == "alerts_resolved" else "operator"
            actor = "alertmanager" if source == "alertmanager" else "oncall-bot"
            details: dict[str, Any] = {
                "event": event,
                "stamped": [MILESTONE_OF[after]] if after in MILESTONE_OF else [],
                "evidence": {},
                "reason": None if source == "alertmanager" else "bench history",
            }
            events.append((source, actor, "transition", before, after, details, _ts(when)))
        for entry in events:
            audit_id += 1
            yield (audit_id, r.id, entry[6], *entry[:5], json.dumps(entry[5]))


TABLES: tuple[tuple[str, Callable[[DataSet], Iterator[tuple[Any, ...]]]], ...] = (
    ("notifications", notification_rows),
    ("alerts", alert_rows),
    ("recoveries", recovery_rows),
    ("recovery_alerts", recovery_alert_rows),
    ("audit_events", audit_rows),
)


def load_sqlite(path: Path, data: DataSet, analyze: bool) -> dict[str, tuple[int, float]]:
    """sqlite3 executemany in one transaction per table (foreign keys off, as on a bulk restore)."""
    timings = {}
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-1000000")
        conn.execute("PRAGMA temp_store=MEMORY")
        for table, rows in TABLES:
            started = time.perf_counter()
            columns = COLUMNS[table]
            marks = ", ".join("?" * len(columns))
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608 (our constants)
            conn.execute("BEGIN")
            cursor = conn.executemany(sql, rows(data))
            conn.execute("COMMIT")
            count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            timings[table] = (count, time.perf_counter() - started)
            del cursor
        if analyze:
            started = time.perf_counter()
            conn.execute("ANALYZE")
            timings["ANALYZE"] = (0, time.perf_counter() - started)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return timings


def load_postgresql(dsn: str, data: DataSet) -> dict[str, tuple[int, float]]:
    """COPY per table with triggers (the foreign-key checks) off, then the id sequences and VACUUM ANALYZE."""
    import psycopg

    timings = {}
    with psycopg.connect(dsn) as conn:
        conn.execute("SET session_replication_role = replica")
        for table, rows in TABLES:
            started = time.perf_counter()
            columns = COLUMNS[table]
            with conn.cursor() as cur:
                with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows(data):
                        copy.write_row(row)
                sequence = f"pg_get_serial_sequence('{table}', 'id')"
                cur.execute(f"SELECT setval({sequence}, (SELECT max(id) FROM {table}))")  # noqa: S608
                count = cur.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
            conn.commit()
            timings[table] = (count[0] if count else 0, time.perf_counter() - started)
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        timings["VACUUM ANALYZE"] = (0, time.perf_counter() - started)
    return timings


# --------------------------------------------------------------------------- backends


@dataclass
class Database:
    backend: str
    url: str  # SQLAlchemy URL for recoverlink
    path: Path | None = None  # SQLite file
    dsn: str = ""  # psycopg DSN


@contextlib.contextmanager
def database(backend: str, tmp: Path, pg_url: str) -> Iterator[Database]:
    from recoverlink.config.loader import sqlite_url

    if backend == "sqlite":
        path = tmp / "recoverlink.db"
        yield Database("sqlite", sqlite_url(path), path=path)
        return
    with throwaway_postgres(pg_url) as pg:
        yield Database("postgresql", pg.sqlalchemy_url, dsn=pg.dsn)


# --------------------------------------------------------------------------- measuring


@dataclass
class Row:
    backend: str
    what: str
    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    target_ms: float | None = None
    target_stat: str = "p99"  # what the target bounds: "p99" (latency) or "mean" (a cost per alert)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool | None:
        if self.target_ms is None:
            return None
        return (self.mean_ms if self.target_stat == "mean" else self.p99_ms) < self.target_ms


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[rank]


def summarize(
    backend: str, what: str, seconds: list[float], target: float | None = None, stat: str = "p99"
) -> Row:
    ms = [s * 1000 for s in seconds]
    return Row(
        backend,
        what,
        len(ms),
        statistics.median(ms),
        percentile(ms, 0.99),
        statistics.fmean(ms),
        max(ms),
        target,
        stat,
    )


def measure_api(
    client: Any, headers: dict[str, str], data: DataSet, *, rng: random.Random, backend: str, args: Any
) -> list[Row]:
    def get(url: str) -> tuple[float, Any]:
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"GET {url}: {response.status_code} {response.get_data(as_text=True)[:300]}")
        return elapsed, response

    def run(what: str, fetch: Callable[[], float], target: float) -> Row:
        for _ in range(args.warmup):
            fetch()
        row = summarize(backend, what, [fetch() for _ in range(args.requests)], target)
        print(f"  {backend:<10} {what:<34} p50 {row.p50_ms:7.2f} ms  p99 {row.p99_ms:7.2f} ms", flush=True)
        return row

    def url(make: Callable[[], str]) -> Callable[[], float]:
        return lambda: get(make())[0]

    base = "/api/v1/recoveries"
    open_states = ",".join(COLLECTING)
    rows = [
        run("list first page", url(lambda: f"{base}?limit=50"), TARGET_LIST_P99_MS),
        run("list state=closed", url(lambda: f"{base}?limit=50&state=closed"), TARGET_LIST_P99_MS),
        run("list open states", url(lambda: f"{base}?limit=50&state={open_states}"), TARGET_LIST_P99_MS),
        run(
            "list team=<random>",
            url(lambda: f"{base}?limit=50&team={rng.choice(data.teams)}"),
            TARGET_LIST_P99_MS,
        ),
        run(
            "list service=<random>",
            url(lambda: f"{base}?limit=50&service={rng.choice(data.services)}"),
            TARGET_LIST_P99_MS,
        ),
    ]

    def walk(query: Callable[[], str]) -> Callable[[], float]:
        """Deep pages: each request follows the previous page's next_cursor (a new walk at the end)."""
        state: dict[str, str | None] = {"cursor": None, "query": query()}

        def fetch() -> float:
            cursor = state["cursor"]
            elapsed, response = get(
                f"{base}?limit=50{state['query']}" + (f"&cursor={cursor}" if cursor else "")
            )
            state["cursor"] = response.get_json()["next_cursor"]
            if state["cursor"] is None:
                state["query"] = query()
            return elapsed

        return fetch

    rows.append(run("list deep pages (next_cursor walk)", walk(lambda: ""), TARGET_LIST_P99_MS))
    rows.append(
        run(
            "list team pages (next_cursor walk)",
            walk(lambda: f"&team={rng.choice(data.teams)}"),
            TARGET_LIST_P99_MS,
        )
    )
    count = len(data.recoveries)
    rows.append(
        run("detail <random id>", url(lambda: f"{base}/{rng.randint(1, count)}"), TARGET_DETAIL_P99_MS)
    )
    return rows


def delivery(alertname: str, service: str, severity: str, *, fp: str, n: int, starts: datetime) -> bytes:
    labels = {"alertname": alertname, "instance": f"{service}-b{n}:8080", "service": service}
    labels["severity"] = severity
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": f"{service} {alertname} on {labels['instance']}"},
        "startsAt": starts.isoformat().replace("+00:00", "Z"),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fp,
    }
    document = {
        "receiver": "webhook",
        "status": "firing",
        "alerts": [alert],
        "groupLabels": {"alertname": alertname, "service": service},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": group_key(alertname, service),
        "truncatedAlerts": 0,
    }
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def plan_deliveries(data: DataSet, rng: random.Random, args: Any) -> list[tuple[str, bytes]]:
    """One-alert deliveries with new fingerprints, a minute apart; a first tenth more as warm-up.

    A "join" is a new instance of the service and alertname of a stored open recovery; an "open"
    a new alertname of a service the catalog does not know, so its key (the group key) is new.
    """
    total = args.deliveries + max(10, args.deliveries // 10)
    opening = [p for p in data.pairs if p.key.startswith("group/")]
    joinable = list(data.open_pairs)
    bodies: list[tuple[str, bytes]] = []
    for n in range(total):
        fp = fingerprint(10_000_000_000 + n)
        now = BASE_NOW + timedelta(minutes=n + 1)
        if joinable and rng.random() < args.join_share:
            pair = rng.choice(joinable)
            body = delivery(pair.alertname, pair.service, pair.severity, fp=fp, n=n, starts=now)
            bodies.append(("join", body))
        else:
            pair = rng.choice(opening)
            body = delivery(f"BenchNew{n:05d}", pair.service, pair.severity, fp=fp, n=n, starts=now)
            bodies.append(("open", body))
    return bodies


def measure_ingest(
    store: Any, enricher: Any, data: DataSet, *, rng: random.Random, backend: str, args: Any
) -> list[Row]:
    import recoverlink.ingest as ingest_module
    from recoverlink.domain.alerts import AlertPolicy

    policy = AlertPolicy()
    real_track = vars(ingest_module)["track_recoveries"]
    tracked: list[float] = []

    def timed_track(*a: Any, **kw: Any) -> Any:
        started = time.perf_counter()
        try:
            return real_track(*a, **kw)
        finally:
            tracked.append(time.perf_counter() - started)

    bodies = plan_deliveries(data, rng, args)
    total = len(bodies)
    warm = total - args.deliveries

    ingest_module.track_recoveries = timed_track  # type: ignore[attr-defined]  # patched for timing
    try:
        results: dict[str, list[float]] = {"join": [], "open": []}
        correlation: dict[str, list[float]] = {"join": [], "open": []}
        placements: Counter[str] = Counter()
        for n, (kind, body) in enumerate(bodies):
            tracked.clear()
            started = time.perf_counter()
            outcome = ingest_module.ingest_webhook(
                store, body, policy, enricher, BASE_NOW + timedelta(minutes=n + 1)
            )
            elapsed = time.perf_counter() - started
            if outcome.duplicate:
                raise RuntimeError("a new delivery was stored as a duplicate")
            placements.update(f"{kind}->{o.value}" for o in outcome.recoveries.placements.elements())
            if n >= warm:
                results[kind].append(elapsed)
                correlation[kind].extend(tracked)
        duplicates = []
        for n, (_kind, body) in enumerate(bodies):
            started = time.perf_counter()
            outcome = ingest_module.ingest_webhook(
                store, body, policy, enricher, BASE_NOW + timedelta(minutes=total + n + 1)
            )
            elapsed = time.perf_counter() - started
            if not outcome.duplicate:
                raise RuntimeError("a repeated delivery was not a duplicate")
            if n >= warm:
                duplicates.append(elapsed)
    finally:
        ingest_module.track_recoveries = real_track  # type: ignore[attr-defined]

    rows = []
    note = "placements: " + ", ".join(f"{k} {v}" for k, v in sorted(placements.items()))
    both = results["join"] + results["open"]
    for kind, label in (("join", "joins an open recovery"), ("open", "opens a new recovery")):
        if results[kind]:
            rows.append(summarize(backend, f"ingest new alert, {label}", results[kind]))
            # The target is a cost per alert over the mix (the "all" row); per kind, the breakdown.
            rows.append(summarize(backend, f"  correlation step, {label}", correlation[kind]))
    if both:
        rows.append(summarize(backend, "ingest new alert, all", both))
        rows.append(
            summarize(
                backend,
                "  correlation step, all",
                correlation["join"] + correlation["open"],
                TARGET_CORRELATION_MS,
                "mean",
            )
        )
    rows.append(summarize(backend, "ingest duplicate delivery", duplicates))
    rows[0].notes.append(note)
    for row in rows:
        print(
            f"  {backend:<10} {row.what:<34} p50 {row.p50_ms:7.2f} ms  p99 {row.p99_ms:7.2f} ms", flush=True
        )
    print(f"  {backend:<10} {note}", flush=True)
    return rows


# --------------------------------------------------------------------------- per backend


def run_backend(
    backend: str, tmp_root: Path, data: DataSet, loaded: Any, args: Any
) -> tuple[list[Row], float]:
    from flask import Flask
    from prometheus_client import CollectorRegistry

    from recoverlink.config.loader import Settings
    from recoverlink.config.model import Config
    from recoverlink.domain.tokens import Role
    from recoverlink.store import migrate
    from recoverlink.store.engine import open_store
    from recoverlink.store.tokens import register_token
    from recoverlink.web import create_app

    tmp = tmp_root / backend
    tmp.mkdir()
    rng = random.Random(args.seed + 7)
    with database(backend, tmp, args.pg_url) as db:
        store = open_store(db.url)
        try:
            migrate.upgrade(store.engine)
            started = time.perf_counter()
            if backend == "sqlite":
                assert db.path is not None
                timings = load_sqlite(db.path, data, args.sqlite_analyze)
            else:
                timings = load_postgresql(db.dsn, data)
            load_seconds = time.perf_counter() - started
            parts = ", ".join(
                f"{table} {count:,} rows {seconds:.1f} s" if count else f"{table} {seconds:.1f} s"
                for table, (count, seconds) in timings.items()
            )
            print(f"[{backend}] loaded in {load_seconds:.1f} s: {parts}", flush=True)
            if backend == "sqlite" and db.path is not None:
                print(f"[{backend}] database file {db.path.stat().st_size / 2**20:,.0f} MiB", flush=True)

            token_file = tmp / "webhook.token"
            token_file.write_text(secrets.token_hex(16) + "\n")
            config = Config.model_validate(
                {
                    "webhook": {"auth": {"bearer": {"file": str(token_file)}}},
                    "database": {"sqlite_path": str(tmp / "unused.db")},
                }
            )
            settings = Settings(config=config, config_path=EXAMPLE_CONFIG, database_url=db.url, listen="")
            app: Flask = create_app(
                settings,
                store=store,
                registry=CollectorRegistry(),
                clock=lambda: BASE_NOW,
                environ={},
                enrichment=loaded,
            )
            token = secrets.token_urlsafe(24)
            with store.write() as conn:
                register_token(conn, token, Role.VIEWER, "bench-viewer", BASE_NOW)
            client = app.test_client()
            rows = measure_api(
                client, {"Authorization": f"Bearer {token}"}, data, rng=rng, backend=backend, args=args
            )
            rows.extend(measure_ingest(store, loaded.enricher, data, rng=rng, backend=backend, args=args))
        finally:
            store.dispose()
    return rows, load_seconds


# --------------------------------------------------------------------------- output


TABLE_COLUMNS = (
    ("backend", "<"),
    ("measurement", "<"),
    ("n", ">"),
    ("p50 ms", ">"),
    ("p99 ms", ">"),
    ("mean ms", ">"),
    ("max ms", ">"),
    ("target", ">"),
    ("", "<"),
)


def _cells(row: Row) -> list[str]:
    verdict = {True: "PASS", False: "FAIL", None: ""}[row.ok]
    return [
        row.backend,
        row.what,
        str(row.n),
        f"{row.p50_ms:.2f}",
        f"{row.p99_ms:.2f}",
        f"{row.mean_ms:.2f}",
        f"{row.max_ms:.2f}",
        f"{row.target_stat} < {row.target_ms:.0f} ms" if row.target_ms is not None else "",
        verdict,
    ]


def render_table(rows: list[Row]) -> str:
    return benchlib.render_table(TABLE_COLUMNS, [_cells(r) for r in rows])


def verdicts(rows: list[Row], backends: Iterable[str]) -> list[str]:
    lines = []
    for backend in backends:
        mine = [r for r in rows if r.backend == backend]
        lists = [r for r in mine if r.what.startswith("list")]
        details = [r for r in mine if r.what.startswith("detail")]
        steps = [r for r in mine if r.what.strip() == "correlation step, all"]
        ingest = [r for r in mine if r.what == "ingest new alert, all"]
        worst_list = max(lists, key=lambda r: r.p99_ms)
        lines.append(
            f"  {backend:<10} list p99 < {TARGET_LIST_P99_MS:.0f} ms: "
            f"{'MET' if all(r.ok for r in lists) else 'NOT MET'} (worst {worst_list.p99_ms:.1f} ms, "
            f"{worst_list.what})"
        )
        lines.append(
            f"  {backend:<10} detail p99 < {TARGET_DETAIL_P99_MS:.0f} ms: "
            f"{'MET' if all(r.ok for r in details) else 'NOT MET'} ({details[0].p99_ms:.1f} ms)"
        )
        if steps and ingest:
            step, whole = steps[0], ingest[0]
            kinds = {r.what.split(", ")[-1]: r for r in mine if r.what.startswith("  correlation step, ")}
            tails = "; ".join(f"{what} {r.p99_ms:.2f} ms" for what, r in kinds.items() if what != "all")
            lines.append(
                f"  {backend:<10} correlation cost < {TARGET_CORRELATION_MS:.0f} ms per alert (mean over the "
                f"mix): {'MET' if step.ok else 'NOT MET'} ({step.mean_ms:.2f} ms); p99 per alert "
                f"{step.p99_ms:.2f} ms ({tails}); the whole ingest of a new one-alert delivery: mean "
                f"{whole.mean_ms:.2f} ms, p99 {whole.p99_ms:.2f} ms"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from recoverlink.config.enrichment_loader import load_enrichment
    from recoverlink.config.loader import load_config

    started = datetime.now(UTC)
    print(
        f"recoverlink recoveries benchmark, {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}; {args.recoveries:,} recoveries, "
        f"{args.alerts:,} alerts; {args.warmup} warm-up + {args.requests} requests per kind, "
        f"{args.deliveries} new deliveries",
        flush=True,
    )
    loaded = load_enrichment(load_config(EXAMPLE_CONFIG), EXAMPLE_CONFIG.parent, str(EXAMPLE_CONFIG))
    rng = random.Random(args.seed)
    building = time.perf_counter()
    data = build_dataset(rng, loaded.enricher, args.recoveries, args.alerts)
    sizes = sorted(r.alerts for r in data.recoveries)
    states = Counter(r.state for r in data.recoveries)
    print(
        f"data set planned in {time.perf_counter() - building:.1f} s: {len(data.recoveries):,} recoveries "
        f"({', '.join(f'{s} {c:,}' for s, c in states.most_common())}), {data.alert_count:,} alerts "
        f"(per recovery median {sizes[len(sizes) // 2]}, p99 {sizes[int(len(sizes) * 0.99)]}, "
        f"max {sizes[-1]}), {len(data.services)} services, {len(data.teams)} teams",
        flush=True,
    )
    tmp_root = Path(tempfile.mkdtemp(prefix="rl-bench-recoveries-"))
    rows: list[Row] = []
    loads: dict[str, float] = {}
    try:
        for backend in args.backends:
            backend_rows, loads[backend] = run_backend(backend, tmp_root, data, loaded, args)
            rows.extend(backend_rows)
    finally:
        if args.keep:
            print(f"kept {tmp_root}")
        else:
            shutil.rmtree(tmp_root, ignore_errors=True)
    print()
    print("load: " + ", ".join(f"{b} {s:.0f} s" for b, s in loads.items()))
    print(render_table(rows))
    print()
    print("targets:")
    print("\n".join(verdicts(rows, args.backends)))
    for row in rows:
        for note in row.notes:
            print(f"  {row.backend:<10} {note}")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2) + "\n")
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
