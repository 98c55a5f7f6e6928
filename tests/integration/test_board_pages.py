"""The board's pages through the Flask test client: cards most severe first, filters, the fragment that
live updates fetch, who may read, escaping of hostile alert text, security headers and HTML errors."""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from recoverlink.config.enrichment_loader import LoadedEnrichment
from recoverlink.domain.tokens import Role
from recoverlink.store.engine import Store, StoreOptions, make_engine
from recoverlink.web import create_app
from recoverlink.web.pages import CONTENT_SECURITY_POLICY
from tests.conftest import FakeClock, bearer, fixture_body
from tests.integration.test_recoveries_api import Recoveries
from tests.support.board import Agent, alert_payload, board_settings, catalog_only_enrichment

HOSTILE = '<script>alert("pwned")</script>'
CARD_IDS = re.compile(r'data-recovery-id="(\d+)"')


@pytest.fixture(scope="module")
def loaded() -> LoadedEnrichment:
    return catalog_only_enrichment()


def board_app(
    tmp_path: Path, store: Store, clock: FakeClock, loaded: LoadedEnrichment, **board: object
) -> Flask:
    settings = board_settings(tmp_path, str(store.engine.url), **board)
    return create_app(
        settings, store=store, registry=CollectorRegistry(), clock=clock, environ={}, enrichment=loaded
    )


@pytest.fixture
def app(tmp_path: Path, store: Store, clock: FakeClock, loaded: LoadedEnrichment) -> Flask:
    """A board anyone may read, as on a wall screen."""
    return board_app(tmp_path, store, clock, loaded, public=True)


@pytest.fixture
def rec(client: FlaskClient, store: Store, loaded: LoadedEnrichment, clock: FakeClock) -> Recoveries:
    return Recoveries(store, loaded, clock, client)


def deliver_at(rec: Recoveries, minutes: int, name: str, service: str, **kwargs: str) -> None:
    rec.clock.now += timedelta(minutes=minutes)
    fingerprint = hashlib.sha256(f"{name}/{service}".encode()).hexdigest()[:16]
    rec.deliver(alert_payload(name, service, fingerprint, **kwargs))


def seed_severities(rec: Recoveries) -> None:
    """1 billing P3 (fixed), 2 payments P1, 3 crm P2 (fix in progress), 4 and 6 unknown, 5 identity P2,
    7 canceled."""
    deliver_at(rec, 10, "BillingDown", "billing-worker")
    deliver_at(rec, 10, "PaymentsDown", "payments-api")
    deliver_at(rec, 10, "CrmDown", "crm-api")
    deliver_at(rec, 10, "MysteryA", "mystery-a")
    deliver_at(rec, 10, "LoginSlow", "identity-api", severity="warning")
    deliver_at(rec, 10, "MysteryB", "mystery-b")
    deliver_at(rec, 10, "MysteryC", "mystery-c")
    assert rec.move({"target": "fix_in_progress", "reason": "rolling back"}, recovery_id=3).status_code == 200
    assert rec.move({"target": "canceled", "reason": "false alarm"}, recovery_id=7).status_code == 200
    deliver_at(rec, 1, "BillingDown", "billing-worker", status="resolved")


def card_ids(html: str) -> list[int]:
    return [int(n) for n in CARD_IDS.findall(html)]


def test_cards_are_ordered_by_priority_then_state_then_age_and_closed_ones_are_gone(
    rec: Recoveries, client: FlaskClient
) -> None:
    seed_severities(rec)
    priorities = {item["id"]: item["priority"] for item in rec.get("/api/v1/recoveries")["items"]}
    assert (priorities[2], priorities[3], priorities[5], priorities[1], priorities[4]) == (
        "P1",
        "P2",
        "P2",
        "P3",
        "unknown",
    )
    html = Agent(client).page("/board")
    assert card_ids(html) == [2, 5, 3, 1, 4, 6], "P1; P2 opened before P2 fixing; P3; unknown by age"
    assert "Fix deployed, verifying" in html, "a fixed recovery stays until it is verified"


def test_a_card_says_what_is_degraded_who_owns_it_and_for_how_long(
    rec: Recoveries, client: FlaskClient
) -> None:
    deliver_at(rec, 0, "PaymentsDown", "payments-api")
    rec.clock.now += timedelta(minutes=7, seconds=5)
    card = Agent(client).page("/board")
    for text in (
        "payments-api PaymentsDown",  # the alert's summary
        "Card payments backend (payments-api)",  # the catalog's description
        "checkout",
        "retail, business",
        "Payments",  # the owner team's display name
        "Opened</span>\n    for",
        ">7m 5s</time>",
        "Checking customer impact",
        "none yet",  # no workaround
        "no ITSM",
        "first alert placed",
    ):
        assert text in card, text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("team=crm", [3]),
        ("team=sre", [4, 6]),
        ("journey=checkout", [2]),
        ("journey=login", [5]),
        ("segment=business", [2, 5, 1]),
        ("segment=retail&team=payments", [2]),
        ("journey=support", [3]),
        ("journey=support&segment=retail", []),
        ("team=nobody", []),
        ("team=&journey=&segment=", [2, 5, 3, 1, 4, 6]),
    ],
)
def test_filters_by_team_journey_and_segment(
    rec: Recoveries, client: FlaskClient, query: str, expected: list[int]
) -> None:
    seed_severities(rec)
    agent = Agent(client)
    assert card_ids(agent.page(f"/board?{query}")) == expected
    assert card_ids(agent.page(f"/board/cards?{query}")) == expected


def test_the_filter_selects_offer_the_catalogs_teams_journeys_and_segments(client: FlaskClient) -> None:
    html = Agent(client).page("/board?journey=checkout")
    assert '<option value="payments">Payments</option>' in html
    assert '<option value="checkout" selected>checkout</option>' in html
    assert '<option value="business">business</option>' in html
    assert "No open recoveries. All is well." in html


def test_a_filter_no_select_could_send_is_a_400_page(client: FlaskClient) -> None:
    response = client.get("/board?team=" + "x" * 256)
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "team must be at most 255 characters" in response.get_data(as_text=True)


def test_the_cards_fragment_answers_304_until_something_changes(rec: Recoveries, client: FlaskClient) -> None:
    deliver_at(rec, 0, "PaymentsDown", "payments-api")
    first = client.get("/board/cards")
    assert first.status_code == 200
    assert first.headers["X-Recoveries-Shown"] == "1"
    assert "<html" not in first.get_data(as_text=True), "the cards alone, no page around them"
    etag = first.headers["ETag"]
    assert client.get("/board/cards", headers={"If-None-Match": etag}).status_code == 304
    rec.move({"target": "impact_confirmed", "reason": "CRM shows failed orders"}, recovery_id=1)
    changed = client.get("/board/cards", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert "Impact confirmed" in changed.get_data(as_text=True)
    page = Agent(client).page("/board")
    assert f'data-etag="{changed.headers["ETag"].strip(chr(34))}"' in page


def test_the_page_loads_the_live_update_script_and_works_without_it(client: FlaskClient) -> None:
    html = Agent(client).page("/board")
    assert '<script src="/static/board.js" defer></script>' in html
    assert 'data-cards-url="/board/cards"' in html
    assert 'data-refresh-seconds="10"' in html
    assert "<script>" not in html, "no inline script: the CSP forbids it"
    assert '<form method="get" action="/board"' in html, "filters work as a plain form"
    script = client.get("/static/board.js")
    assert script.status_code == 200
    assert "If-None-Match" in script.get_data(as_text=True)


def test_hostile_alert_text_is_escaped_on_every_page(rec: Recoveries, client: FlaskClient) -> None:
    payload = alert_payload("Evil", HOSTILE, "00000000000000ee", summary=HOSTILE, description=HOSTILE)
    payload["alerts"][0]["labels"]["instance"] = HOSTILE
    rec.deliver(payload)
    assert rec.patch({"workaround": HOSTILE, "public_message": HOSTILE}).status_code == 200
    rec.http.post(
        "/api/v1/recoveries/1/transitions",
        json={"target": "impact_confirmed", "reason": HOSTILE},
        headers={"Authorization": f"Bearer {rec.token(Role.OPERATOR)}"},
    )
    for url in ("/board", "/board/cards", "/board/recoveries/1", "/status"):
        body = client.get(url).get_data(as_text=True)
        assert "<script>alert" not in body, url
    detail = client.get("/board/recoveries/1").get_data(as_text=True)
    assert detail.count("&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;") >= 4
    assert "instance=&lt;script&gt;" in detail
    status = client.get("/status.json")
    assert "<" not in status.get_data(as_text=True), "escaped as \\u003c, as Go's encoding/json does"
    assert status.json is not None and status.json["other_services"]["messages"] == [HOSTILE]


def test_a_non_http_incident_url_is_never_a_link() -> None:
    from recoverlink.web.board_view import incident_link

    link = incident_link({"system": "rt", "id": "7", "number": "7", "url": "javascript:alert(1)"})
    assert link is not None and link.url is None
    https = incident_link({"system": "rt", "id": "7", "number": "7", "url": "https://rt.example/7"})
    assert https is not None and https.url == "https://rt.example/7"


def test_pages_send_the_security_headers(client: FlaskClient) -> None:
    for url in ("/board", "/board/cards", "/board/sign-in", "/status", "/board/recoveries/99"):
        response = client.get(url)
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, url
        assert "script-src 'self'" in CONTENT_SECURITY_POLICY
        assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize("url", ["/board/recoveries/99", f"/board/recoveries/{2**63}", "/board/no-such-page"])
def test_pages_answer_errors_with_an_html_page(client: FlaskClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "404: not-found" in response.get_data(as_text=True)
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_the_api_still_answers_json_errors(client: FlaskClient) -> None:
    response = client.get("/api/v1/no-such-thing")
    assert (response.status_code, response.mimetype) == (404, "application/json")


# --- who may read ----------------------------------------------------------------------------


@pytest.fixture
def private_client(tmp_path: Path, store: Store, clock: FakeClock, loaded: LoadedEnrichment) -> FlaskClient:
    return board_app(tmp_path, store, clock, loaded, public=False).test_client()


def test_a_private_board_sends_readers_to_sign_in_and_the_fragment_answers_401(
    private_client: FlaskClient,
) -> None:
    page = private_client.get("/board/recoveries/1?x=1")
    assert page.status_code == 303
    assert page.headers["Location"] == "/board/sign-in?next=/board/recoveries/1?x%3D1"
    assert private_client.get("/board").headers["Location"] == "/board/sign-in?next=/board"
    assert private_client.get("/board/cards").status_code == 401
    assert private_client.get("/board/recoveries/1/postmortem.md").status_code == 303
    assert private_client.get("/status").status_code == 200, "the status page is public by default"


def test_a_viewer_token_reads_a_private_board(
    private_client: FlaskClient, store: Store, loaded: LoadedEnrichment, clock: FakeClock
) -> None:
    rec = Recoveries(store, loaded, clock, private_client)
    deliver_at(rec, 0, "PaymentsDown", "payments-api")
    agent = Agent(private_client)
    assert agent.sign_in(rec.token(Role.VIEWER)).headers["Location"] == "/board"
    assert card_ids(agent.page("/board")) == [1]
    assert private_client.get("/board/cards").status_code == 200


def test_a_private_status_page_needs_a_sign_in_too(
    tmp_path: Path, store: Store, clock: FakeClock, loaded: LoadedEnrichment
) -> None:
    client = board_app(tmp_path, store, clock, loaded, status_public=False).test_client()
    assert client.get("/status").headers["Location"] == "/board/sign-in?next=/status"
    assert client.get("/status.json").status_code == 401


def test_without_a_session_secret_nobody_can_sign_in_but_a_public_board_reads(
    tmp_path: Path, store: Store, clock: FakeClock, loaded: LoadedEnrichment
) -> None:
    client = board_app(tmp_path, store, clock, loaded, public=True, session_secret=None).test_client()
    assert client.get("/board").status_code == 200
    page = client.get("/board/sign-in").get_data(as_text=True)
    assert "Signing in is off: board.session_secret is not configured." in page
    assert client.post("/board/sign-in", data={"token": "x", "csrf_token": ""}).status_code == 403


@pytest.mark.postgres
def test_a_store_that_is_down_gets_an_html_503_page_even_for_a_signed_in_reader(tmp_path: Path) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/none"  # port 1 refuses: the store is down
    store = Store(make_engine(url, StoreOptions(connect_timeout_seconds=1)))
    settings = board_settings(tmp_path, url, public=True)
    app = create_app(
        settings, store=store, registry=CollectorRegistry(), environ={}, enrichment=catalog_only_enrichment()
    )
    client = app.test_client()
    with client.session_transaction("/board") as session:  # only pages open it
        session["token_id"] = 1  # a sign-in whose token cannot be read now
    for page in ("/board", "/board/recoveries/1", "/status"):
        response = client.get(page)
        assert (response.status_code, response.mimetype) == (503, "text/html"), page
        assert "503: store-unavailable" in response.get_data(as_text=True)
        assert response.headers["Retry-After"] == "5"


def test_an_unreadable_session_secret_turns_sign_in_off_but_ingest_keeps_serving(
    tmp_path: Path, store: Store, clock: FakeClock, loaded: LoadedEnrichment, caplog: pytest.LogCaptureFixture
) -> None:
    missing = {"file": str(tmp_path / "no-such.secret"), "generate": True}
    with caplog.at_level(logging.ERROR):
        client = board_app(tmp_path, store, clock, loaded, session_secret=missing).test_client()
    assert "board sign-in is off" in caplog.text
    page = client.get("/board/sign-in").get_data(as_text=True)
    assert "Signing in is off: board.session_secret cannot be read (the server log says why)." in page
    assert client.get("/board").status_code == 303, "still private: nobody can read it now"
    delivered = client.post(
        "/webhook/alertmanager", data=fixture_body("firing_single.json"), headers=bearer()
    )
    assert delivered.status_code == 200
