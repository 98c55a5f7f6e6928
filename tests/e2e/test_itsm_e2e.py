"""ITSM end to end: `recoverlink serve` (gunicorn and its outbox worker) against contract-faithful fake
ServiceNow and Jira servers on loopback: one incident per recovery through a hibernating instance,
resolved when the recovery is done, and callbacks from the ITSM moving recoveries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import child_env, get_json, metric, recoverlink_script, write_yaml
from tests.support.fake_jira import FakeJira
from tests.support.fake_servicenow import FakeServiceNow
from tests.support.processes import LOOPBACK, RunningProcess, free_port, running_process, wait_until

pytestmark = pytest.mark.e2e

WEBHOOK_TOKEN = "e2e-itsm-webhook-token-0123456789"
SN_SECRET = "e2e-servicenow-callback-secret"
JIRA_SECRET = "e2e-jira-callback-secret"


@dataclass
class Stack:
    url: str
    admin_token: str
    config: Path
    process: RunningProcess
    servicenow: FakeServiceNow
    jira: FakeJira

    def deliver(self, service: str, status: str = "firing", starts_at: str = "2026-12-01T08:00:00Z") -> None:
        labels = {"alertname": f"{service}-down", "service": service, "severity": "critical"}
        ends = "2026-12-01T08:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z"
        alert = {"status": status, "labels": labels, "annotations": {"summary": f"{service} is down"}}
        alert.update(startsAt=starts_at, endsAt=ends, generatorURL="", fingerprint=f"fp-{service}")
        document = {"version": "4", "status": status, "alerts": [alert], "groupKey": f"{{}}:{service}"}
        document.update(receiver="recoverlink", groupLabels={}, commonLabels=labels, commonAnnotations={})
        document.update(externalURL="http://am", truncatedAlerts=0)
        headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
        answer = requests.post(f"{self.url}/webhook/alertmanager", json=document, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text

    def recovery(self, service: str) -> dict[str, Any] | None:
        items = get_json(f"{self.url}/api/v1/recoveries?service={service}", self.admin_token)["items"]
        return get_json(f"{self.url}/api/v1/recoveries/{items[0]['id']}", self.admin_token) if items else None

    def wait_for(self, service: str, what: str, check: Any, timeout: float = 30) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            recovery = self.recovery(service)
            return recovery if recovery is not None and check(recovery) else None

        return wait_until(probe, timeout=timeout, what=what, details=self.process.describe)

    def callback(self, system: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        answer = requests.post(f"{self.url}/webhook/itsm/{system}", data=body, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


def _config(directory: Path, servicenow_url: str, jira_url: str, sn: FakeServiceNow, jira: FakeJira) -> Path:
    secrets = {}
    for name, value in (
        ("webhook", WEBHOOK_TOKEN),
        ("sn-password", sn.password),
        ("jira-token", jira.token),
        ("sn-callback", SN_SECRET),
        ("jira-callback", JIRA_SECRET),
    ):
        path = directory / f"{name}.secret"
        path.write_text(value + "\n", encoding="utf-8")
        secrets[name] = {"file": str(path)}
    catalog = write_yaml(
        directory / "catalog.yaml",
        {
            "teams": [{"name": "shop-team"}, {"name": "care"}],
            "services": [
                {
                    "name": "shop",
                    "owner": "shop-team",
                    "itsm": {"system": "servicenow", "assignment_group": "Payments Ops"},
                },
                {"name": "shop-search", "owner": "shop-team", "itsm": {"system": "servicenow"}},
                {"name": "crm", "owner": "care", "itsm": {"system": "jira", "project": "OPS"}},
            ],
        },
    )
    return write_yaml(
        directory / "recoverlink.yaml",
        {
            "webhook": {"auth": {"bearer": secrets["webhook"]}},
            "database": {"sqlite_path": str(directory / "var" / "recoverlink.db")},
            "server": {"workers": 2, "threads": 4, "metrics_dir": str(directory / "var" / "metrics")},
            "api": {
                "bootstrap_admin_token": {"file": str(directory / "var" / "admin.token"), "generate": True}
            },
            "catalog": {"files": [str(catalog)], "fallback_owner": "care"},
            "itsm": {
                "default": "none",
                "poll_every": "1h",
                "servicenow": {
                    "url": servicenow_url,
                    "auth": {"basic": {"username": sn.user, "password": secrets["sn-password"]}},
                    "timeout_seconds": 3,
                    "callback_secret": secrets["sn-callback"],
                },
                "jira": {
                    "url": jira_url,
                    "flavor": "cloud",
                    "auth": {"basic": {"username": jira.user, "password": secrets["jira-token"]}},
                    "api_user": jira.account_id,
                    "timeout_seconds": 3,
                    "callback_secret": secrets["jira-callback"],
                },
            },
            "worker": {"lease": "6s", "backoff_initial": "1s", "backoff_max": "2s"},
        },
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("itsm-e2e")
    servicenow, jira = FakeServiceNow(), FakeJira()
    with servicenow.serve() as sn_url, jira.serve() as jira_url:
        config = _config(directory, sn_url, jira_url, servicenow, jira)
        port = free_port()
        argv = [
            recoverlink_script(),
            "serve",
            "--config",
            str(config),
            "--migrate",
            "--listen",
            f"{LOOPBACK}:{port}",
        ]
        url = f"http://{LOOPBACK}:{port}"
        with running_process(
            "recoverlink-itsm-e2e",
            argv,
            log_dir=directory / "logs",
            ready_url=f"{url}/-/ready",
            env=child_env(),
        ) as process:
            admin = (directory / "var" / "admin.token").read_text(encoding="utf-8").strip()
            yield Stack(url, admin, config, process, servicenow, jira)


def test_itsm_check_passes_against_both_systems(stack: Stack) -> None:
    done = subprocess.run(
        [recoverlink_script(), "itsm", "check", "--config", str(stack.config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    assert "OK    servicenow" in done.stdout and "OK    jira" in done.stdout


def test_a_recovery_gets_one_servicenow_incident_through_hibernation_and_resolves_it(stack: Stack) -> None:
    stack.servicenow.fail_next(3, "hibernate")
    stack.deliver("shop")
    linked = stack.wait_for("shop", "the incident to be linked", lambda r: r["incident"].get("id"))
    correlation = f"recoverlink:rec-{linked['id']}"
    (incident,) = stack.servicenow.incidents_with(correlation)
    assert linked["incident"]["number"] == incident["number"]
    assert "incident_linked" in linked["milestones"]
    stack.deliver("shop", status="resolved")
    closed = stack.wait_for("shop", "the recovery to close", lambda r: r["state"] == "closed")
    assert closed["incident"]["status"] == "resolved"
    (incident,) = stack.servicenow.incidents_with(correlation)
    assert incident["state"] == "6"
    assert stack.servicenow.notes_of(incident["sys_id"]), "transitions became work notes"
    failures = metric(
        stack.url, "recoverlink_itsm_requests_total", itsm="servicenow", operation="find", outcome="not_json"
    )
    assert failures >= 1, "the hibernation page counted as a failure"
    labels = {"team": "shop-team", "priority": closed["priority"], "itsm": "servicenow"}
    assert metric(stack.url, "recoverlink_recovery_time_to_incident_seconds_count", **labels) == 1


def test_a_servicenow_business_rule_callback_moves_the_recovery(stack: Stack) -> None:
    stack.deliver("shop-search")
    linked = stack.wait_for("shop-search", "the incident", lambda r: r["incident"].get("id"))
    body = {
        "source": "servicenow",
        "event": "incident.updated",
        "sys_id": linked["incident"]["id"],
        "number": linked["incident"]["number"],
        "correlation_id": f"recoverlink:rec-{linked['id']}",
        "state": "2",
        "previous_state": "1",
        "assignment_group": "Payments Ops",
        "assigned_to": "Ann Agent",
        "close_code": "",
        "close_notes": "",
        "updated_at": "2026-12-01 08:05:00",
        "mod_count": "7",
        "updated_by": "ann.agent",
    }
    headers = {"Authorization": f"Bearer {SN_SECRET}", "Content-Type": "application/json"}
    assert stack.callback("servicenow", json.dumps(body).encode(), headers)["status"] == "applied"
    assert stack.recovery("shop-search")["state"] == "fix_in_progress"  # type: ignore[index]
    again = stack.callback("servicenow", json.dumps(body).encode(), headers)
    assert again["status"] in ("duplicate", "stale")
    wrong = requests.post(f"{stack.url}/webhook/itsm/servicenow", json=body, timeout=10)
    assert wrong.status_code == 401


def test_a_jira_issue_per_recovery_and_a_signed_webhook_moving_it(stack: Stack) -> None:
    stack.deliver("crm")
    linked = stack.wait_for("crm", "the Jira issue", lambda r: r["incident"].get("id"))
    (issue,) = stack.jira.issues_labelled(f"rl-rec-{linked['id']}")
    assert issue["key"] == linked["incident"]["number"]
    payload = {
        "timestamp": int(time.time() * 1000),
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic",
        "user": {"accountId": "557058:ann", "displayName": "Ann"},
        "issue": {
            "id": issue["id"],
            "key": issue["key"],
            "fields": {
                "status": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}},
                "labels": issue["labels"],
                "resolution": None,
                "assignee": None,
            },
        },
        "changelog": {
            "id": "1",
            "items": [{"field": "status", "fromString": "To Do", "toString": "In Progress"}],
        },
    }
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(JIRA_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-Hub-Signature": signature,
        "X-Atlassian-Webhook-Identifier": "e2e-1",
        "Content-Type": "application/json",
    }
    assert stack.callback("jira", body, headers)["status"] == "applied"
    assert stack.recovery("crm")["state"] == "fix_in_progress"  # type: ignore[index]
