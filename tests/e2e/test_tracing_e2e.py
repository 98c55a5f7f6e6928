"""Tracing for real: with `OTEL_TRACES_EXPORTER=otlp`, `recoverlink serve` and its outbox worker
export spans over OTLP/HTTP (to a receiver of the test's), and one trace follows an alert from the
webhook through the outbox to the ITSM call; log lines carry its trace id. Off by default.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.e2e.conftest import child_env, recoverlink_script, write_yaml
from tests.support.fake_servicenow import FakeServiceNow
from tests.support.processes import LOOPBACK, RunningProcess, free_port, running_process, wait_until

pytestmark = pytest.mark.e2e

WEBHOOK_TOKEN = "e2e-tracing-webhook-token-0123456789"


@dataclass(frozen=True)
class Span:
    trace_id: str
    name: str
    kind: int
    service: str
    process: str


@dataclass
class Collector:
    """An OTLP/HTTP trace receiver: `POST /v1/traces` with a protobuf ExportTraceServiceRequest."""

    url: str = ""
    spans: list[Span] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def keep(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    with self.lock:
                        self.spans.append(
                            Span(
                                span.trace_id.hex(),
                                span.name,
                                span.kind,
                                attributes.get("service.name", ""),
                                attributes.get("recoverlink.process", ""),
                            )
                        )

    def trace_of(self, name: str) -> list[Span]:
        with self.lock:
            first = next((s for s in self.spans if s.name == name), None)
            return [s for s in self.spans if first is not None and s.trace_id == first.trace_id]


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    received = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received.keep(self.rfile.read(length))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    received.url = f"http://{LOOPBACK}:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Stack:
    url: str
    process: RunningProcess
    servicenow: FakeServiceNow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, collector: Collector) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("tracing-e2e")
    (directory / "webhook.secret").write_text(WEBHOOK_TOKEN + "\n")
    servicenow = FakeServiceNow()
    (directory / "sn.secret").write_text(servicenow.password + "\n")
    catalog = write_yaml(
        directory / "catalog.yaml",
        {
            "teams": [{"name": "shop-team"}],
            "services": [{"name": "shop", "owner": "shop-team", "itsm": {"system": "servicenow"}}],
        },
    )
    with servicenow.serve() as sn_url:
        config = write_yaml(
            directory / "recoverlink.yaml",
            {
                "webhook": {"auth": {"bearer": {"file": str(directory / "webhook.secret")}}},
                "database": {"sqlite_path": str(directory / "var" / "recoverlink.db")},
                "server": {"workers": 2, "threads": 2, "metrics_dir": str(directory / "var" / "metrics")},
                "catalog": {"files": [str(catalog)]},
                "itsm": {
                    "servicenow": {
                        "url": sn_url,
                        "auth": {
                            "basic": {
                                "username": servicenow.user,
                                "password": {"file": str(directory / "sn.secret")},
                            }
                        },
                        "timeout_seconds": 3,
                    }
                },
                "worker": {"lease": "6s"},
            },
        )
        port = free_port()
        url = f"http://{LOOPBACK}:{port}"
        env = {
            **child_env(),
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # export every 200 ms instead of every 5 s
            "OTEL_SERVICE_NAME": "recoverlink-e2e",
        }
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
            "recoverlink-tracing-e2e", argv, log_dir=directory / "logs", ready_url=f"{url}/-/ready", env=env
        ) as process:
            yield Stack(url, process, servicenow)


def deliver(stack: Stack) -> None:
    labels = {"alertname": "ShopDown", "service": "shop", "severity": "critical"}
    alert = {"status": "firing", "labels": labels, "annotations": {}, "startsAt": "2026-12-01T08:00:00Z"}
    alert.update(endsAt="0001-01-01T00:00:00Z", generatorURL="", fingerprint="fp-shop")
    document = {"version": "4", "status": "firing", "alerts": [alert], "groupKey": "{}:shop", "receiver": "r"}
    document.update(
        groupLabels={}, commonLabels=labels, commonAnnotations={}, externalURL="x", truncatedAlerts=0
    )
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    answer = requests.post(f"{stack.url}/webhook/alertmanager", json=document, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text


def test_one_trace_follows_an_alert_from_the_webhook_through_the_outbox_to_the_itsm(
    stack: Stack, collector: Collector
) -> None:
    deliver(stack)
    wait_until(lambda: stack.servicenow.records, timeout=20, what="the incident in ServiceNow")

    def whole_trace() -> list[Span] | None:
        spans = collector.trace_of("POST /webhook/alertmanager")
        names = {s.name for s in spans}
        return (
            spans if {"worker.run_job", "itsm.create"} <= names and any(s.kind == 3 for s in spans) else None
        )

    spans = wait_until(whole_trace, timeout=20, what="the webhook's trace to reach the ITSM call")
    by_name = {s.name: s for s in spans}
    assert by_name["POST /webhook/alertmanager"].process == "web"
    assert by_name["worker.run_job"].process == "worker"
    assert by_name["itsm.create"].process == "worker"
    assert any(s.kind == 3 and s.process == "worker" for s in spans), (
        "the requests call to ServiceNow (CLIENT)"
    )
    assert any(s.kind == 3 and s.process == "web" for s in spans), (
        "SQLAlchemy statements of the webhook (CLIENT)"
    )
    assert {s.service for s in spans} == {"recoverlink-e2e"}
    trace_id = spans[0].trace_id
    text = Path(stack.process.log_path).read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(entry.get("trace_id") == trace_id for entry in lines), "log lines carry the trace id"
