"""The floor of the stack for bench/ingest.py: the least a Flask app under gunicorn can do per delivery.

One route reads the body, json.loads it, and upserts each alert (fingerprint, startsAt, status,
labels as JSON) into a table with a unique key, with the raw driver (sqlite3 in WAL with
synchronous=NORMAL, or psycopg), one connection per thread, one commit per request. It checks the
bearer token, as recoverlink must; it does nothing else (no validation, no notification row, no
metrics, no logging), so recoverlink's throughput is read as a share of this one.

Run by bench/ingest.py as `gunicorn ... 'floor_app:create_app()'` with FLOOR_BACKEND (sqlite or
postgresql), FLOOR_DSN (a file path or a libpq URL) and FLOOR_TOKEN in the environment. The table
is created by bench/ingest.py before gunicorn starts (see `create_table`).
"""

from __future__ import annotations

import hmac
import json
import os
import sqlite3
import threading
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, jsonify, request

SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS floor_alerts (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    status TEXT NOT NULL,
    labels TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    UNIQUE (fingerprint, starts_at)
)
"""
POSTGRES_DDL = """
CREATE TABLE IF NOT EXISTS floor_alerts (
    id BIGSERIAL PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    starts_at TIMESTAMPTZ NOT NULL,
    status TEXT NOT NULL,
    labels JSONB NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    UNIQUE (fingerprint, starts_at)
)
"""
UPSERT = """
INSERT INTO floor_alerts (fingerprint, starts_at, status, labels, last_seen_at)
VALUES ({p}, {p}, {p}, {p}, {p})
ON CONFLICT (fingerprint, starts_at)
DO UPDATE SET status = excluded.status, labels = excluded.labels, last_seen_at = excluded.last_seen_at
"""


def create_table(backend: str, dsn: str) -> None:
    """Create the floor's table (called once by the benchmark, before the workers start)."""
    if backend == "sqlite":
        conn = sqlite3.connect(dsn)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(SQLITE_DDL)
        conn.commit()
        conn.close()
        return
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute(POSTGRES_DDL)


class _SqliteUpserter:
    sql = UPSERT.format(p="?")

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=5000")

    def upsert(self, rows: list[tuple[Any, ...]]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(self.sql, rows)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


class _PostgresUpserter:
    sql = UPSERT.format(p="%s")

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.conn = psycopg.connect(dsn)

    def upsert(self, rows: list[tuple[Any, ...]]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(self.sql, rows)


def create_app() -> Flask:
    backend = os.environ["FLOOR_BACKEND"]
    dsn = os.environ["FLOOR_DSN"]
    expected = f"Bearer {os.environ['FLOOR_TOKEN']}".encode()
    local = threading.local()
    app = Flask(__name__)

    def upserter() -> _SqliteUpserter | _PostgresUpserter:
        conn = getattr(local, "upserter", None)
        if conn is None:
            conn = _SqliteUpserter(dsn) if backend == "sqlite" else _PostgresUpserter(dsn)
            local.upserter = conn
        return conn

    @app.post("/webhook/alertmanager")
    def webhook() -> Response | tuple[Response, int]:
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
            return jsonify({"error": "unauthorized"}), 401
        document = json.loads(request.get_data(cache=False))
        now = datetime.now(UTC)
        rows: list[tuple[Any, ...]] = []
        for alert in document["alerts"]:
            starts_at = datetime.fromisoformat(alert["startsAt"])
            labels = json.dumps(alert["labels"])
            if backend == "sqlite":
                rows.append(
                    (alert["fingerprint"], starts_at.isoformat(), alert["status"], labels, now.isoformat())
                )
            else:
                rows.append((alert["fingerprint"], starts_at, alert["status"], labels, now))
        upserter().upsert(rows)
        return jsonify({"status": "ok", "alerts": len(rows)})

    @app.get("/-/ready")
    def ready() -> Response:
        return Response("floor is ready.\n", mimetype="text/plain")

    return app
