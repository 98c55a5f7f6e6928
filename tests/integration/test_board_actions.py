"""Signing in to the board and the operators' forms: the session cookie, CSRF, roles, and each action's
transition or field change with its audit entry."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session
from flask.sessions import NullSession
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from sqlalchemy import update

from recoverlink.config.enrichment_loader import LoadedEnrichment
from recoverlink.domain.tokens import Role
from recoverlink.store.engine import Store
from recoverlink.store.schema import api_tokens
from recoverlink.web import create_app
from recoverlink.web.board_session import SESSION_COOKIE
from tests.conftest import FakeClock
from tests.integration.test_recoveries_api import Recoveries
from tests.support.board import Agent, alert_payload, board_settings, catalog_only_enrichment, csrf_of

FORMS = ("workaround", "impact", "messaging", "cx-updated", "verified", "note")


@pytest.fixture(scope="module")
def loaded() -> LoadedEnrichment:
    return catalog_only_enrichment()


@pytest.fixture
def app(
    tmp_path: Path, store: Store, registry: CollectorRegistry, clock: FakeClock, loaded: LoadedEnrichment
) -> Flask:
    """A private board (the default): reading needs a sign-in."""
    settings = board_settings(tmp_path, str(store.engine.url))
    return create_app(settings, store=store, registry=registry, clock=clock, environ={}, enrichment=loaded)


@pytest.fixture
def rec(client: FlaskClient, store: Store, loaded: LoadedEnrichment, clock: FakeClock) -> Recoveries:
    rec = Recoveries(store, loaded, clock, client)
    rec.deliver(alert_payload("PaymentsDown", "payments-api", "00000000000000a1"))
    return rec


@pytest.fixture
def agent(client: FlaskClient) -> Agent:
    return Agent(client)


def signed_in(agent: Agent, rec: Recoveries, role: Role) -> Agent:
    assert agent.sign_in(rec.token(role)).status_code == 303
    return agent


def recovery(rec: Recoveries) -> Any:
    return rec.get("/api/v1/recoveries/1")


def session_cookie(client: FlaskClient) -> Any:
    cookie = client.get_cookie(SESSION_COOKIE, path="/")
    assert cookie is not None, "no session cookie"
    return cookie


# --- sign-in ---------------------------------------------------------------------------------


def test_a_wrong_token_is_refused_and_signs_nobody_in(rec: Recoveries, agent: Agent) -> None:
    response = agent.sign_in("rl_not_a_token")
    assert response.status_code == 401
    assert "That token is unknown or revoked." in response.get_data(as_text=True)
    assert agent.http.get("/board").status_code == 303, "still sent to the sign-in page"


def test_a_viewer_reads_the_board_but_gets_no_operator_forms_and_may_not_post(
    rec: Recoveries, agent: Agent
) -> None:
    signed_in(agent, rec, Role.VIEWER)
    page = agent.page("/board/recoveries/1")
    assert "Signed in as <strong>viewer-on-call</strong> (viewer)" in page
    assert "Operator actions" not in page
    csrf = csrf_of(agent.http.get("/board/recoveries/1"))  # the sign-out form's token
    for form in FORMS:
        response = agent.http.post(
            f"/board/recoveries/1/{form}", data={"csrf_token": csrf, "workaround": "x", "text": "x"}
        )
        assert response.status_code == 403, form
        assert "This needs an operator token" in response.get_data(as_text=True)
    assert recovery(rec)["state"] == "opened"
    assert recovery(rec)["workaround"] is None


def test_an_operator_gets_every_form_that_applies(rec: Recoveries, agent: Agent) -> None:
    signed_in(agent, rec, Role.OPERATOR)
    page = agent.page("/board/recoveries/1")
    for button in ("Publish workaround", "Confirm impact", "Approve customer messaging", "Add note"):
        assert f">{button}</button>" in page, button
    assert "Mark verified" not in page, "verification counts only once the fix is deployed"
    rec.deliver(alert_payload("PaymentsDown", "payments-api", "00000000000000a1", status="resolved"))
    page = agent.page("/board/recoveries/1")
    assert ">Mark verified</button>" in page
    assert ">Confirm CX updated</button>" in page


def test_the_session_cookie_is_httponly_samesite_strict_and_holds_no_token(
    app: Flask, rec: Recoveries, agent: Agent
) -> None:
    token = rec.token(Role.OPERATOR)
    before = session_cookie_after_get(agent)
    response = agent.sign_in(token)
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(SESSION_COOKIE))
    assert "HttpOnly" in header
    assert "SameSite=Strict" in header
    assert "Expires=" in header, "a sign-in lasts board.session_lifetime"
    assert token not in header
    cookie = session_cookie(agent.http)
    assert cookie.value != before, "a new session at sign-in (no fixation)"
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    assert serializer is not None
    data = serializer.loads(cookie.value)
    assert set(data) <= {"token_id", "csrf", "_permanent"}
    assert isinstance(data["token_id"], int)
    assert token not in str(data)


def session_cookie_after_get(agent: Agent) -> str:
    agent.http.get("/board/sign-in")
    return str(session_cookie(agent.http).value)


def test_a_revoked_token_ends_its_session_at_the_next_request(
    rec: Recoveries, agent: Agent, store: Store
) -> None:
    signed_in(agent, rec, Role.OPERATOR)
    assert agent.http.get("/board").status_code == 200
    with store.write() as conn:
        conn.execute(update(api_tokens).values(revoked_at=rec.clock()))
    assert agent.http.get("/board").status_code == 303


def test_only_the_pages_open_the_session_cookie_the_webhook_and_api_never_read_it(
    app: Flask, rec: Recoveries, agent: Agent
) -> None:
    signed_in(agent, rec, Role.OPERATOR)
    headers = {"Cookie": f"{SESSION_COOKIE}={session_cookie(agent.http).value}"}
    for path in ("/webhook/alertmanager", "/api/v1/recoveries", "/metrics", "/-/ready"):
        with app.test_request_context(path, method="POST", headers=headers):
            assert isinstance(session, NullSession), path
    for path in ("/board", "/board/recoveries/1", "/status", "/status.json"):
        with app.test_request_context(path, headers=headers):
            assert isinstance(session.get("token_id"), int), path
    webhook = agent.http.post("/webhook/alertmanager", data=b"{}", headers={"Authorization": "Bearer x"})
    assert "Set-Cookie" not in webhook.headers
    assert agent.http.get("/board").status_code == 200, "still signed in"


def test_signing_out_ends_the_session(rec: Recoveries, agent: Agent) -> None:
    signed_in(agent, rec, Role.OPERATOR)
    csrf = csrf_of(agent.http.get("/board"))
    assert agent.http.post("/board/sign-out", data={"csrf_token": csrf}).status_code == 303
    assert agent.http.get("/board").status_code == 303


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/board/recoveries/1", "/board/recoveries/1"),
        ("/status", "/status"),
        ("https://evil.example/board", "/board"),
        ("//evil.example/board", "/board"),
        ("/\\evil.example", "/board"),
        ("/api/v1/recoveries", "/board"),
        ("/board/sign-in", "/board"),
    ],
)
def test_after_signing_in_it_goes_back_only_to_a_page_of_the_board(
    rec: Recoveries, agent: Agent, given: str, expected: str
) -> None:
    page = agent.http.get("/board/sign-in")
    data = {"token": rec.token(Role.VIEWER), "csrf_token": csrf_of(page), "next": given}
    assert agent.http.post("/board/sign-in", data=data).headers["Location"] == expected


# --- CSRF ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [f"/board/recoveries/1/{form}" for form in FORMS] + ["/board/sign-out"])
@pytest.mark.parametrize("csrf", [None, "", "forged-token"])
def test_every_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
    rec: Recoveries, agent: Agent, url: str, csrf: str | None
) -> None:
    signed_in(agent, rec, Role.OPERATOR)
    before = recovery(rec)
    data = {"workaround": "Use PayPal", "public_message": "Cards fail", "text": "a note"}
    if csrf is not None:
        data["csrf_token"] = csrf
    response = agent.http.post(url, data=data)
    assert response.status_code == 403
    assert "403: csrf-rejected" in response.get_data(as_text=True)
    assert recovery(rec) == before
    assert agent.http.get("/board").status_code == 200, "still signed in"


def test_a_sign_in_without_the_forms_csrf_token_is_refused(rec: Recoveries, agent: Agent) -> None:
    agent.http.get("/board/sign-in")
    response = agent.http.post("/board/sign-in", data={"token": rec.token(Role.OPERATOR)})
    assert response.status_code == 403
    assert agent.http.get("/board").status_code == 303


# --- the actions -----------------------------------------------------------------------------


def last_entries(rec: Recoveries, count: int) -> list[tuple[str, str, str, Any]]:
    timeline = recovery(rec)["timeline"][-count:]
    return [
        (e["kind"], e["source"], e["actor"], e["details"].get("event") or e["details"].get("value"))
        for e in timeline
    ]


def test_publishing_a_workaround_moves_the_state_and_audits_both_changes(
    rec: Recoveries, agent: Agent
) -> None:
    signed_in(agent, rec, Role.OPERATOR)
    rec.clock.now += timedelta(minutes=4)
    response = agent.submit(1, "workaround", workaround="Offer PayPal at checkout\r\n")
    assert (response.status_code, response.headers["Location"]) == (303, "/board/recoveries/1")
    after = recovery(rec)
    assert (after["state"], after["workaround"]) == ("workaround_available", "Offer PayPal at checkout")
    assert after["milestones"]["workaround_published"] == rec.clock.now.isoformat()
    assert last_entries(rec, 2) == [
        ("transition", "operator", "operator-on-call", "workaround_published"),
        ("workaround", "operator", "operator-on-call", "Offer PayPal at checkout"),
    ]
    page = agent.page("/board/recoveries/1")
    assert "Workaround published." in page
    assert "Offer PayPal at checkout</dd>" in page
    assert "Offer PayPal at checkout</dd>" in agent.page("/board")


def test_editing_the_workaround_later_is_a_field_change_only(rec: Recoveries, agent: Agent) -> None:
    signed_in(agent, rec, Role.OPERATOR)
    agent.submit(1, "workaround", workaround="Offer PayPal")
    agent.submit(1, "workaround", workaround="Offer PayPal or bank transfer")
    assert last_entries(rec, 1) == [
        ("workaround", "operator", "operator-on-call", "Offer PayPal or bank transfer")
    ]
    assert "Workaround saved." in agent.page("/board/recoveries/1")


def test_confirming_impact_is_the_impact_confirmed_step_and_is_observed(
    rec: Recoveries, agent: Agent, registry: CollectorRegistry
) -> None:
    signed_in(agent, rec, Role.OPERATOR)
    rec.clock.now += timedelta(minutes=6)
    agent.submit(1, "impact", reason="agents report failed card payments")
    after = recovery(rec)
    assert after["state"] == "impact_confirmed"
    entry = after["timeline"][-1]
    assert (entry["details"]["event"], entry["actor"]) == ("impact_confirmed", "operator-on-call")
    assert entry["details"]["reason"] == "agents report failed card payments"
    labels = {"team": "payments", "priority": after["priority"]}
    assert registry.get_sample_value("recoverlink_recovery_time_to_impact_seconds_sum", labels) == 360


def test_approving_customer_messaging_is_the_fix_started_step_with_the_public_message(
    rec: Recoveries, agent: Agent
) -> None:
    signed_in(agent, rec, Role.OPERATOR)
    agent.submit(1, "messaging", public_message="Card payments fail; PayPal works.")
    after = recovery(rec)
    assert (after["state"], after["public_message"]) == (
        "fix_in_progress",
        "Card payments fail; PayPal works.",
    )
    assert last_entries(rec, 2) == [
        ("transition", "operator", "operator-on-call", "fix_started"),
        ("public_message", "operator", "operator-on-call", "Card payments fail; PayPal works."),
    ]


def test_cx_updated_and_verified_count_only_after_the_fix_then_verification_closes(
    rec: Recoveries, agent: Agent
) -> None:
    signed_in(agent, rec, Role.OPERATOR)
    entries = len(recovery(rec)["timeline"])
    agent.submit(1, "verified")
    assert "Nothing changed: verification counts once the fix is deployed" in agent.page(
        "/board/recoveries/1"
    )
    assert len(recovery(rec)["timeline"]) == entries, "no audit entry for a step that changed nothing"
    rec.deliver(alert_payload("PaymentsDown", "payments-api", "00000000000000a1", status="resolved"))
    agent.submit(1, "cx-updated", reason="agent banner updated")
    assert "cx_updated" in recovery(rec)["milestones"]
    assert last_entries(rec, 1) == [("transition", "operator", "operator-on-call", "cx_updated")]
    agent.submit(1, "verified", reason="checkout success rate back to normal")
    after = recovery(rec)
    assert after["state"] == "closed", "verified, no ITSM to wait for: the recovery closes"
    assert last_entries(rec, 1) == [("transition", "operator", "operator-on-call", "impact_verified")]


def test_a_note_is_an_audit_entry_that_moves_nothing(rec: Recoveries, agent: Agent) -> None:
    signed_in(agent, rec, Role.OPERATOR)
    agent.submit(1, "note", text="Bank confirmed the outage on their side.")
    after = recovery(rec)
    assert after["state"] == "opened"
    entry = after["timeline"][-1]
    assert (entry["kind"], entry["source"], entry["actor"]) == ("note", "operator", "operator-on-call")
    assert entry["details"] == {"text": "Bank confirmed the outage on their side."}
    assert "Bank confirmed the outage on their side." in agent.page("/board/recoveries/1")


@pytest.mark.parametrize(
    ("form", "fields", "message"),
    [
        ("workaround", {"workaround": "   "}, "workaround: must not be blank"),
        ("messaging", {}, "public_message: must not be blank"),
        ("note", {"text": "x" * 2001}, "text: must be at most 2000 characters"),
        ("note", {"text": "a\x00b"}, "text: must not contain NUL characters"),
    ],
)
def test_bad_form_text_is_a_400_page_and_changes_nothing(
    rec: Recoveries, agent: Agent, form: str, fields: dict[str, str], message: str
) -> None:
    signed_in(agent, rec, Role.OPERATOR)
    before = recovery(rec)
    response = agent.submit(1, form, **fields)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert recovery(rec) == before


def test_a_step_the_state_machine_refuses_is_a_409_page(rec: Recoveries, agent: Agent) -> None:
    signed_in(agent, rec, Role.OPERATOR)
    assert rec.move({"target": "canceled", "reason": "false alarm"}).status_code == 200
    response = agent.submit(1, "impact")
    assert response.status_code == 409
    assert "the recovery is canceled" in response.get_data(as_text=True)
    assert "Operator actions" in agent.page("/board/recoveries/1"), "a note is still possible"
    assert ">Confirm impact</button>" not in agent.page("/board/recoveries/1")


def test_an_action_on_an_unknown_recovery_is_a_404_page(rec: Recoveries, agent: Agent) -> None:
    signed_in(agent, rec, Role.OPERATOR)
    csrf = csrf_of(agent.http.get("/board/recoveries/1"))
    for recovery_id in (99, 2**63):
        response = agent.http.post(
            f"/board/recoveries/{recovery_id}/note", data={"csrf_token": csrf, "text": "x"}
        )
        assert response.status_code == 404
        assert response.mimetype == "text/html"
