"""Ingest enriches every new episode with the shipped catalog and rules, and explains it over the API."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from recoverlink.config.loader import load_settings
from recoverlink.domain.tokens import Role
from recoverlink.store.alerts import list_episodes
from recoverlink.store.engine import Store
from recoverlink.store.tokens import register_token
from recoverlink.telemetry import LabelBounds
from recoverlink.web import create_app
from tests.conftest import FakeClock, bearer, fixture_body, make_settings

EXAMPLE = Path(__file__).parents[2] / "deploy" / "recoverlink.yaml"


@pytest.fixture
def example_app(store: Store, tmp_path: Path, clock: FakeClock) -> Flask:
    settings = load_settings(EXAMPLE, {"RECOVERLINK_DATABASE_URL": str(store.engine.url)})
    # The example's webhook token is generated into var/ on first start; tests use a known one.
    webhook = make_settings(tmp_path).config.webhook
    settings = replace(settings, config=settings.config.model_copy(update={"webhook": webhook}))
    return create_app(settings, store=store, registry=CollectorRegistry(), environ={}, clock=clock)


@pytest.fixture
def example_client(example_app: Flask) -> FlaskClient:
    return example_app.test_client()


def test_new_episode_is_stamped_with_enrichment_and_ruleset_version(
    example_app: Flask, example_client: FlaskClient, store: Store
) -> None:
    assert example_client.post(
        "/webhook/alertmanager", data=fixture_body("firing_single.json"), headers=bearer()
    )
    with store.read() as conn:
        (episode,) = list_episodes(conn, limit=10)
    enrichment = episode.enrichment or {}
    version = example_app.extensions["recoverlink"].enrichment.current.version
    assert enrichment["ruleset_version"] == version
    assert enrichment["service"] == "payments-api"
    assert enrichment["owner"] == "payments"
    assert enrichment["priority"] == "P1"
    assert enrichment["matched_rules"] == ["checkout-outage"]


def test_enrichment_misses_are_counted_once_per_new_episode(
    example_app: Flask, example_client: FlaskClient
) -> None:
    body = fixture_body("firing_single.json").replace(b'"service":"payments-api"', b'"service":"nowhere"')
    body = body.replace(b'"service": "payments-api"', b'"service": "nowhere"')
    example_client.post("/webhook/alertmanager", data=body, headers=bearer())
    example_client.post("/webhook/alertmanager", data=body, headers=bearer())
    registry = example_app.extensions["recoverlink"].metrics.registry
    for reason, expected in (("no_service", 1), ("no_owner", 1), ("no_impact_source", 0)):
        value = registry.get_sample_value("recoverlink_enrichment_misses_total", {"reason": reason})
        assert value == expected, reason


def test_explain_api_returns_the_steps_and_the_enrichment(example_client: FlaskClient, store: Store) -> None:
    with store.write() as conn:
        register_token(conn, "rl_viewer", Role.VIEWER, "viewer", datetime.now(UTC))
    response = example_client.post(
        "/api/v1/explain", data=fixture_body("firing_group.json"), headers=bearer("rl_viewer")
    )
    assert response.status_code == 200
    alerts = (response.json or {})["alerts"]
    assert len(alerts) == 3
    assert alerts[0]["enrichment"]["matched_rules"] == ["payments-latency"]
    assert any(s["kind"] == "rule" and s["matched"] for s in alerts[0]["steps"])


def test_explain_api_rejects_bad_input_with_the_field(example_client: FlaskClient, store: Store) -> None:
    with store.write() as conn:
        register_token(conn, "rl_viewer", Role.VIEWER, "viewer", datetime.now(UTC))
    response = example_client.post("/api/v1/explain", data=b'{"labels": 5}', headers=bearer("rl_viewer"))
    assert response.status_code == 400
    assert (response.json or {})["error"]["field"] == "labels"


def test_explain_api_needs_a_token(example_client: FlaskClient) -> None:
    assert example_client.post("/api/v1/explain", data=b"{}").status_code == 401


def test_recovery_metrics_count_openings_ownership_and_open_states(
    example_app: Flask, example_client: FlaskClient
) -> None:
    example_client.post("/webhook/alertmanager", data=fixture_body("firing_single.json"), headers=bearer())
    example_client.post("/webhook/alertmanager", data=fixture_body("firing_single.json"), headers=bearer())
    registry = example_app.extensions["recoverlink"].metrics.registry
    labels = {"team": "payments", "priority": "P1", "service": "payments-api"}
    assert registry.get_sample_value("recoverlink_recoveries_opened_total", labels) == 1
    ownership = {"team": "payments", "priority": "P1"}
    assert registry.get_sample_value("recoverlink_recovery_time_to_ownership_seconds_count", ownership) == 1
    text = example_client.get("/metrics").get_data(as_text=True)
    gauge = 'recoverlink_recoveries{priority="P1",service="payments-api",state="opened",team="payments"}'
    assert f"{gauge} 1.0" in text


def test_unknown_and_overflowing_label_values_stay_bounded() -> None:
    bounds = LabelBounds(max_services=2)
    assert [bounds.service(s) for s in ("a", "b", "c", "a", None)] == ["a", "b", "other", "a", "unknown"]
    assert (bounds.team(None), bounds.priority("P9"), bounds.priority("P2")) == ("unknown", "unknown", "P2")


def test_operator_reassignment_and_close_are_observed_once(
    example_app: Flask, example_client: FlaskClient, store: Store, clock: FakeClock
) -> None:
    with store.write() as conn:
        register_token(conn, "rl_operator", Role.OPERATOR, "oncall", datetime.now(UTC))
    example_client.post("/webhook/alertmanager", data=fixture_body("firing_single.json"), headers=bearer())
    operator = bearer("rl_operator")
    assert (
        example_client.patch("/api/v1/recoveries/1", json={"owner": "sre"}, headers=operator).status_code
        == 200
    )
    assert (
        example_client.patch("/api/v1/recoveries/1", json={"owner": "sre"}, headers=operator).status_code
        == 200
    )
    clock.now += timedelta(minutes=30)
    close = {"target": "closed", "reason": "verified with the contact center"}
    answer = example_client.post("/api/v1/recoveries/1/transitions", json=close, headers=operator)
    assert answer.status_code == 200
    registry = example_app.extensions["recoverlink"].metrics.registry
    assert registry.get_sample_value("recoverlink_recovery_escalation_bounces_total", {"team": "sre"}) == 1
    labels = {"team": "payments", "priority": "P1", "service": "payments-api"}
    assert registry.get_sample_value("recoverlink_recoveries_closed_total", labels) == 1
    resolution = {"team": "payments", "priority": "P1"}
    assert registry.get_sample_value("recoverlink_recovery_resolution_seconds_sum", resolution) == 1800
