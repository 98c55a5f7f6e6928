"""The recoveries API: list with filters and keyset pages, detail with timeline, operator writes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from werkzeug.test import TestResponse

from recoverlink.config.enrichment_loader import LoadedEnrichment, load_enrichment
from recoverlink.config.loader import load_config
from recoverlink.domain.alerts import AlertPolicy
from recoverlink.domain.tokens import Role
from recoverlink.ingest import ingest_webhook
from recoverlink.store.engine import Store
from recoverlink.store.tokens import register_token
from recoverlink.web import create_app
from tests.conftest import FakeClock, bearer, fixture_body, make_settings

EXAMPLE = Path(__file__).parents[2] / "deploy" / "recoverlink.yaml"


def example_enrichment() -> LoadedEnrichment:
    return load_enrichment(load_config(EXAMPLE), EXAMPLE.parent, str(EXAMPLE))


@pytest.fixture(scope="module")
def loaded() -> LoadedEnrichment:
    return example_enrichment()


@pytest.fixture
def app(
    tmp_path: Path, store: Store, registry: CollectorRegistry, clock: FakeClock, loaded: LoadedEnrichment
) -> Flask:
    """The app with the shipped catalog and rules, so owners are the catalog's teams."""
    settings = make_settings(tmp_path, str(store.engine.url))
    return create_app(settings, store=store, registry=registry, clock=clock, environ={}, enrichment=loaded)


def alert_doc(name: str, service: str, fingerprint: str) -> dict[str, Any]:
    labels = {"alertname": name, "service": service, "severity": "critical"}
    alert = {"status": "firing", "labels": labels, "annotations": {"summary": f"{service} {name}"}}
    alert.update(startsAt="2026-11-22T18:08:59Z", endsAt="0001-01-01T00:00:00Z", fingerprint=fingerprint)
    return {"version": "4", "status": "firing", "alerts": [alert], "groupKey": f"{{}}:{{alertname={name!r}}}"}


@dataclass
class Recoveries:
    """Recoveries made by ingesting Alertmanager payloads, and API calls with role tokens."""

    store: Store
    enrichment: LoadedEnrichment
    clock: FakeClock
    client: FlaskClient | None = None

    def deliver(self, document: dict[str, Any] | str) -> None:
        body = fixture_body(document) if isinstance(document, str) else json.dumps(document).encode()
        ingest_webhook(self.store, body, AlertPolicy(), self.enrichment.enricher, self.clock())

    def open_unrelated(self, count: int, prefix: str = "mystery") -> None:
        """`count` recoveries of services the catalog does not know (the fallback team's), 10 min apart
        so that they never make a storm."""
        for n in range(count):
            self.clock.now += timedelta(minutes=10)
            fingerprint = hashlib.sha256(f"{prefix}-{n}".encode()).hexdigest()[:16]
            self.deliver(alert_doc(f"{prefix}-{n}-down", f"{prefix}-{n}", fingerprint))

    def seed_mix(self) -> None:
        """1: checkout outage (payments, P1); 2: payments-api group (payments, P2), fixed; 3: sre's."""
        self.deliver("firing_single.json")
        self.deliver("firing_group.json")
        self.clock.now += timedelta(minutes=10)
        self.deliver("resolved_group.json")
        self.open_unrelated(1)

    def token(self, role: Role) -> str:
        token = f"rl_test_{role.value}"
        with self.store.write() as conn:
            register_token(conn, token, role, f"{role.value}-on-call", self.clock())
        return token

    @property
    def http(self) -> FlaskClient:
        assert self.client is not None
        return self.client

    def get(self, url: str, role: Role = Role.VIEWER) -> Any:
        response = self.http.get(url, headers=bearer(self.token(role)))
        assert response.status_code == 200, response.json
        return response.json

    def move(self, body: Any, recovery_id: int = 1, role: Role = Role.OPERATOR) -> TestResponse:
        url = f"/api/v1/recoveries/{recovery_id}/transitions"
        return self.http.post(url, json=body, headers=bearer(self.token(role)))

    def patch(self, body: Any, recovery_id: int = 1) -> TestResponse:
        url = f"/api/v1/recoveries/{recovery_id}"
        return self.http.patch(url, json=body, headers=bearer(self.token(Role.OPERATOR)))


@pytest.fixture
def rec(client: FlaskClient, store: Store, loaded: LoadedEnrichment, clock: FakeClock) -> Recoveries:
    return Recoveries(store, loaded, clock, client)


def ids(page: Any) -> list[int]:
    return [item["id"] for item in page["items"]]


def error_of(response: TestResponse) -> dict[str, Any]:
    assert response.json is not None
    body: dict[str, Any] = response.json["error"]
    return body


def body_of(response: TestResponse) -> dict[str, Any]:
    assert response.status_code == 200, response.json
    assert response.json is not None
    return dict(response.json)


# --- list -------------------------------------------------------------------------------------


def test_list_shows_every_recovery_newest_first_with_counts_and_milestones(rec: Recoveries) -> None:
    rec.seed_mix()
    page = rec.get("/api/v1/recoveries")
    assert ids(page) == [3, 2, 1]
    assert page["next_cursor"] is None
    fixed = page["items"][1]
    assert fixed["state"] == "fix_deployed"
    assert (fixed["service"], fixed["team"], fixed["priority"]) == ("payments-api", "payments", "P2")
    assert fixed["correlation_key"] == "service/payments-api"
    assert fixed["alert_counts"] == {"firing": 0, "resolved": 3}
    assert set(fixed["milestones"]) == {"opened", "owner_known", "fix_deployed"}
    assert fixed["state_changed_at"] > fixed["opened_at"]
    for key in ("reopen_count", "storm", "storm_episodes", "symptoms", "linked_to", "workaround"):
        assert key in fixed
    assert fixed["public_message"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=opened", [3, 1]),
        ("state=fix_deployed&state=opened", [3, 2, 1]),
        ("state=fix_deployed,closed", [2]),
        ("team=payments", [2, 1]),
        ("team=sre", [3]),
        ("service=payments-api&priority=P1", [1]),
        ("priority=P2", [2]),
        ("team=payments&state=opened", [1]),
        ("opened_after=2026-11-22T18:15:00Z", [3]),
        ("opened_before=2026-11-22T20:15:00%2B02:00", [2, 1]),
        ("team=nobody", []),
    ],
)
def test_list_filters(rec: Recoveries, query: str, expected: list[int]) -> None:
    rec.seed_mix()
    assert ids(rec.get(f"/api/v1/recoveries?{query}")) == expected


def test_team_stays_the_opening_team_and_owner_filters_who_owns_it_now(rec: Recoveries) -> None:
    rec.deliver("firing_single.json")
    moved = body_of(rec.patch({"owner": "crm"}))
    assert (moved["team"], moved["owner"]) == ("payments", "crm")
    assert ids(rec.get("/api/v1/recoveries?team=payments")) == [moved["id"]]
    assert ids(rec.get("/api/v1/recoveries?owner=crm")) == [moved["id"]]
    assert ids(rec.get("/api/v1/recoveries?owner=payments")) == []


def test_pages_cover_every_recovery_once_even_when_new_ones_open_between_pages(rec: Recoveries) -> None:
    rec.open_unrelated(8)
    seen: list[int] = []
    url = "/api/v1/recoveries?limit=3&state=opened"
    page = rec.get(url)
    while True:
        seen.extend(ids(page))
        if page["next_cursor"] is None:
            break
        assert len(page["items"]) == 3
        # A recovery opened between two pages lands before the first page, never inside a later one.
        rec.open_unrelated(1, prefix=f"late-{len(seen)}")
        page = rec.get(f"{url}&cursor={page['next_cursor']}")
    assert seen == list(range(8, 0, -1))
    assert ids(rec.get(url)) == [10, 9, 8], "the two late ones opened, and come first now"


def test_a_full_last_page_says_there_is_no_next_page(rec: Recoveries) -> None:
    rec.open_unrelated(4)
    first = rec.get("/api/v1/recoveries?limit=2")
    second = rec.get(f"/api/v1/recoveries?limit=2&cursor={first['next_cursor']}")
    assert (ids(first), ids(second), second["next_cursor"]) == ([4, 3], [2, 1], None)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=opened,reopened", "state"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=%C2%B2", "limit"),
        ("priority=P9", "priority"),
        ("opened_after=yesterday", "opened_after"),
        ("opened_before=2026-11-22T18:00:00", "opened_before"),
        ("opened_after=0001-01-01T00:00:00%2B01:00", "opened_after"),
        ("cursor=not-ours!", "cursor"),
        ("cursor=zzzzzzzzzzz", "cursor"),
        ("team=", "team"),
        ("service=a%00b", "service"),
    ],
)
def test_list_rejects_bad_arguments_naming_them(rec: Recoveries, query: str, field: str) -> None:
    response = rec.http.get(f"/api/v1/recoveries?{query}", headers=bearer(rec.token(Role.VIEWER)))
    assert response.status_code == 400
    assert error_of(response)["code"] == "payload-invalid"
    assert error_of(response)["field"] == field


def test_list_needs_a_token(client: FlaskClient) -> None:
    response = client.get("/api/v1/recoveries")
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"


# --- detail -----------------------------------------------------------------------------------


def test_detail_has_alerts_enrichment_no_incident_yet_and_the_timeline_in_order(rec: Recoveries) -> None:
    rec.seed_mix()
    detail = rec.get("/api/v1/recoveries/2")
    assert (detail["id"], detail["state"]) == (2, "fix_deployed")
    assert [a["status"] for a in detail["alerts"]] == ["resolved"] * 3
    assert {a["role"] for a in detail["alerts"]} == {"member"}
    assert {a["stale"] for a in detail["alerts"]} == {False}
    assert detail["alerts"][0]["labels"]["service"] == "payments-api"
    assert detail["alerts"][0]["ends_at"] is not None
    assert detail["enrichment"]["owner"] == "payments"
    assert detail["enrichment"]["journeys"] == ["checkout"]
    assert detail["incident"] is None
    timeline = detail["timeline"]
    assert (timeline[0]["kind"], timeline[0]["to_state"]) == ("opened", "opened")
    assert "correlation" in [e["kind"] for e in timeline]
    moves = [
        (e["details"]["event"], e["from_state"], e["to_state"]) for e in timeline if e["kind"] == "transition"
    ]
    assert moves == [("owner_known", "opened", "opened"), ("alerts_resolved", "opened", "fix_deployed")]
    assert timeline[-1]["details"]["event"] == "alerts_resolved"
    assert {e["source"] for e in timeline} == {"alertmanager"}
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)


def test_a_firing_alert_not_resent_for_stale_after_is_marked_stale(rec: Recoveries) -> None:
    rec.deliver("firing_single.json")
    stale_after = rec.get("/api/v1/recoveries/1")["enrichment"]["stale_after_seconds"]
    rec.clock.now += timedelta(seconds=stale_after)
    assert rec.get("/api/v1/recoveries/1")["alerts"][0]["stale"] is False
    rec.clock.now += timedelta(seconds=1)
    assert rec.get("/api/v1/recoveries/1")["alerts"][0]["stale"] is True


@pytest.mark.parametrize("recovery_id", ["999", str(2**63), "0"])
def test_an_unknown_recovery_is_a_json_404(rec: Recoveries, recovery_id: str) -> None:
    response = rec.http.get(f"/api/v1/recoveries/{recovery_id}", headers=bearer(rec.token(Role.VIEWER)))
    assert response.status_code == 404
    assert error_of(response)["code"] == "not-found"


# --- transitions ------------------------------------------------------------------------------


def test_operator_publishes_a_workaround_as_a_step_event_with_an_audit_entry_per_change(
    rec: Recoveries,
) -> None:
    rec.deliver("firing_single.json")
    rec.clock.now += timedelta(minutes=7)
    body = {
        "target": "workaround_available",
        "reason": "agents confirmed PayPal works",
        "workaround": "Offer PayPal",
        "public_message": "Card payments fail; PayPal works.",
    }
    recovery = body_of(rec.move(body))
    now = rec.clock.now.isoformat()
    assert recovery["state"] == "workaround_available"
    assert (recovery["state_changed_at"], recovery["milestones"]["workaround_published"]) == (now, now)
    assert (recovery["workaround"], recovery["public_message"]) == (
        body["workaround"],
        body["public_message"],
    )
    transition, workaround, message = recovery["timeline"][-3:]
    assert (transition["kind"], transition["source"]) == ("transition", "operator")
    assert transition["actor"] == "operator-on-call"
    assert transition["details"]["event"] == "workaround_published"
    assert transition["details"]["reason"] == body["reason"]
    assert (workaround["kind"], workaround["details"]["value"]) == ("workaround", "Offer PayPal")
    assert (message["kind"], message["actor"]) == ("public_message", "operator-on-call")


def test_operator_moves_to_a_later_stage_by_hand(rec: Recoveries) -> None:
    rec.deliver("firing_single.json")
    recovery = body_of(rec.move({"target": "closed", "reason": "verified by CX"}, role=Role.ADMIN))
    assert recovery["state"] == "closed"
    last = recovery["timeline"][-1]
    assert (last["details"]["event"], last["from_state"], last["to_state"]) == (
        "moved_by_operator",
        "opened",
        "closed",
    )
    assert last["actor"] == "admin-on-call"


def test_a_move_backwards_is_409_naming_the_allowed_targets(rec: Recoveries) -> None:
    rec.deliver("firing_single.json")
    rec.deliver("resolved_single.json")
    response = rec.move({"target": "impact_confirmed", "reason": "x"})
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "transition-not-allowed"
    assert error["current"] == "fix_deployed"
    assert error["allowed"] == ["closed", "postmortem_complete", "canceled"]
    assert "allowed targets: closed, postmortem_complete, canceled" in error["message"]


def test_a_canceled_recovery_allows_no_target(rec: Recoveries) -> None:
    rec.deliver("firing_single.json")
    assert body_of(rec.move({"target": "canceled", "reason": "false alarm"}))["state"] == "canceled"
    response = rec.move({"target": "closed", "reason": "x"})
    assert response.status_code == 409
    assert error_of(response)["allowed"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"target": "closed"}, "reason"),
        ({"target": "closed", "reason": "   "}, "reason"),
        ({"target": "closed", "reason": "a\u0000b"}, "reason"),
        ({"target": "reopened", "reason": "x"}, "target"),
        ({"target": "closed", "reason": "x", "owner": "crm"}, "owner"),
        ({"target": "closed", "reason": "x", "workaround": 5}, "workaround"),
        (["closed"], None),
        ("{not json", None),
    ],
)
def test_a_bad_transition_body_is_400_naming_the_field(rec: Recoveries, body: Any, field: str | None) -> None:
    rec.deliver("firing_single.json")
    data = body if isinstance(body, str) else json.dumps(body)
    headers = bearer(rec.token(Role.OPERATOR))
    response = rec.http.post("/api/v1/recoveries/1/transitions", data=data, headers=headers)
    assert response.status_code == 400
    assert error_of(response)["code"] == "payload-invalid"
    assert error_of(response).get("field") == field
    assert rec.get("/api/v1/recoveries/1")["state"] == "opened"


def test_transitions_of_an_unknown_recovery_are_404(rec: Recoveries) -> None:
    assert rec.move({"target": "closed", "reason": "x"}, recovery_id=42).status_code == 404


@pytest.mark.parametrize(("role", "status"), [(None, 401), (Role.VIEWER, 403)])
def test_operator_writes_need_an_operator_token(rec: Recoveries, role: Role | None, status: int) -> None:
    rec.deliver("firing_single.json")
    headers = bearer(rec.token(role)) if role else {}
    moved = rec.http.post(
        "/api/v1/recoveries/1/transitions", json={"target": "closed", "reason": "x"}, headers=headers
    )
    patched = rec.http.patch("/api/v1/recoveries/1", json={"owner": "crm"}, headers=headers)
    assert (moved.status_code, patched.status_code) == (status, status)
    assert (rec.get("/api/v1/recoveries/1")["state"], rec.get("/api/v1/recoveries/1")["owner"]) == (
        "opened",
        "payments",
    )


# --- PATCH ------------------------------------------------------------------------------------


def test_reassigning_the_owner_counts_an_escalation_bounce_each_time(rec: Recoveries) -> None:
    rec.deliver("firing_single.json")
    first = body_of(rec.patch({"owner": "crm"}))
    assert (first["owner"], first["escalation_bounces"]) == ("crm", 1)
    entry = first["timeline"][-1]
    assert (entry["kind"], entry["source"], entry["actor"]) == ("transition", "operator", "operator-on-call")
    assert entry["details"]["event"] == "owner_known"
    assert entry["details"]["evidence"] == {"owner": "crm", "previous_owner": "payments"}
    back = body_of(rec.patch({"owner": "payments"}))
    assert (back["owner"], back["escalation_bounces"]) == ("payments", 2)
    same = body_of(rec.patch({"owner": "payments"}))
    assert same["escalation_bounces"] == 2
    assert len(same["timeline"]) == len(back["timeline"]), "no change, no audit entry"


def test_the_first_owner_an_operator_sets_is_no_bounce_and_is_observed(
    rec: Recoveries, registry: CollectorRegistry
) -> None:
    rec.deliver(alert_doc("Down", "mystery", "00000000000000aa"))
    rec.clock.now += timedelta(minutes=4)
    recovery = body_of(rec.patch({"owner": "billing"}))
    assert (recovery["owner"], recovery["escalation_bounces"]) == ("billing", 0)
    assert recovery["milestones"]["owner_known"] == rec.clock.now.isoformat()
    labels = {"team": "billing", "priority": recovery["priority"]}
    assert registry.get_sample_value("recoverlink_recovery_time_to_ownership_seconds_sum", labels) == 240


def test_patch_sets_and_clears_the_workaround_and_public_message(rec: Recoveries) -> None:
    rec.deliver("firing_single.json")
    both = body_of(rec.patch({"workaround": "Use PayPal", "public_message": "Cards fail"}))
    assert (both["workaround"], both["public_message"]) == ("Use PayPal", "Cards fail")
    assert both["state"] == "opened", "editing the texts moves nothing"
    cleared = body_of(rec.patch({"workaround": None}))
    assert (cleared["workaround"], cleared["public_message"]) == (None, "Cards fail")
    kinds = [(e["kind"], e["details"]["value"], e["actor"]) for e in cleared["timeline"][-3:]]
    assert sorted(kinds[:2]) == [
        ("public_message", "Cards fail", "operator-on-call"),
        ("workaround", "Use PayPal", "operator-on-call"),
    ]
    assert kinds[2] == ("workaround", None, "operator-on-call")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"owner": "crm", "team": "crm"}, "team"),
        ({"owner": "paymnts"}, "owner"),
        ({"owner": None}, "owner"),
        ({"owner": ""}, "owner"),
        ({"public_message": 3}, "public_message"),
        ({}, None),
    ],
)
def test_a_bad_patch_is_400_naming_the_field(
    rec: Recoveries, body: dict[str, Any], field: str | None
) -> None:
    rec.deliver("firing_single.json")
    response = rec.patch(body)
    assert response.status_code == 400
    assert error_of(response).get("field") == field
    if field == "owner" and body["owner"]:
        assert "teams come from the catalog" in error_of(response)["message"]


def test_patch_of_an_unknown_recovery_is_404(rec: Recoveries) -> None:
    assert rec.patch({"owner": "crm"}, recovery_id=7).status_code == 404
