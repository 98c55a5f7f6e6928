"""A system of action on loopback: a threaded HTTP server that records every request it gets.

Tests tell it what to answer (`answer(503, 200)`: the first request gets 503, later ones the last
status) and read back `requests`: method, path, headers and body, in arrival order.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.processes import LOOPBACK


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """The server's state; `url` is `http://127.0.0.1:<port>`."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=lambda: [200])
    retry_after: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def answer(self, *statuses: int, retry_after: str | None = None) -> None:
        with self._lock:
            self.statuses = list(statuses)
            self.retry_after = retry_after

    def take(self, request: Received) -> int:
        with self._lock:
            self.requests.append(request)
            return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def to(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status = receiver.take(Received(self.command, self.path, dict(self.headers.items()), body))
            self.send_response(status)
            if status >= 500 and receiver.retry_after is not None:
                self.send_header("Retry-After", receiver.retry_after)
            self.send_header("Content-Type", "application/json")
            answer = b'{"ok": true}' if status < 300 else b'{"error": "try later"}'
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_POST = do_PUT = do_PATCH = _record

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads `requests` instead."""

    return Handler


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    """Serve on a free 127.0.0.1 port until the block ends."""
    receiver = Receiver()
    server = ThreadingHTTPServer((LOOPBACK, 0), _handler(receiver))
    receiver.url = f"http://{LOOPBACK}:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
