"""The full life with a real Request Tracker: an Alertmanager delivery opens a recovery, which opens
one RT ticket; its transitions become comments; a person's status change in RT reaches recoverlink
through the shipped scrip and moves the recovery; the recovery done resolves the ticket.

`recoverlink serve` (gunicorn and its outbox worker) and a throw-away RT (tests/support/rt.py) run
on loopback; RT's scrip posts straight to recoverlink's `/webhook/itsm/rt`.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ALERTMANAGER_FIXTURES
from tests.e2e.conftest import child_env, get_json, metric, recoverlink_script, write_yaml
from tests.support.processes import LOOPBACK, RunningProcess, free_port, running_process, wait_until
from tests.support.rt import API_USER, CUSTOM_FIELD, QUEUE, TOKEN_ENV, RequestTracker, running_request_tracker

pytestmark = pytest.mark.e2e

WEBHOOK_TOKEN = "e2e-rt-webhook-token-0123456789"
SERVICE = "service-desk"


@dataclass
class Stack:
    url: str
    admin_token: str
    operator_token: str
    process: RunningProcess
    rt: RequestTracker

    def deliver(self, status: str = "firing") -> None:
        """The captured Alertmanager delivery, for this test's service."""
        name = "firing_single.json" if status == "firing" else "resolved_single.json"
        document = json.loads((ALERTMANAGER_FIXTURES / name).read_text())
        for alert in document["alerts"]:
            alert["labels"]["service"] = SERVICE
        document["commonLabels"]["service"] = SERVICE
        headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
        answer = requests.post(f"{self.url}/webhook/alertmanager", json=document, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text

    def recovery(self) -> dict[str, Any] | None:
        items = get_json(f"{self.url}/api/v1/recoveries?service={SERVICE}", self.admin_token)["items"]
        return get_json(f"{self.url}/api/v1/recoveries/{items[0]['id']}", self.admin_token) if items else None

    def wait_for(self, what: str, check: Any, timeout: float = 45) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            recovery = self.recovery()
            return recovery if recovery is not None and check(recovery) else None

        return wait_until(probe, timeout=timeout, what=what, details=self.process.describe)

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        answer = self.rt.person().get(self.rt.rest(f"/ticket/{ticket_id}"), timeout=10)
        answer.raise_for_status()
        ticket: dict[str, Any] = answer.json()
        return ticket

    def comments(self, ticket_id: str) -> int:
        url = self.rt.rest(f"/ticket/{ticket_id}/history?fields=Type&per_page=100")
        items = self.rt.person().get(url, timeout=10).json()["items"]
        return sum(1 for item in items if item.get("Type") == "Comment")


def _config(directory: Path, rt: RequestTracker) -> Path:
    token = directory / "webhook.token"
    token.write_text(WEBHOOK_TOKEN + "\n", encoding="utf-8")
    secret = directory / "rt-callback.secret"
    secret.write_text(rt.callback_secret + "\n", encoding="utf-8")
    catalog = write_yaml(
        directory / "catalog.yaml",
        {
            "teams": [{"name": "desk-team"}],
            "services": [{"name": SERVICE, "owner": "desk-team", "itsm": {"system": "rt", "queue": QUEUE}}],
        },
    )
    return write_yaml(
        directory / "recoverlink.yaml",
        {
            "webhook": {"auth": {"bearer": {"file": str(token)}}},
            "database": {"sqlite_path": str(directory / "var" / "recoverlink.db")},
            "server": {"workers": 2, "threads": 4, "metrics_dir": str(directory / "var" / "metrics")},
            "api": {
                "bootstrap_admin_token": {"file": str(directory / "var" / "admin.token"), "generate": True}
            },
            "catalog": {"files": [str(catalog)]},
            "itsm": {
                "poll_every": "1h",  # the scrip, not the poll, carries the changes here
                "rt": {
                    "url": rt.url,
                    "auth": {"token": {"env": TOKEN_ENV}},
                    "queue": QUEUE,
                    "custom_field": CUSTOM_FIELD,
                    "api_user": API_USER,
                    "callback_secret": {"file": str(secret)},
                },
            },
            "worker": {"lease": "20s", "backoff_initial": "1s", "backoff_max": "2s"},
        },
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("rt-e2e")
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    with (
        tempfile.TemporaryDirectory(prefix="recoverlink-rt-e2e-") as rt_directory,
        running_request_tracker(Path(rt_directory), callback_url=url) as rt,
    ):
        config = _config(directory, rt)
        argv = [
            recoverlink_script(),
            "serve",
            "--config",
            str(config),
            "--migrate",
            "--listen",
            f"{LOOPBACK}:{port}",
        ]
        env = {**child_env(), **rt.environ}
        with running_process(
            "recoverlink-rt-e2e", argv, log_dir=directory / "logs", ready_url=f"{url}/-/ready", env=env
        ) as process:
            admin = (directory / "var" / "admin.token").read_text(encoding="utf-8").strip()
            operator = _operator_token(config, env)
            yield Stack(url, admin, operator, process, rt)


def _operator_token(config: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [recoverlink_script(), "tokens", "create", "--role", "operator", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_the_whole_life_of_a_recovery_with_its_rt_ticket(stack: Stack) -> None:
    stack.deliver()
    linked = stack.wait_for("the RT ticket to be linked", lambda r: (r["incident"] or {}).get("id"))
    ticket_id = linked["incident"]["id"]
    ticket = stack.ticket(ticket_id)
    values = {f["name"]: f["values"] for f in ticket["CustomFields"]}
    assert values[CUSTOM_FIELD] == [f"recoverlink:rec-{linked['id']}"]

    # An operator's step becomes a comment on the ticket.
    body = {"target": "workaround_available", "reason": "failover", "workaround": "use the phone line"}
    headers = {"Authorization": f"Bearer {stack.operator_token}"}
    moved = requests.post(
        f"{stack.url}/api/v1/recoveries/{linked['id']}/transitions", json=body, headers=headers, timeout=10
    )
    assert moved.status_code == 200, moved.text
    wait_until(
        lambda: stack.comments(ticket_id) >= 1, timeout=30, what="the transition's comment on the ticket"
    )

    # A person takes the ticket in RT: the scrip tells recoverlink, the recovery moves.
    taken = stack.rt.person().put(stack.rt.rest(f"/ticket/{ticket_id}"), json={"Status": "open"}, timeout=10)
    assert taken.status_code == 200, taken.text
    stack.wait_for("fix_in_progress from RT", lambda r: r["state"] == "fix_in_progress")

    # The alert resolves; with no impact source to verify, the recovery is done: the ticket resolves.
    stack.deliver(status="resolved")
    closed = stack.wait_for("the recovery to close", lambda r: r["state"] == "closed")
    assert closed["incident"]["status"] == "resolved"
    assert stack.ticket(ticket_id)["Status"] == "resolved"
    labels = {"team": "desk-team", "priority": closed["priority"], "itsm": "rt"}
    assert metric(stack.url, "recoverlink_recovery_time_to_incident_seconds_count", **labels) == 1
    created = metric(
        stack.url, "recoverlink_itsm_requests_total", itsm="rt", operation="create", outcome="success"
    )
    assert created == 1, "exactly one ticket"
