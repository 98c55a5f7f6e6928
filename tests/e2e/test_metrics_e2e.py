"""Every metric of DESIGN.md's table with real data, read by a real Prometheus through the shipped
recording rules and every panel of the shipped dashboard.

`recoverlink serve` (gunicorn, 2 workers, and its outbox worker) runs a scripted recovery through
every state: impact found in Prometheus, an incident in a fake ServiceNow, an owner reassigned, a
workaround published, the fix, a CX action, verification, the incident resolved, closed, the
postmortem; a second recovery is reopened; the follow-ups run. Prometheus scrapes it every second
with `deploy/prometheus/recoverlink.rules.yml` loaded (their groups evaluated every second instead
of every 5 minutes); then every recording rule and every panel query must return data. The values
seen are written to tests/artifacts/metrics_e2e.txt.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry, Gauge

from recoverlink.dashboard import expressions
from tests.e2e.conftest import child_env, get_json, recoverlink_script, write_yaml
from tests.support.fake_servicenow import FakeServiceNow
from tests.support.processes import LOOPBACK, RunningProcess, free_port, running_process, wait_until
from tests.support.prometheus import Prometheus, running_prometheus, serving_exporter

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ROOT = Path(__file__).parents[2]
RULES = ROOT / "deploy" / "prometheus" / "recoverlink.rules.yml"
ARTIFACT = ROOT / "tests" / "artifacts" / "metrics_e2e.txt"
WEBHOOK_TOKEN = "e2e-metrics-webhook-token-0123456789"
FAILURES = "rl_e2e_shop_checkout_failures"
CONTACTS = "rl_e2e_shop_repeat_contacts"


@dataclass
class Receiver:
    """The agent desktop the CX action calls: answers 200 and keeps the requests."""

    url: str
    requests: list[tuple[str, str]]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen.append((self.command, self.rfile.read(length).decode()))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_PUT = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(f"{LOOPBACK}:{server.server_port}", seen)
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Stack:
    url: str
    admin: dict[str, str]
    operator: dict[str, str]
    process: RunningProcess
    prometheus: Prometheus
    gauges: dict[str, Gauge]

    def deliver(self, service: str, status: str = "firing", starts_at: str = "2026-12-01T08:00:00Z") -> None:
        labels = {"alertname": f"{service}-errors", "service": service, "severity": "critical"}
        ends = "2026-12-01T08:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z"
        alert = {"status": status, "labels": labels, "annotations": {"summary": f"{service} failing"}}
        alert.update(startsAt=starts_at, endsAt=ends, generatorURL="", fingerprint=f"fp-{service}")
        document = {"version": "4", "status": status, "alerts": [alert], "groupKey": f"{{}}:{service}"}
        document.update(receiver="recoverlink", groupLabels={}, commonLabels=labels, commonAnnotations={})
        document.update(externalURL="http://am", truncatedAlerts=0)
        headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
        answer = requests.post(f"{self.url}/webhook/alertmanager", json=document, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text

    def recovery(self, service: str) -> dict[str, Any]:
        items = get_json(f"{self.url}/api/v1/recoveries?service={service}", self.admin["Authorization"][7:])[
            "items"
        ]
        assert items, f"no recovery for {service}"
        detail: dict[str, Any] = get_json(
            f"{self.url}/api/v1/recoveries/{items[0]['id']}", self.admin["Authorization"][7:]
        )
        return detail

    def wait_for(self, service: str, what: str, check: Any, timeout: float = 45) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            try:
                recovery = self.recovery(service)
            except AssertionError:
                return None
            return recovery if check(recovery) else None

        return wait_until(probe, timeout=timeout, what=what, details=self.process.describe)

    def operator_call(self, method: str, path: str, body: dict[str, Any]) -> None:
        answer = requests.request(method, f"{self.url}{path}", json=body, headers=self.operator, timeout=10)
        assert answer.status_code == 200, answer.text


def _rules_every_second(directory: Path) -> Path:
    """The shipped rules with each group evaluated every second, so a short test sees them."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
    path = directory / "recoverlink.rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def _config(
    directory: Path, prometheus_url: str, servicenow_url: str, sn: FakeServiceNow, receiver: Receiver
) -> Path:
    for name, value in (("webhook", WEBHOOK_TOKEN), ("sn", sn.password), ("desktop", "desktop-token")):
        (directory / f"{name}.secret").write_text(value + "\n", encoding="utf-8")
    catalog = write_yaml(
        directory / "catalog.yaml",
        {
            "teams": [{"name": "shop-team"}, {"name": "sre"}],
            "services": [
                {
                    "name": "shop",
                    "owner": "shop-team",
                    "tier": "tier-1",
                    "segments": ["retail"],
                    "impact_sources": ["checkout", "contacts"],
                    "itsm": {"system": "servicenow"},
                },
                {"name": "search", "owner": "shop-team", "tier": "tier-2"},
            ],
        },
    )
    body = '{"title": {{ recovery.title | tojson }}, "state": {{ recovery.state | tojson }}}'
    rules = write_yaml(
        directory / "rules.yaml",
        {
            "rules": [
                {
                    "name": "shop-cx",
                    "match": ['service="shop"'],
                    "actions": [
                        {
                            "name": "agent-banner",
                            "kind": "agent_desktop",
                            "on": ["fix_deployed"],
                            "method": "PUT",
                            "url": f"http://{receiver.url}/banners/{{{{ recovery.id }}}}",
                            "credential": "desktop",
                            "body": body,
                        }
                    ],
                }
            ]
        },
    )
    failures = f'sum by (segment) ({FAILURES}{{service="{{{{ service.name }}}}"}})'
    return write_yaml(
        directory / "recoverlink.yaml",
        {
            "webhook": {"auth": {"bearer": {"file": str(directory / "webhook.secret")}}},
            "database": {"sqlite_path": str(directory / "var" / "recoverlink.db")},
            "server": {"workers": 2, "threads": 4, "metrics_dir": str(directory / "var" / "metrics")},
            "api": {
                "bootstrap_admin_token": {"file": str(directory / "var" / "admin.token"), "generate": True}
            },
            "catalog": {"files": [str(catalog)], "fallback_owner": "sre"},
            "rules": {"files": [str(rules)]},
            "enrichment": {"impact_by_tier": {"tier-1": 1, "tier-2": 2}, "reopen_window": "1h"},
            "impact": {
                "prometheus": {"url": prometheus_url, "timeout_seconds": 2},
                "lookup_every": "1s",
                "verify_every": "1s",
                "sources": {
                    "checkout": {
                        "prometheus": {
                            "query": failures,
                            "count": "failures",
                            "facts": {"segment": "segments"},
                        },
                        "thresholds": {"failures": 1},
                    },
                    "contacts": {
                        "prometheus": {"query": f"sum({CONTACTS})", "count": "repeat_contacts"},
                        "thresholds": {"repeat_contacts": 1000},
                        "repeat_contacts": "repeat_contacts",
                    },
                },
            },
            "itsm": {
                "servicenow": {
                    "url": servicenow_url,
                    "auth": {
                        "basic": {"username": sn.user, "password": {"file": str(directory / "sn.secret")}}
                    },
                    "timeout_seconds": 3,
                }
            },
            "actions": {
                "allowed_hosts": [receiver.url],
                "credentials": {"desktop": {"bearer": {"file": str(directory / "desktop.secret")}}},
            },
            "worker": {"lease": "6s", "backoff_initial": "1s", "backoff_max": "2s"},
        },
    )


def _operator_token(config: Path) -> str:
    done = subprocess.run(
        [recoverlink_script(), "tokens", "create", "--role", "operator", "--config", str(config)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("metrics-e2e")
    registry = CollectorRegistry()
    gauges = {
        FAILURES: Gauge(FAILURES, "Set by the test.", ["service", "segment"], registry=registry),
        CONTACTS: Gauge(CONTACTS, "Set by the test.", registry=registry),
    }
    gauges[FAILURES].labels(service="shop", segment="retail").set(0)
    gauges[CONTACTS].set(0)
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    servicenow = FakeServiceNow()
    with serving_exporter(registry) as exporter, servicenow.serve() as sn_url:
        extra = {"rule_files": [str(_rules_every_second(directory))]}
        scrape = {"job_name": "recoverlink", "static_configs": [{"targets": [f"{LOOPBACK}:{port}"]}]}
        extra["scrape_configs"] = [
            {"job_name": "test-exporter", "static_configs": [{"targets": [exporter.target]}]},
            scrape,
        ]
        with _prometheus(directory, exporter.target, extra) as prometheus:
            config = _config(directory, prometheus.url, sn_url, servicenow, receiver)
            argv = [
                recoverlink_script(),
                "serve",
                "--config",
                str(config),
                "--migrate",
                "--listen",
                f"{LOOPBACK}:{port}",
            ]
            with running_process(
                "recoverlink-metrics-e2e",
                argv,
                log_dir=directory / "logs",
                ready_url=f"{url}/-/ready",
                env=child_env(),
            ) as process:
                admin = (directory / "var" / "admin.token").read_text(encoding="utf-8").strip()
                operator = _operator_token(config)
                yield Stack(
                    url,
                    {"Authorization": f"Bearer {admin}"},
                    {"Authorization": f"Bearer {operator}"},
                    process,
                    prometheus,
                    gauges,
                )


def _prometheus(directory: Path, exporter_target: str, extra: dict[str, Any]) -> Any:
    """Prometheus with both scrape jobs (the exporter now, recoverlink once it is up) and the rules."""
    scrape_configs = extra.pop("scrape_configs")
    return running_prometheus(
        directory / "prometheus",
        [exporter_target],
        extra_config={**extra, "scrape_configs": scrape_configs},
        wait_for_targets=False,
    )


def _script(stack: Stack) -> None:
    """One recovery through every state, and a second one that reopens."""
    failures = stack.gauges[FAILURES].labels(service="shop", segment="retail")
    failures.set(12)
    stack.prometheus.wait_for_series(f'{FAILURES}{{service="shop"}} > 1', 1)
    stack.deliver("shop")
    shop = stack.wait_for(
        "shop",
        "impact and incident",
        lambda r: r["state"] == "impact_confirmed" and (r["incident"] or {}).get("id"),
    )
    path = f"/api/v1/recoveries/{shop['id']}"
    stack.operator_call("PATCH", path, {"owner": "sre"})
    body = {"target": "workaround_available", "reason": "failover", "workaround": "use the app"}
    stack.operator_call("POST", f"{path}/transitions", body)
    failures.set(0)
    stack.gauges[CONTACTS].set(3)
    stack.prometheus.wait_for_series(f'{FAILURES}{{service="shop"}} == 0', 1)
    stack.deliver("shop", status="resolved")
    stack.wait_for("shop", "the recovery to close", lambda r: r["state"] == "closed", timeout=60)
    stack.operator_call(
        "POST", f"{path}/transitions", {"target": "postmortem_complete", "reason": "reviewed"}
    )
    # The 24 h and 48 h follow-ups: an operator makes them due now.
    jobs = get_json(f"{stack.url}/api/v1/jobs?kind=recovery.follow_up", stack.admin["Authorization"][7:])[
        "items"
    ]
    for job in jobs:
        answer = requests.post(f"{stack.url}/api/v1/jobs/{job['id']}/retry", headers=stack.admin, timeout=10)
        assert answer.status_code == 200, answer.text
    # A blip that reopens: fires, resolves (no impact source, no ITSM: it closes), fires again.
    stack.deliver("search")
    stack.deliver("search", status="resolved")
    stack.wait_for("search", "the blip to close", lambda r: r["state"] == "closed")
    stack.deliver("search", starts_at="2026-12-01T08:10:00Z")
    stack.wait_for("search", "the reopen", lambda r: r["reopen_count"] == 1)


def _data(prometheus: Prometheus, expr: str) -> list[dict[str, Any]]:
    data = prometheus.query(expr)
    result: list[dict[str, Any]] = data["result"]
    return result


def _panel_query(expr: str) -> str:
    return (
        expr.replace("$team", ".*")
        .replace("$priority", ".*")
        .replace("$service", ".*")
        .replace("$__rate_interval", "2m")
    )


def test_every_recording_rule_and_every_panel_returns_data(stack: Stack) -> None:
    _script(stack)
    recorded = [
        r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r
    ]
    queries = [*recorded, *(_panel_query(e) for e in expressions())]

    def all_have_data() -> list[str] | None:
        empty = [q for q in queries if not _data(stack.prometheus, q)]
        return None if empty else []

    def missing() -> str:
        return "no data for:\n" + "\n".join(q for q in queries if not _data(stack.prometheus, q))

    wait_until(
        all_have_data, timeout=60, interval=1.0, what="every rule and panel to have data", details=missing
    )
    _write_artifact(stack)


DESIGN_METRICS = (
    "recoverlink_alertmanager_notifications_total",
    "recoverlink_alerts_received_total",
    "recoverlink_http_request_duration_seconds_count",
    "recoverlink_recoveries",
    "recoverlink_recoveries_opened_total",
    "recoverlink_recoveries_reopened_total",
    "recoverlink_recoveries_closed_total",
    "recoverlink_recovery_time_to_ownership_seconds_count",
    "recoverlink_recovery_time_to_impact_seconds_count",
    "recoverlink_recovery_time_to_incident_seconds_count",
    "recoverlink_recovery_fix_to_cx_update_seconds_count",
    "recoverlink_recovery_fix_to_verification_seconds_count",
    "recoverlink_recovery_resolution_seconds_count",
    "recoverlink_recovery_escalation_bounces_total",
    "recoverlink_recovery_repeat_alerts_total",
    "recoverlink_recovery_repeat_contacts_total",
    "recoverlink_recoveries_finished_total",
    "recoverlink_actions_total",
    "recoverlink_itsm_requests_total",
    "recoverlink_itsm_request_duration_seconds_count",
    "recoverlink_outbox_jobs",
    "recoverlink_outbox_oldest_due_job_age_seconds",
    "recoverlink_enrichment_misses_total",
    "recoverlink_config_last_reload_successful",
    "recoverlink_config_last_reload_success_timestamp_seconds",
)


def _write_artifact(stack: Stack) -> None:
    """Each metric of DESIGN.md's table as Prometheus saw it (non-zero series), for the closing note."""
    lines = []
    for name in DESIGN_METRICS:
        samples = _data(stack.prometheus, f"{name} > 0") or _data(stack.prometheus, name)
        assert samples, f"{name} is not exported"
        for sample in samples[:6]:
            labels = {
                k: v for k, v in sorted(sample["metric"].items()) if k not in ("__name__", "instance", "job")
            }
            shown = ", ".join(f"{k}={v}" for k, v in labels.items())
            lines.append(f"{name}{{{shown}}} {sample['value'][1]}")
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text("\n".join(lines) + "\n", encoding="utf-8")
