"""Where the time went: the waterfall on a recovery's board page and the postmortem draft, for one
recovery seeded with known times through the webhook, the worker's transitions and the board's forms."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from sqlalchemy import update

from recoverlink.config.enrichment_loader import LoadedEnrichment
from recoverlink.domain.recovery_state import RecoveryEvent, RecoveryEventKind, TransitionSource, apply_event
from recoverlink.domain.tokens import Role
from recoverlink.store import recoveries
from recoverlink.store.engine import Store
from recoverlink.store.schema import recoveries as recoveries_table
from recoverlink.web import create_app
from tests.conftest import FakeClock, bearer
from tests.integration.test_recoveries_api import Recoveries
from tests.support.board import Agent, alert_payload, board_settings, catalog_only_enrichment

FINGERPRINT = "00000000000000d1"

LATENCY = """\
## Where the time went

| Step | Reached | Waited | Since opened | Moved by |
|---|---|---|---|---|
| Opened | 2026-11-22 18:10:00 UTC |   |   | alertmanager |
| Owner known | 2026-11-22 18:10:00 UTC | 0s |   | alertmanager |
| Incident linked | 2026-11-22 18:13:00 UTC | 3m | 3m | worker |
| Impact identified | 2026-11-22 18:16:00 UTC | 3m | 6m | operator-on-call (operator) |
| Workaround published | 2026-11-22 18:25:00 UTC | 9m | 15m | operator-on-call (operator) |
| Fix deployed | 2026-11-22 18:40:00 UTC | 15m | 30m | alertmanager |
| CX updated | 2026-11-22 19:10:30 UTC | 30m 30s | 1h 30s | operator-on-call (operator) |
| Verified | 2026-11-22 19:12:30 UTC | 2m | 1h 2m | operator-on-call (operator) |
| Closed | 2026-11-22 19:12:30 UTC | 0s | 1h 2m | operator-on-call (operator) |

Slowest handoff: Fix deployed → CX updated: 30m 30s, moved by operator-on-call (operator)
"""


@pytest.fixture(scope="module")
def loaded() -> LoadedEnrichment:
    return catalog_only_enrichment()


@pytest.fixture
def app(tmp_path: Path, store: Store, clock: FakeClock, loaded: LoadedEnrichment) -> Flask:
    settings = board_settings(tmp_path, str(store.engine.url))
    return create_app(
        settings, store=store, registry=CollectorRegistry(), clock=clock, environ={}, enrichment=loaded
    )


def link_incident(store: Store, clock: FakeClock) -> None:
    """What the worker's itsm.open_incident job records once the ITSM answered."""
    with store.write() as conn:
        conn.execute(
            update(recoveries_table).values(
                itsm_system="servicenow", incident_id="9d3f", incident_number="INC0010042",
                incident_url="https://itsm.example/INC0010042", incident_status="in_progress",
            )
        )  # fmt: skip
        row = recoveries.load_row(conn, 1, for_update=True)
        event = RecoveryEvent(RecoveryEventKind.INCIDENT_LINKED, TransitionSource.WORKER)
        recoveries.save_transition(
            conn, row, apply_event(recoveries.status_of(row), event, clock()), "worker"
        )


@pytest.fixture
def seeded(client: FlaskClient, store: Store, loaded: LoadedEnrichment, clock: FakeClock) -> Agent:
    """Opened 18:10, incident 18:13, impact 18:16, workaround 18:25, fix 18:40, CX 19:10:30, verified
    and closed 19:12:30; returns the operator's signed-in browser."""
    rec = Recoveries(store, loaded, clock, client)
    rec.deliver(alert_payload("PaymentsApiDown", "payments-api", FINGERPRINT, summary="Card payments fail"))
    agent = Agent(client)
    agent.sign_in(rec.token(Role.OPERATOR))
    for minutes, step in (
        (3, lambda: link_incident(store, clock)),
        (3, lambda: agent.submit(1, "impact", reason="CRM shows failed orders")),
        (9, lambda: agent.submit(1, "workaround", workaround="Offer PayPal | or bank transfer")),
        (
            15,
            lambda: rec.deliver(
                alert_payload("PaymentsApiDown", "payments-api", FINGERPRINT, status="resolved")
            ),
        ),
        (30.5, lambda: agent.submit(1, "cx-updated")),
        (2, lambda: agent.submit(1, "note", text="Bank <b>confirmed</b>\nfixed on their side")),
        (0, lambda: agent.submit(1, "verified", reason="success rate back to normal")),
    ):
        clock.now += timedelta(minutes=minutes)
        step()
    clock.now += timedelta(days=1)  # drafted the next day
    return agent


def test_the_postmortem_draft_has_every_section_and_the_latency_breakdown(
    seeded: Agent, client: FlaskClient
) -> None:
    token = "rl_test_operator"  # the operator token `seeded` registered
    response = client.get("/api/v1/recoveries/1/postmortem.md", headers=bearer(token))
    assert response.status_code == 200
    assert response.mimetype == "text/markdown"
    text = response.get_data(as_text=True)
    assert text.startswith("# Postmortem draft: Card payments fail\n\nRecovery 1, drafted by recoverlink at ")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Summary",
        "## Impact",
        "## Owners",
        "## Incident",
        "## Timeline",
        "## Actions and their outcomes",
        "## Where the time went",
        "## Open questions",
    ]
    assert LATENCY in text
    for line in (
        "| State | Closed since 2026-11-22 19:12:30 UTC |",
        "| Service resolution time | 1h 2m |",
        "- Journeys: checkout",
        "- Segments: retail, business",
        "- Workaround given to agents: Offer PayPal \\| or bank transfer",
        "- Opened for team: payments",
        "- Owner known: 0s after opening, by alertmanager",
        "servicenow incident INC0010042 (https://itsm.example/INC0010042), status in\\_progress.",
        "| 2026-11-22 18:16:00 UTC | operator-on-call | impact confirmed: CRM shows failed orders "
        "| Opened → Impact confirmed |",
        "| 2026-11-22 19:12:30 UTC | operator-on-call | note: Bank \\<b\\>confirmed\\</b\\> fixed on their "
        "side |   |",
        "| 2026-11-22 18:25:00 UTC | operator-on-call | workaround written | set to: Offer PayPal \\| or "
        "bank transfer |",
        "| 2026-11-22 19:10:30 UTC | operator-on-call | CX updated |   |",
        "### Why did the slowest handoff (Fix deployed → CX updated) take 30m 30s?",
        "### What was the root cause?",
    ):
        assert line in text, line
    assert text.endswith("### Which follow-up actions, with owners and due dates?\n")


def test_the_board_page_shows_the_waterfall_who_moved_each_step_and_the_slowest_handoff(
    seeded: Agent,
) -> None:
    page = seeded.page("/board/recoveries/1")
    assert (
        "Slowest handoff: <strong>Fix deployed → CX updated: 30m 30s, moved by operator-on-call "
        "(operator)</strong>" in page
    )
    assert '<tr class=" slowest-step">' in page
    for label, waited, who in (
        ("Incident linked", "3m", "worker"),
        ("Workaround published", "9m", "operator-on-call (operator)"),
        ("Fix deployed", "15m", "alertmanager"),
    ):
        assert f'<th scope="row">{label}</th>' in page
        row = page.split(f'<th scope="row">{label}</th>', 1)[1].split("</tr>", 1)[0]
        assert f"<td>{waited}</td>" in row, label
        assert f"<td>{who}</td>" in row, label
    assert page.count('<rect x="') == 9, "a bar per reached step"
    assert seeded.http.get("/board/recoveries/1/postmortem.md").mimetype == "text/markdown"


def test_the_postmortem_of_an_unknown_recovery_is_a_json_404(client: FlaskClient, store: Store) -> None:
    rec = Recoveries(store, catalog_only_enrichment(), FakeClock(), client)
    response = client.get("/api/v1/recoveries/7/postmortem.md", headers=bearer(rec.token(Role.VIEWER)))
    assert (response.status_code, response.json["error"]["code"] if response.json else None) == (
        404,
        "not-found",
    )
    assert client.get("/api/v1/recoveries/7/postmortem.md").status_code == 401
