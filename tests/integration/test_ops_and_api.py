"""Health, readiness, metrics exposition and the token-protected alerts API."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from recoverlink.config.loader import sqlite_url
from recoverlink.domain.tokens import Role
from recoverlink.store import migrate
from recoverlink.store.engine import Store, make_engine
from recoverlink.store.tokens import register_token
from recoverlink.web import create_app
from tests.conftest import bearer, fixture_body, make_settings


def token_for(store: Store, role: Role) -> str:
    token = f"rl_test_{role.value}"
    with store.write() as conn:
        register_token(conn, token, role, f"test-{role.value}", datetime.now(UTC))
    return token


def test_healthy_answers_while_the_process_runs(client: FlaskClient) -> None:
    response = client.get("/-/healthy")
    assert response.status_code == 200


def test_ready_when_store_is_migrated(client: FlaskClient) -> None:
    assert client.get("/-/ready").status_code == 200


def test_not_ready_on_an_unmigrated_store(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    store = Store(make_engine(sqlite_url(tmp_path / "empty.db")))
    app = create_app(settings, store=store, registry=CollectorRegistry(), environ={})
    response = app.test_client().get("/-/ready")
    assert response.status_code == 503
    assert f"needs {migrate.head_revision()}" in (response.json or {})["error"]["message"]


def test_metrics_exposes_the_ingest_metrics_in_text_format(client: FlaskClient) -> None:
    client.post("/webhook/alertmanager", data=fixture_body("firing_single.json"), headers=bearer())
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert 'recoverlink_alertmanager_notifications_total{outcome="accepted"} 1.0' in text
    assert 'recoverlink_alerts_received_total{result="new",status="firing"} 1.0' in text
    assert "recoverlink_http_request_duration_seconds_bucket" in text


def test_api_needs_a_token(client: FlaskClient) -> None:
    response = client.get("/api/v1/alerts")
    assert response.status_code == 401
    assert (response.json or {})["error"]["code"] == "unauthorized"


def test_api_refuses_an_unknown_token(client: FlaskClient) -> None:
    assert client.get("/api/v1/alerts", headers=bearer("rl_nope")).status_code == 401


def test_webhook_token_is_not_an_api_token(client: FlaskClient) -> None:
    assert client.get("/api/v1/alerts", headers=bearer()).status_code == 401


def test_viewer_token_lists_stored_alerts_newest_first(client: FlaskClient, store: Store) -> None:
    client.post("/webhook/alertmanager", data=fixture_body("firing_group.json"), headers=bearer())
    viewer = token_for(store, Role.VIEWER)
    page = client.get("/api/v1/alerts?limit=2", headers=bearer(viewer)).json or {}
    assert [item["id"] for item in page["items"]] == [3, 2]
    assert page["next_cursor"] == 2
    rest = client.get(f"/api/v1/alerts?limit=2&cursor={page['next_cursor']}", headers=bearer(viewer)).json
    assert [item["id"] for item in (rest or {})["items"]] == [1]
    assert (rest or {})["next_cursor"] is None


def test_api_filters_by_status(client: FlaskClient, store: Store) -> None:
    client.post("/webhook/alertmanager", data=fixture_body("firing_group.json"), headers=bearer())
    client.post("/webhook/alertmanager", data=fixture_body("mixed_group.json"), headers=bearer())
    admin = token_for(store, Role.ADMIN)
    items = (client.get("/api/v1/alerts?status=resolved", headers=bearer(admin)).json or {})["items"]
    assert [item["status"] for item in items] == ["resolved"]


def test_api_rejects_bad_query_parameters_naming_them(client: FlaskClient, store: Store) -> None:
    viewer = token_for(store, Role.VIEWER)
    for query, field in [("limit=0", "limit"), ("limit=abc", "limit"), ("status=open", "status")]:
        response = client.get(f"/api/v1/alerts?{query}", headers=bearer(viewer))
        assert response.status_code == 400
        assert (response.json or {})["error"]["field"] == field


def test_roles_are_ordered() -> None:
    assert Role.ADMIN.grants(Role.OPERATOR)
    assert Role.OPERATOR.grants(Role.VIEWER)
    assert not Role.VIEWER.grants(Role.OPERATOR)
    assert not Role.OPERATOR.grants(Role.ADMIN)
