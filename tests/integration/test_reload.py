"""Reload without a restart: validate, swap atomically, every process follows, bad config changes nothing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from recoverlink.config.loader import load_settings
from recoverlink.domain.tokens import Role
from recoverlink.reload import ConfigFollower
from recoverlink.store.engine import Store
from recoverlink.store.tokens import register_token
from recoverlink.web import create_app
from recoverlink.web.runtime import Runtime
from tests.conftest import WEBHOOK_TOKEN, bearer, fixture_body

ADMIN = "rl_test_admin_token"
CATALOG = """
teams:
  - name: payments
services:
  - name: payments-api
    owner: payments
    tier: tier-1
"""


def rules(marker: str) -> str:
    return f"""
rules:
  - name: mark
    set:
      fields:
        marker: "{marker}"
"""


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    (tmp_path / "token").write_text(WEBHOOK_TOKEN)
    (tmp_path / "catalog.yaml").write_text(CATALOG)
    (tmp_path / "rules.yaml").write_text(rules("v1"))
    (tmp_path / "recoverlink.yaml").write_text(
        "webhook:\n  auth:\n    bearer: {file: token}\n"
        "catalog:\n  files: [catalog.yaml]\n"
        "rules:\n  files: [rules.yaml]\n"
    )
    return tmp_path


def make_app(config_dir: Path, store: Store) -> Flask:
    settings = load_settings(
        config_dir / "recoverlink.yaml", {"RECOVERLINK_DATABASE_URL": str(store.engine.url)}
    )
    return create_app(settings, store=store, registry=CollectorRegistry(), environ={})


@pytest.fixture
def admin(store: Store) -> dict[str, str]:
    with store.write() as conn:
        register_token(conn, ADMIN, Role.ADMIN, "admin", datetime.now(UTC))
    return bearer(ADMIN)


def rt(app: Flask) -> Runtime:
    value: Runtime = app.extensions["recoverlink"]
    return value


def follower_of(config_dir: Path, app: Flask, store: Store) -> ConfigFollower:
    """What a second process runs to follow reloads announced by the first."""
    runtime = rt(app)
    return ConfigFollower(
        config_dir / "recoverlink.yaml",
        runtime.enrichment,
        store,
        runtime.metrics,
        clock=lambda: datetime.now(UTC),
    )


def stored_markers(store: Store) -> list[tuple[str, str]]:
    with store.read() as conn:
        rows = conn.exec_driver_sql("SELECT enrichment FROM alerts").all()
    records = [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in rows]
    return [(r["ruleset_version"], r["fields"]["marker"]) for r in records]


def test_reload_swaps_to_the_new_rules(config_dir: Path, store: Store, admin: dict[str, str]) -> None:
    app = make_app(config_dir, store)
    before = rt(app).enrichment.current.version
    (config_dir / "rules.yaml").write_text(rules("v2"))
    response = app.test_client().post("/-/reload", headers=admin)
    assert response.status_code == 200
    body = response.json or {}
    assert body["status"] == "reloaded" and body["changed"] is True
    assert body["version"] != before
    assert rt(app).enrichment.current.version == body["version"]
    assert rt(app).metrics.registry.get_sample_value("recoverlink_config_last_reload_successful") == 1


def test_failed_reload_keeps_previous_rules_and_says_why(
    config_dir: Path, store: Store, admin: dict[str, str]
) -> None:
    app = make_app(config_dir, store)
    before = rt(app).enrichment.current.version
    (config_dir / "rules.yaml").write_text("rules:\n  - name: broken\n    match: ['service=~\"(\"']\n")
    response = app.test_client().post("/-/reload", headers=admin)
    assert response.status_code == 400
    error = (response.json or {})["error"]
    assert error["code"] == "config-invalid"
    assert error["errors"][0].startswith(f"{config_dir / 'rules.yaml'}:3:")
    assert "invalid regex" in error["errors"][0]
    assert rt(app).enrichment.current.version == before
    assert rt(app).metrics.registry.get_sample_value("recoverlink_config_last_reload_successful") == 0


def test_reload_needs_an_admin_token(config_dir: Path, store: Store) -> None:
    app = make_app(config_dir, store)
    assert app.test_client().post("/-/reload").status_code == 401
    with store.write() as conn:
        register_token(conn, "rl_viewer", Role.VIEWER, "viewer", datetime.now(UTC))
    assert app.test_client().post("/-/reload", headers=bearer("rl_viewer")).status_code == 403


def test_other_processes_follow_a_successful_reload(
    config_dir: Path, store: Store, admin: dict[str, str]
) -> None:
    leader, follower_app = make_app(config_dir, store), make_app(config_dir, store)
    follower = follower_of(config_dir, follower_app, store)
    (config_dir / "rules.yaml").write_text(rules("v2"))
    version = (leader.test_client().post("/-/reload", headers=admin).json or {})["version"]
    assert follower.follow_once()
    assert rt(follower_app).enrichment.current.version == version


def test_a_follower_applying_a_version_late_leaves_the_reload_gauge_to_the_attempts(
    config_dir: Path, store: Store, admin: dict[str, str]
) -> None:
    """Following is not a reload attempt: a follower that applies v2 after a later attempt failed
    must not report that the last reload succeeded."""
    leader, follower_app = make_app(config_dir, store), make_app(config_dir, store)
    follower = follower_of(config_dir, follower_app, store)
    (config_dir / "rules.yaml").write_text(rules("v2"))
    assert leader.test_client().post("/-/reload", headers=admin).status_code == 200
    rt(follower_app).metrics.reload_failed()  # as if a failed attempt had been made in this process
    assert follower.follow_once()
    gauge = "recoverlink_config_last_reload_successful"
    assert rt(follower_app).metrics.registry.get_sample_value(gauge) == 0


def test_followers_ignore_a_failed_reload(config_dir: Path, store: Store, admin: dict[str, str]) -> None:
    leader, follower_app = make_app(config_dir, store), make_app(config_dir, store)
    follower = follower_of(config_dir, follower_app, store)
    before = rt(follower_app).enrichment.current.version
    (config_dir / "rules.yaml").write_text("rules: [")
    assert leader.test_client().post("/-/reload", headers=admin).status_code == 400
    assert not follower.follow_once()
    assert rt(follower_app).enrichment.current.version == before


def test_reload_under_load_never_loses_a_request_or_mixes_configs(
    config_dir: Path, store: Store, admin: dict[str, str]
) -> None:
    """Webhooks keep arriving while reloads alternate between good and broken rules."""
    app = make_app(config_dir, store)
    marker_of = {rt(app).enrichment.current.version: "v1"}
    template = json.loads(fixture_body("firing_single.json"))
    stop = threading.Event()
    answers: list[int] = []

    def post_webhooks() -> Iterator[None]:
        client = app.test_client()
        n = 0
        while not stop.is_set():
            document = json.loads(json.dumps(template))
            document["alerts"][0]["fingerprint"] = f"{n:016x}"
            answers.append(client.post("/webhook/alertmanager", json=document, headers=bearer()).status_code)
            n += 1
        yield

    sender = threading.Thread(target=lambda: list(post_webhooks()))
    sender.start()
    client = app.test_client()
    try:
        for i in range(2, 12):
            good = i % 2 == 0
            (config_dir / "rules.yaml").write_text(rules(f"v{i}") if good else "rules: [")
            response = client.post("/-/reload", headers=admin)
            assert response.status_code == (200 if good else 400)
            if good:
                marker_of[(response.json or {})["version"]] = f"v{i}"
    finally:
        stop.set()
        sender.join()
    assert answers and set(answers) == {200}
    stored = stored_markers(store)
    assert len(stored) == len(answers)
    assert all(marker_of[version] == marker for version, marker in stored)
