"""The two servers the demo runs in its own process: the payments exporter and an agent desktop.

- `PaymentsExporter`: what the demo's "payments" would expose, on a `prometheus_client` registry of
  its own: `payments_api_up{service="payments-api"}` (the PaymentsApiDown rule watches it) and
  `checkout_failures_per_minute{journey="checkout", segment=...}` (what the impact source reads: a
  gauge, so the impact shows and clears on the next 1 s scrape instead of over a rate window).
- `AgentDesktop`: the contact-center agent desktop the CX action calls (PUT a banner); it answers
  200 and keeps what arrived, so the outage's handoffs show in the demo's output.

Both bind 127.0.0.1 and stop when their `with` block ends.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from demo.processes import LOOPBACK

SERVICE = "payments-api"
JOURNEY = "checkout"
# Failures per minute by customer segment while payments are down.
OUTAGE_FAILURES = {"retail": 42.0, "business": 7.0}


@dataclass
class PaymentsExporter:
    """The payments metrics; `break_payments` and `fix_payments` are the scripted outage."""

    target: str
    up: Gauge
    failures: Gauge

    def healthy(self) -> None:
        self.up.labels(service=SERVICE).set(1)
        for segment in OUTAGE_FAILURES:
            self.failures.labels(journey=JOURNEY, segment=segment).set(0)

    def break_payments(self) -> None:
        self.up.labels(service=SERVICE).set(0)
        for segment, per_minute in OUTAGE_FAILURES.items():
            self.failures.labels(journey=JOURNEY, segment=segment).set(per_minute)

    def fix_payments(self) -> None:
        self.healthy()


@contextmanager
def serving_payments_exporter(port: int) -> Iterator[PaymentsExporter]:
    """Serve the payments metrics on 127.0.0.1:`port`, healthy to start with."""
    registry = CollectorRegistry()
    up = Gauge(
        "payments_api_up",
        "1 while the payments API answers, 0 when it is down.",
        ["service"],
        registry=registry,
    )
    failures = Gauge(
        "checkout_failures_per_minute",
        "Failed checkouts per minute, by customer segment.",
        ["journey", "segment"],
        registry=registry,
    )
    exporter = PaymentsExporter(target=f"{LOOPBACK}:{port}", up=up, failures=failures)
    exporter.healthy()
    server, thread = start_http_server(port, addr=LOOPBACK, registry=registry)
    try:
        yield exporter
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass(frozen=True)
class DesktopRequest:
    """One call of the CX action: when it arrived (time.time()), method, path, its JSON body."""

    at: float
    method: str
    path: str
    body: Any


@dataclass
class AgentDesktop:
    """Where the agent-banner action is sent; `received` in arrival order."""

    host: str
    received: list[DesktopRequest]


@contextmanager
def serving_agent_desktop(port: int) -> Iterator[AgentDesktop]:
    """Answer every PUT/POST/PATCH on 127.0.0.1:`port` with 200 and keep it in `received`."""
    desktop = AgentDesktop(host=f"{LOOPBACK}:{port}", received=[])
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", errors="replace")
            request = DesktopRequest(time.time(), self.command, self.path, body)
            with lock:
                desktop.received.append(request)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_PUT = do_POST = do_PATCH = _answer

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the demo prints what arrived in its own words."""

    server = ThreadingHTTPServer((LOOPBACK, port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="agent-desktop", daemon=True)
    thread.start()
    try:
        yield desktop
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
