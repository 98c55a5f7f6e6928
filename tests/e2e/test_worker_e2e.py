"""The outbox worker for real: `recoverlink serve` (gunicorn, 2 workers, and its outbox worker) finds
customer impact in a real Prometheus, verifies the recovery after the fix, survives a kill -9 in the
middle of a job, and a hanging impact source never slows the webhook down.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge

from tests.e2e.conftest import child_env, get_json, metric, recoverlink_script, write_yaml
from tests.support.processes import LOOPBACK, RunningProcess, free_port, running_process, wait_until
from tests.support.prometheus import Prometheus, running_prometheus, serving_exporter

pytestmark = pytest.mark.e2e

WEBHOOK_TOKEN = "e2e-worker-webhook-token-0123456789"
LEASE_SECONDS = 4
CRM_TIMEOUT_SECONDS = 3


@dataclass
class FakeCrm:
    """A CRM case search that answers `cases`, or holds each request until `release` (or its timeout)."""

    url: str = ""
    cases: list[dict[str, Any]] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)  # set: requests wait
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        crm = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with crm.lock:
                    crm.requests.append(self.path)
                if crm.hold.is_set():
                    crm.release.wait(timeout=10)
                body = json.dumps({"cases": crm.cases}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test output is the log that matters."""

        return Handler


@pytest.fixture(scope="module")
def crm() -> Iterator[FakeCrm]:
    fake = FakeCrm()
    server = ThreadingHTTPServer((LOOPBACK, 0), fake.handler())
    server.daemon_threads = True
    fake.url = f"http://{LOOPBACK}:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class Shop:
    gauge: Gauge
    prometheus: Prometheus


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    registry = CollectorRegistry()
    gauge = Gauge(
        "rl_e2e_checkout_failures_per_minute", "Set by the test.", ["service", "segment"], registry=registry
    )
    gauge.labels(service="shop", segment="retail").set(0)
    with serving_exporter(registry) as exporter:
        directory = tmp_path_factory.mktemp("worker-prometheus")
        with running_prometheus(directory, [exporter.target]) as prometheus:
            yield Shop(gauge, prometheus)


@dataclass
class Server:
    url: str
    admin_token: str
    process: RunningProcess

    def deliver(self, service: str, status: str = "firing", starts_at: str = "2026-12-01T08:00:00Z") -> float:
        """POST one alert; returns how long the webhook took to answer."""
        labels = {"alertname": f"{service.title()}Down", "service": service, "severity": "critical"}
        ends = "2026-12-01T08:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z"
        alert = {"status": status, "labels": labels, "annotations": {}, "startsAt": starts_at, "endsAt": ends}
        alert.update(generatorURL="", fingerprint=f"fp-{service}-{starts_at}")
        document = {"version": "4", "status": status, "alerts": [alert], "groupKey": f"{{}}:{service}"}
        document.update(receiver="recoverlink", groupLabels={}, commonLabels=labels, commonAnnotations={})
        document.update(externalURL="http://am", truncatedAlerts=0)
        started = time.perf_counter()
        answer = requests.post(
            f"{self.url}/webhook/alertmanager",
            json=document,
            headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
            timeout=10,
        )
        elapsed = time.perf_counter() - started
        assert answer.status_code == 200, answer.text
        return elapsed

    def recovery_of(self, service: str) -> dict[str, Any] | None:
        items = get_json(f"{self.url}/api/v1/recoveries?service={service}", self.admin_token)["items"]
        return get_json(f"{self.url}/api/v1/recoveries/{items[0]['id']}", self.admin_token) if items else None

    def wait_for(self, service: str, what: str, check: Any, timeout: float = 30) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            recovery = self.recovery_of(service)
            return recovery if recovery is not None and check(recovery) else None

        return wait_until(probe, timeout=timeout, what=what, details=self.process.describe)

    def jobs(self, recovery_id: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = get_json(
            f"{self.url}/api/v1/jobs?recovery_id={recovery_id}", self.admin_token
        )["items"]
        return items


def _config(directory: Path, prometheus_url: str, crm_url: str) -> Path:
    token = directory / "webhook.token"
    token.write_text(WEBHOOK_TOKEN + "\n", encoding="utf-8")
    catalog = write_yaml(
        directory / "catalog.yaml",
        {
            "teams": [{"name": "shop-team"}, {"name": "care"}],
            "services": [
                {
                    "name": "shop",
                    "owner": "shop-team",
                    "segments": ["retail"],
                    "impact_sources": ["checkout"],
                },
                {"name": "care-desk", "owner": "care", "impact_sources": ["crm-cases"]},
                {"name": "case-desk", "owner": "care", "impact_sources": ["crm-cases"]},
            ],
        },
    )
    crm_host = crm_url.removeprefix("http://")
    query = 'sum by (segment) (rl_e2e_checkout_failures_per_minute{service="{{ service.name }}"})'
    impact = {
        "prometheus": {"url": prometheus_url, "timeout_seconds": 2},
        "allowed_hosts": [crm_host],
        "lookup_every": "1s",
        "verify_every": "1s",
        "verify_timeout": "5m",
        "sources": {
            "checkout": {
                "prometheus": {"query": query, "count": "failures", "facts": {"segment": "segments"}},
                "thresholds": {"failures": 1},
            },
            "crm-cases": {
                "http": {
                    "url": f"{crm_url}/api/cases",
                    "params": {"recovery": "{{ recovery.id }}"},
                    "timeout_seconds": CRM_TIMEOUT_SECONDS,
                    "counts": {"open_cases": "length(cases)"},
                },
                "thresholds": {"open_cases": 0},
            },
        },
    }
    return write_yaml(
        directory / "recoverlink.yaml",
        {
            "webhook": {"auth": {"bearer": {"file": str(token)}}},
            "database": {"sqlite_path": str(directory / "var" / "recoverlink.db")},
            "server": {"workers": 2, "threads": 4, "metrics_dir": str(directory / "var" / "metrics")},
            "api": {
                "bootstrap_admin_token": {"file": str(directory / "var" / "admin.token"), "generate": True}
            },
            "catalog": {"files": [str(catalog)], "fallback_owner": "care"},
            "impact": impact,
            "worker": {"lease": f"{LEASE_SECONDS}s", "backoff_initial": "1s", "backoff_max": "2s"},
        },
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, shop: Shop, crm: FakeCrm) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("worker-e2e")
    config = _config(directory, shop.prometheus.url, crm.url)
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
        "recoverlink-worker-e2e",
        argv,
        log_dir=directory / "logs",
        ready_url=f"{url}/-/ready",
        env=child_env(),
    ) as process:
        admin = (directory / "var" / "admin.token").read_text(encoding="utf-8").strip()
        yield Server(url=url, admin_token=admin, process=process)


def outbox_worker_pid(server_pid: int) -> int | None:
    """The `recoverlink worker` child of the server's gunicorn master."""
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text(encoding="utf-8").split()
    for child in children:
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"worker" in cmdline and b"recoverlink" in cmdline:
            return int(child)
    return None


def test_impact_from_a_real_prometheus_confirms_and_verification_closes_the_recovery(
    server: Server, shop: Shop
) -> None:
    shop.gauge.labels(service="shop", segment="retail").set(12)
    shop.prometheus.wait_for_series('rl_e2e_checkout_failures_per_minute{service="shop"} > 1', 1)
    server.deliver("shop")
    confirmed = server.wait_for("shop", "impact_confirmed", lambda r: r["state"] == "impact_confirmed")
    assert confirmed["impact"]["status"] == "confirmed"
    assert confirmed["impact"]["facts"] == {"segments": ["retail"]}
    assert "impact_identified" in confirmed["milestones"]
    shop.gauge.labels(service="shop", segment="retail").set(0)
    shop.prometheus.wait_for_series('rl_e2e_checkout_failures_per_minute{service="shop"} == 0', 1)
    server.deliver("shop", status="resolved")
    closed = server.wait_for("shop", "the recovery to close", lambda r: r["state"] == "closed")
    assert {"fix_deployed", "impact_verified", "closed"} <= set(closed["milestones"])
    priority = closed["priority"] if closed["priority"] in ("P1", "P2", "P3", "P4", "P5") else "unknown"
    labels = {"team": "shop-team", "priority": priority}
    assert metric(server.url, "recoverlink_recovery_time_to_impact_seconds_count", **labels) == 1
    assert metric(server.url, "recoverlink_recovery_fix_to_verification_seconds_count", **labels) == 1
    done = metric(server.url, "recoverlink_outbox_job_runs_total", kind="impact.lookup", outcome="done")
    assert done >= 1, "the outbox worker's metrics show on the server's /metrics"


def test_a_hanging_impact_source_never_delays_the_webhook(server: Server, crm: FakeCrm) -> None:
    crm.hold.set()
    crm.release.clear()
    try:
        answers = [server.deliver("care-desk", starts_at=f"2026-12-01T09:0{i}:00Z") for i in range(5)]
        wait_until(lambda: len(crm.requests) > 0, timeout=10, what="the worker to call the CRM")
        answers += [server.deliver("care-desk", starts_at=f"2026-12-01T09:1{i}:00Z") for i in range(5)]
    finally:
        crm.hold.clear()
        crm.release.set()
    assert max(answers) < 1.0, f"webhook answers took {answers}"


def test_a_worker_killed_mid_job_leaves_the_job_to_be_claimed_again(server: Server, crm: FakeCrm) -> None:
    crm.hold.set()
    crm.release.clear()
    crm.cases = [{"id": 1}]
    server.deliver("case-desk", starts_at="2026-12-01T10:00:00Z")
    recovery_id = server.wait_for("case-desk", "the recovery to open", lambda r: True)["id"]
    ours = f"recovery={recovery_id}"
    wait_until(
        lambda: any(ours in path for path in crm.requests), timeout=10, what="the worker to call the CRM"
    )
    pid = outbox_worker_pid(server.process.pid)
    assert pid is not None, server.process.describe()
    os.kill(pid, signal.SIGKILL)
    crm.hold.clear()
    crm.release.set()
    wait_until(
        lambda: outbox_worker_pid(server.process.pid) not in (None, pid),
        timeout=15,
        what="the server to restart its outbox worker",
        details=server.process.describe,
    )
    job = wait_until(
        lambda: next((j for j in server.jobs(recovery_id) if j["state"] == "done"), None),
        timeout=LEASE_SECONDS + 15,
        what="the killed job to run again after its lease expired",
        details=server.process.describe,
    )
    assert job["attempts"] == 2, "one attempt died with the worker, the second finished"
    assert sum(ours in path for path in crm.requests) == 2
    recovery = server.recovery_of("case-desk")
    assert recovery is not None and recovery["impact"]["status"] == "confirmed"
