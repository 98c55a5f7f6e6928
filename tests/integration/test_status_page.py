"""The customer status page: each catalog journey's state and the public message, and nothing internal."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from sqlalchemy import update

from recoverlink.config.enrichment_loader import LoadedEnrichment
from recoverlink.store.board_queries import MAX_OPEN
from recoverlink.store.engine import Store
from recoverlink.store.schema import recoveries
from recoverlink.web import create_app
from tests.conftest import FakeClock
from tests.integration.test_recoveries_api import Recoveries
from tests.support.board import alert_payload, board_settings, catalog_only_enrichment

FINGERPRINT = "00000000000000c1"
OPERATIONAL = {"status": "operational", "phase": None, "since": None, "messages": []}


@pytest.fixture(scope="module")
def loaded() -> LoadedEnrichment:
    return catalog_only_enrichment()


@pytest.fixture
def app(tmp_path: Path, store: Store, clock: FakeClock, loaded: LoadedEnrichment) -> Flask:
    settings = board_settings(tmp_path, str(store.engine.url))
    return create_app(
        settings, store=store, registry=CollectorRegistry(), clock=clock, environ={}, enrichment=loaded
    )


@pytest.fixture
def rec(client: FlaskClient, store: Store, loaded: LoadedEnrichment, clock: FakeClock) -> Recoveries:
    return Recoveries(store, loaded, clock, client)


def test_with_nothing_open_every_journey_is_operational(client: FlaskClient) -> None:
    body = client.get("/status.json").json
    assert body == {
        "status": "operational",
        "updated_at": "2026-11-22T18:10:00+00:00",
        "journeys": [{"name": name, **OPERATIONAL} for name in ("billing", "checkout", "login", "support")],
        "other_services": None,
    }
    page = client.get("/status").get_data(as_text=True)
    assert "All services are working normally." in page
    assert '<meta http-equiv="refresh" content="10">' in page
    assert "<script" not in page


def test_a_degraded_journey_shows_its_phase_and_the_public_message_only(
    rec: Recoveries, client: FlaskClient, store: Store
) -> None:
    rec.deliver(
        alert_payload("PaymentsApiDown", "payments-api", FINGERPRINT, summary="pod crashloop in eu-1")
    )
    with store.write() as conn:
        conn.execute(
            update(recoveries).values(
                itsm_system="servicenow", incident_id="abc123", incident_number="INC0012345",
                incident_url="https://itsm.example/INC0012345", incident_status="in_progress",
            )
        )  # fmt: skip
    rec.clock.now += timedelta(minutes=5)
    assert rec.patch({"public_message": "Card payments may fail. PayPal works."}).status_code == 200
    body = client.get("/status.json").json
    assert body is not None
    checkout = next(j for j in body["journeys"] if j["name"] == "checkout")
    assert checkout == {
        "name": "checkout",
        "status": "degraded",
        "phase": "investigating",
        "since": "2026-11-22T18:10:00+00:00",
        "messages": ["Card payments may fail. PayPal works."],
    }
    assert body["status"] == "degraded"
    page = client.get("/status").get_data(as_text=True)
    assert "Degraded: investigating" in page
    assert "Card payments may fail. PayPal works." in page
    for text in (client.get("/status.json").get_data(as_text=True), page):
        for internal in (
            "payments-api", "Payments", "payments\"", "servicenow", "INC0012345", "abc123", "itsm.example",
            FINGERPRINT, "pod crashloop", "PaymentsApiDown", "alertmanager", "sre", "critical", "P1",
        ):  # fmt: skip
            assert internal not in text, internal


@pytest.mark.parametrize(
    ("target", "phase", "message"),
    [
        ("workaround_available", "identified", "We have found the cause and are working on a fix."),
        ("fix_deployed", "monitoring", "A fix is in place and we are watching the results."),
        ("closed", None, None),
        ("canceled", None, None),
    ],
)
def test_the_phase_follows_the_state_with_a_default_message(
    rec: Recoveries, client: FlaskClient, target: str, phase: str | None, message: str | None
) -> None:
    rec.deliver(alert_payload("PaymentsApiDown", "payments-api", FINGERPRINT))
    assert rec.move({"target": target, "reason": "test"}).status_code == 200
    body = client.get("/status.json").json
    assert body is not None
    checkout = next(j for j in body["journeys"] if j["name"] == "checkout")
    assert checkout["phase"] == phase
    assert checkout["messages"] == ([message] if message else [])


def test_the_worst_phase_of_a_journeys_recoveries_wins_and_messages_are_not_repeated(
    rec: Recoveries, client: FlaskClient
) -> None:
    rec.deliver(alert_payload("PaymentsApiDown", "payments-api", FINGERPRINT))
    rec.deliver(alert_payload("PaymentsApiDown", "payments-api", FINGERPRINT, status="resolved"))
    rec.clock.now += timedelta(hours=2)  # past the reopen window: a new recovery, linked to the first
    rec.deliver(
        alert_payload("PaymentsApiDown", "payments-api", "00000000000000c2", starts_at="2026-11-22T20:09:00Z")
    )
    assert [r["state"] for r in rec.get("/api/v1/recoveries")["items"]] == ["opened", "fix_deployed"]
    for recovery_id in (1, 2):
        assert rec.patch({"public_message": "Checkout is slow."}, recovery_id=recovery_id).status_code == 200
    checkout = next(j for j in (client.get("/status.json").json or {})["journeys"] if j["name"] == "checkout")
    assert (checkout["phase"], checkout["messages"]) == ("investigating", ["Checkout is slow."])


def test_a_recovery_outside_every_journey_shows_as_other_services_without_a_name(
    rec: Recoveries, client: FlaskClient
) -> None:
    rec.deliver(alert_payload("MysteryDown", "secret-internal-thing", FINGERPRINT))
    body = client.get("/status.json").json
    assert body is not None
    assert body["other_services"]["status"] == "degraded"
    assert body["other_services"]["name"] == "Other services"
    assert "secret-internal-thing" not in client.get("/status").get_data(as_text=True)


def test_a_journey_named_only_by_confirmed_impact_facts_is_degraded(
    rec: Recoveries, client: FlaskClient, store: Store
) -> None:
    """The catalog does not tie the service to `support`; the impact lookup found it affected."""
    rec.deliver(alert_payload("MysteryDown", "secret-internal-thing", FINGERPRINT))
    with store.write() as conn:
        conn.execute(update(recoveries).values(impact={"facts": {"journeys": ["support"]}}))
    body = client.get("/status.json").json or {}
    support = next(j for j in body["journeys"] if j["name"] == "support")
    assert (support["status"], support["phase"]) == ("degraded", "investigating")
    assert body["other_services"] is None


def test_a_journey_degraded_by_a_recovery_beyond_the_boards_card_limit_still_shows(
    rec: Recoveries, client: FlaskClient
) -> None:
    """The board shows the newest MAX_OPEN open recoveries; the status page counts every one."""
    rec.deliver(alert_payload("PaymentsApiDown", "payments-api", FINGERPRINT))
    rec.open_unrelated(MAX_OPEN)
    checkout = next(j for j in (client.get("/status.json").json or {})["journeys"] if j["name"] == "checkout")
    assert checkout["status"] == "degraded"
