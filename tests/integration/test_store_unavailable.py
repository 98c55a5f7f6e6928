"""When the store cannot commit, the webhook answers 503 so Alertmanager retries; nothing is half-stored."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from recoverlink.config.loader import sqlite_url
from recoverlink.store import migrate
from recoverlink.store.engine import Store, StoreOptions, make_engine
from recoverlink.web import create_app
from tests.conftest import WEBHOOK_TOKEN, FakeClock, bearer, fixture_body, make_settings


def test_locked_sqlite_store_gets_503_and_the_retry_is_stored(tmp_path: Path) -> None:
    db = tmp_path / "recoverlink.db"
    store = Store(make_engine(sqlite_url(db), StoreOptions(busy_timeout_ms=50)))
    migrate.upgrade(store.engine)
    registry = CollectorRegistry()
    app = create_app(make_settings(tmp_path), store=store, registry=registry, clock=FakeClock(), environ={})
    client = app.test_client()
    body = fixture_body("firing_group.json")

    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        response = client.post("/webhook/alertmanager", data=body, headers=bearer())
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert response.status_code == 503
    assert (response.json or {})["error"]["code"] == "store-unavailable"
    assert response.headers["Retry-After"] == "5"
    unavailable = {"outcome": "unavailable"}
    assert registry.get_sample_value("recoverlink_alertmanager_notifications_total", unavailable) == 1
    with store.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM notifications").scalar_one() == 0

    retried = client.post("/webhook/alertmanager", data=body, headers=bearer())
    assert retried.status_code == 200
    assert (retried.json or {})["alerts"] == {"firing_new": 3}


@pytest.mark.postgres
def test_unreachable_postgresql_gets_503(tmp_path: Path) -> None:
    # Port 1 on loopback refuses connections: the store is down.
    url = "postgresql+psycopg://postgres@127.0.0.1:1/none"
    store = Store(make_engine(url, StoreOptions(connect_timeout_seconds=1)))
    app = create_app(make_settings(tmp_path, url), store=store, registry=CollectorRegistry(), environ={})
    response = app.test_client().post(
        "/webhook/alertmanager", data=fixture_body("firing_single.json"), headers=bearer()
    )
    assert response.status_code == 503
    assert response.is_json
    assert app.test_client().get("/-/ready").status_code == 503


def test_no_secret_is_ever_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = Store(make_engine(sqlite_url(tmp_path / "rl.db")))
    migrate.upgrade(store.engine)
    app = create_app(make_settings(tmp_path), store=store, registry=CollectorRegistry(), environ={})
    client = app.test_client()
    with caplog.at_level(logging.DEBUG):
        client.post("/webhook/alertmanager", data=fixture_body("firing_single.json"), headers=bearer())
        client.post("/webhook/alertmanager", data=b"{}", headers=bearer())
        client.post("/webhook/alertmanager", data=b"{}", headers=bearer("guessed-token"))
    assert caplog.records, "requests should be logged"
    logged = "\n".join(str(r.__dict__) for r in caplog.records)
    assert WEBHOOK_TOKEN not in logged
    assert "guessed-token" not in logged


def test_a_schema_bug_is_a_500_not_an_endless_503(tmp_path: Path) -> None:
    """An unmigrated SQLite file raises OperationalError too; retrying forever would hide the bug."""
    store = Store(make_engine(sqlite_url(tmp_path / "unmigrated.db")))
    app = create_app(make_settings(tmp_path), store=store, registry=CollectorRegistry(), environ={})
    response = app.test_client().post(
        "/webhook/alertmanager", data=fixture_body("firing_single.json"), headers=bearer()
    )
    assert response.status_code == 500
    assert (response.json or {})["error"]["code"] == "internal-error"
