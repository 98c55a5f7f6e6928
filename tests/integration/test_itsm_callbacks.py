"""POST /webhook/itsm/<system>: authenticated with the system's secret, read by its adapter, applied once."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from recoverlink.config.loader import Settings
from recoverlink.config.model import Config
from recoverlink.domain.itsm import IncidentDraft, IncidentLink
from recoverlink.domain.recovery_state import new_recovery_status
from recoverlink.store import incidents
from recoverlink.store import recoveries as recovery_store
from recoverlink.store.engine import Store
from recoverlink.store.recoveries import NewRecovery
from recoverlink.web import create_app
from tests.conftest import WEBHOOK_TOKEN, FakeClock
from tests.support.fake_itsm import FakeIncident, FakeItsm

SECRET = "itsm-callback-secret-0123456789"
JIRA_SECRET = "jira-callback-secret-0123456789"


def itsm_settings(tmp_path: Path, database_url: str) -> Settings:
    files = {}
    for name, value in (("webhook", WEBHOOK_TOKEN), ("sn", SECRET), ("jira", JIRA_SECRET), ("pw", "pw")):
        path = tmp_path / f"{name}.secret"
        path.write_text(value)
        files[name] = str(path)
    auth = {"basic": {"username": "recoverlink", "password": {"file": files["pw"]}}}
    config = Config.model_validate(
        {
            "webhook": {"auth": {"bearer": {"file": files["webhook"]}}},
            "database": {"sqlite_path": str(tmp_path / "recoverlink.db")},
            "itsm": {
                "default": "servicenow",
                "servicenow": {
                    "url": "https://sn.test",
                    "auth": auth,
                    "callback_secret": {"file": files["sn"]},
                },
                "jira": {
                    "url": "https://jira.test",
                    "auth": auth,
                    "callback_secret": {"file": files["jira"]},
                },
                "rt": {"url": "https://rt.test", "auth": auth},
            },
        }
    )
    return Settings(config=config, config_path=tmp_path / "config.yaml", database_url=database_url, listen="")


@pytest.fixture
def servicenow() -> FakeItsm:
    return FakeItsm("servicenow")


@pytest.fixture
def callback_app(
    tmp_path: Path, store: Store, registry: CollectorRegistry, clock: FakeClock, servicenow: FakeItsm
) -> Flask:
    settings = itsm_settings(tmp_path, str(store.engine.url))
    adapters = {"servicenow": servicenow, "jira": FakeItsm("jira"), "rt": FakeItsm("rt")}
    return create_app(
        settings, store=store, registry=registry, clock=clock, environ={}, itsm_adapters=adapters
    )


@pytest.fixture
def client(callback_app: Flask) -> FlaskClient:
    return callback_app.test_client()


def linked_recovery(store: Store, itsm: FakeItsm, clock: FakeClock, system: str = "servicenow") -> str:
    """A recovery with an incident in `itsm`; returns the incident id."""
    status = new_recovery_status(clock(), itsm_configured=True, resolution_closes_incident=True)
    new = NewRecovery(
        correlation_key="k",
        title="payments down",
        service="payments-api",
        service_ref=None,
        team="payments",
        priority="P2",
        resolution_policy="close",
        reopen_window=timedelta(hours=1),
        linked_to=None,
        storm=False,
        itsm_system=system,
    )
    link = IncidentLink(system, "id-1", "INC0000001")
    with store.write() as conn:
        recovery_id = recovery_store.open_recovery(conn, new, status, clock())
        assert recovery_id is not None
        incidents.link_incident(conn, recovery_id, link, "new", clock())
    itsm.incidents[link.id] = FakeIncident(link, IncidentDraft("recoverlink:rec-1", "t", "d", "P2"))
    return link.id


def body(incident_id: str = "id-1", status: str = "in_progress", delivery: str = "d1", **extra: Any) -> bytes:
    return json.dumps({"incident_id": incident_id, "status": status, "delivery": delivery, **extra}).encode()


def bearer(secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}


def test_a_callback_with_the_secret_moves_the_recovery(
    client: FlaskClient, store: Store, servicenow: FakeItsm, clock: FakeClock
) -> None:
    linked_recovery(store, servicenow, clock)
    answer = client.post("/webhook/itsm/servicenow", data=body(), headers=bearer())
    assert (answer.status_code, answer.json) == (200, {"status": "applied", "recovery_id": 1})
    with store.read() as conn:
        assert recovery_store.load_row(conn, 1).state == "fix_in_progress"
    again = client.post("/webhook/itsm/servicenow", data=body(), headers=bearer())
    assert again.json == {"status": "duplicate", "recovery_id": 1}


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Bearer wrong"}, 401, "unauthorized"),
        ({"Authorization": f"Basic {SECRET}"}, 401, "unauthorized"),
    ],
)
def test_a_callback_without_the_right_secret_is_refused(
    client: FlaskClient, headers: dict[str, str], status: int, code: str
) -> None:
    answer = client.post("/webhook/itsm/servicenow", data=body(), headers=headers)
    assert answer.status_code == status
    assert answer.json is not None and answer.json["error"]["code"] == code


def test_an_unknown_system_is_404_and_one_without_a_callback_secret_is_403(client: FlaskClient) -> None:
    unknown = client.post("/webhook/itsm/remedy", data=body(), headers=bearer())
    assert (unknown.status_code, unknown.json["error"]["code"]) == (404, "not-found")  # type: ignore[index]
    off = client.post("/webhook/itsm/rt", data=body(), headers=bearer())
    assert off.status_code == 403
    assert "itsm.rt.callback_secret" in off.json["error"]["message"]  # type: ignore[index]


def test_jira_may_sign_the_body_or_put_the_secret_in_the_url(client: FlaskClient) -> None:
    payload = body(incident_id="nope")
    signature = "sha256=" + hmac.new(JIRA_SECRET.encode(), payload, hashlib.sha256).hexdigest()
    signed = client.post("/webhook/itsm/jira", data=payload, headers={"X-Hub-Signature": signature})
    assert (signed.status_code, signed.json["status"]) == (200, "unknown_incident")  # type: ignore[index]
    in_url = client.post(
        f"/webhook/itsm/jira?secret={JIRA_SECRET}", data=body(incident_id="n2", delivery="x")
    )
    assert in_url.status_code == 200
    forged = client.post(
        "/webhook/itsm/jira", data=payload, headers={"X-Hub-Signature": "sha256=" + "0" * 64}
    )
    assert forged.status_code == 401
    # The body signature is for Jira only: ServiceNow and RT can send a bearer header.
    unsigned = client.post("/webhook/itsm/servicenow", data=payload, headers={"X-Hub-Signature": signature})
    assert unsigned.status_code == 401


def test_a_malformed_callback_is_400_naming_the_field(client: FlaskClient) -> None:
    answer = client.post("/webhook/itsm/servicenow", data=b'{"status": "resolved"}', headers=bearer())
    assert answer.status_code == 400
    assert answer.json["error"]["field"] == "incident_id"  # type: ignore[index]


def test_the_recovery_api_shows_the_linked_incident(
    client: FlaskClient, store: Store, servicenow: FakeItsm, clock: FakeClock, callback_app: Flask
) -> None:
    from recoverlink.domain.tokens import Role
    from recoverlink.store.tokens import register_token

    linked_recovery(store, servicenow, clock)
    with store.write() as conn:
        register_token(conn, "viewer-token-0123456789", Role.VIEWER, "viewer", clock())
    answer = client.get("/api/v1/recoveries/1", headers={"Authorization": "Bearer viewer-token-0123456789"})
    assert answer.json["incident"] == {  # type: ignore[index]
        "system": "servicenow",
        "id": "id-1",
        "number": "INC0000001",
        "url": None,
        "status": "new",
    }
