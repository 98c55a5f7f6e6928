"""A fake ServiceNow Table API that behaves as REFERENCE.md 3 says, for end-to-end adapter tests.

In memory: incidents (201 + Location on create, `{"result": ...}` envelopes, `sys_mod_count` +1 on
every update, work notes kept in a journal, data policy: resolving needs close_code and
close_notes), `sys_choice` and `sys_dictionary` rows for `itsm check`, and encoded queries with
`=`, `!=`, `>=`, `IN`, `ORDERBY[DESC]` (an unknown field's part is dropped, as the instance does).

Faults for the next calls: the hibernation page (200, HTML), 429 with Retry-After, 503; and a
create that stores the record and then answers too late (a client timeout). `serving(app)`
serves any WSGI app on a free 127.0.0.1 port from a thread; the Jira fake uses it too.
"""

from __future__ import annotations

import base64
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.serving import make_server

from tests.support.processes import LOOPBACK

HIBERNATION_PAGE = (
    "<html><head><title>Your instance is hibernating</title></head>"
    '<body class="instance-hibernating-page"><h1>Your instance is hibernating</h1></body></html>'
)
INCIDENT_FIELDS = (
    "sys_id", "number", "state", "impact", "urgency", "priority", "short_description", "description",
    "assignment_group", "assigned_to", "cmdb_ci", "caller_id", "correlation_id", "correlation_display",
    "close_code", "close_notes", "hold_reason", "active", "sys_mod_count", "sys_created_on",
    "sys_updated_on", "sys_updated_by", "work_notes", "comments",
)  # fmt: skip
JOURNAL_FIELDS = ("work_notes", "comments")
STATES = {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"}
CLOSE_CODES = ("Solved (Permanently)", "Solved (Work Around)", "Not Solved (Not Reproducible)")


def utc_now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def serving(app: Callable[..., Any]) -> Iterator[str]:
    """Serve a WSGI app on a free 127.0.0.1 port until the block ends; yields its base URL."""
    server = make_server(LOOPBACK, 0, app, threaded=True)
    # A short poll interval: shutdown() waits for the loop to look again (0.5 s by default).
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), name="fake-itsm", daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class Faults:
    """What the next calls answer instead of the real thing, and creates that answer too late."""

    queued: list[str] = field(default_factory=list)  # "hibernate" | "429" | "503", one per call
    retry_after: str = "2"
    late_creates: int = 0
    late_seconds: float = 5.0
    released: threading.Event = field(default_factory=threading.Event)

    def next(self) -> str | None:
        return self.queued.pop(0) if self.queued else None

    def take_late_create(self) -> bool:
        if self.late_creates <= 0:
            return False
        self.late_creates -= 1
        return True

    def wait_late(self) -> None:
        """Hold a create's answer until the client gave up (or the server stops)."""
        self.released.wait(self.late_seconds)


@dataclass
class FakeServiceNow:
    """One instance: `app` is the WSGI app (Flask test client or `serve()`)."""

    user: str = "recoverlink"
    password: str = "sn-password"
    table: str = "incident"
    clock: Callable[[], datetime] = utc_now
    records: dict[str, dict[str, str]] = field(default_factory=dict)
    journal: list[tuple[str, str, str]] = field(default_factory=list)  # (sys_id, element, text)
    groups: dict[str, str] = field(
        default_factory=lambda: {"Payments Ops": "287ebd7da9fe198100f92cc8d1d2154e"}
    )
    choices: list[dict[str, str]] = field(default_factory=list)
    dictionary: list[dict[str, str]] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    app: Flask = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        if not self.choices:
            self.choices = [_choice("state", v, label) for v, label in STATES.items()]
            self.choices += [_choice("close_code", code, code) for code in CLOSE_CODES]
        if not self.dictionary:
            self.dictionary = [
                {"name": "task", "element": e} for e in ("correlation_id", "correlation_display")
            ]
        self.app = self._build_app()

    # --- what a test does to it ------------------------------------------------------------

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve on a free loopback port; a late create is released when the block ends."""
        with serving(self.app) as url:
            try:
                yield url
            finally:
                self.faults.released.set()  # a late create answers now, before the server stops

    def fail_next(self, count: int, kind: str) -> None:
        """Answer the next `count` calls with `hibernate`, `429` or `503`."""
        assert kind in ("hibernate", "429", "503"), kind
        self.faults.queued.extend([kind] * count)

    def time_out_next_create(self, late_seconds: float = 5.0) -> None:
        """Store the next created record, then answer only after `late_seconds` (past a client timeout)."""
        self.faults.late_creates += 1
        self.faults.late_seconds = late_seconds

    def incidents_with(self, correlation: str) -> list[dict[str, str]]:
        return [r for r in self.records.values() if r["correlation_id"] == correlation]

    def notes_of(self, sys_id: str) -> list[str]:
        return [text for owner, element, text in self.journal if owner == sys_id and element == "work_notes"]

    def set_state(self, sys_id: str, state: str, by: str = "ann.agent", **fields: str) -> None:
        """A person's change in the UI."""
        with self._lock:
            self._update(self.records[sys_id], {"state": state, **fields}, by)

    # --- the API ---------------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("fake_servicenow")
        app.before_request(self._gate)
        base = "/api/now/table/<table>"
        app.add_url_rule(base, "list", self._list, methods=["GET"])
        app.add_url_rule(base, "create", self._create, methods=["POST"])
        app.add_url_rule(f"{base}/<sys_id>", "read", self._read, methods=["GET"])
        app.add_url_rule(f"{base}/<sys_id>", "update", self._patch, methods=["PATCH", "PUT"])
        return app

    def _gate(self) -> ResponseReturnValue | None:
        """Faults first (a sleeping instance answers before any login), then auth, then headers."""
        self.calls.append((request.method, request.path))
        fault = self.faults.next()
        if fault == "hibernate":
            return HIBERNATION_PAGE, 200, {"Content-Type": "text/html; charset=UTF-8"}
        if fault in ("429", "503"):
            message = "Rate limit exceeded" if fault == "429" else "Service Unavailable"
            return _error(message, "try again later", int(fault), {"Retry-After": self.faults.retry_after})
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return _error("User Not Authenticated", "Required to provide Auth information", 401)
        if "json" not in request.headers.get("Accept", ""):
            return _error("Unsupported Accept", "Accept: application/json is required", 400)
        if request.method in ("POST", "PATCH", "PUT") and not request.is_json:
            return _error("Unsupported Content-Type", "Content-Type: application/json is required", 400)
        return None

    def _list(self, table: str) -> ResponseReturnValue:
        rows = self._rows_of(table)
        if rows is None:
            return _error("Invalid table", f"Invalid table {table}", 400)
        with self._lock:
            found = _run_query(list(rows), request.args.get("sysparm_query", ""))
        offset = int(request.args.get("sysparm_offset", "0"))
        limit = int(request.args.get("sysparm_limit", "10000"))
        page = [self._shown(row) for row in found[offset : offset + limit]]
        response = jsonify({"result": page})
        response.headers["X-Total-Count"] = str(len(found))
        return response

    def _rows_of(self, table: str) -> list[dict[str, str]] | None:
        tables = {
            self.table: list(self.records.values()),
            "sys_choice": self.choices,
            "sys_dictionary": self.dictionary,
        }
        return tables.get(table)

    def _create(self, table: str) -> ResponseReturnValue:
        if table != self.table:
            return _error("Invalid table", f"Invalid table {table}", 400)
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _error("Exception while reading request", "The payload is not valid JSON.", 400)
        with self._lock:
            record = self._new_record(body)
        if self.faults.take_late_create():
            self.faults.wait_late()
        location = f"{request.host_url.rstrip('/')}/api/now/table/{table}/{record['sys_id']}"
        return jsonify({"result": self._shown(record)}), 201, {"Location": location}

    def _read(self, table: str, sys_id: str) -> ResponseReturnValue:
        record = self.records.get(sys_id) if table == self.table else None
        if record is None:
            return _error(
                "No Record found", "Record doesn't exist or ACL restricts the record retrieval", 404
            )
        return jsonify({"result": self._shown(record)})

    def _patch(self, table: str, sys_id: str) -> ResponseReturnValue:
        record = self.records.get(sys_id) if table == self.table else None
        if record is None:
            return _error(
                "No Record found", "Record doesn't exist or ACL restricts the record retrieval", 404
            )
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _error("Exception while reading request", "The payload is not valid JSON.", 400)
        with self._lock:
            merged = {**record, **{k: str(v) for k, v in body.items()}}
            if merged["state"] in ("6", "7") and not (merged["close_code"] and merged["close_notes"]):
                return _error(
                    "Operation Failed", "Data Policy Exception: Resolution code, Resolution notes", 403
                )
            self._update(record, body, self.user)
        return jsonify({"result": self._shown(record)})

    # --- records ---------------------------------------------------------------------------

    def _new_record(self, body: dict[str, Any]) -> dict[str, str]:
        now = self._now()
        record = dict.fromkeys(INCIDENT_FIELDS, "")
        record.update({k: self._input(k, v) for k, v in body.items() if k in INCIDENT_FIELDS})
        impact, urgency = record["impact"] or "3", record["urgency"] or "3"
        record.update(
            sys_id=uuid.uuid4().hex,
            number=f"INC{10001 + len(self.records):07d}",
            state=record["state"] or "1",
            impact=impact,
            urgency=urgency,
            priority=str(int(impact) + int(urgency) - 1),  # the default lookup rules, 3.4
            active="true",
            sys_mod_count="0",
            sys_created_on=now,
            sys_updated_on=now,
            sys_updated_by=self.user,
        )
        self._journal(record, body)
        self.records[record["sys_id"]] = record
        return record

    def _update(self, record: dict[str, str], body: dict[str, Any], by: str) -> None:
        record.update({k: self._input(k, v) for k, v in body.items() if k in INCIDENT_FIELDS})
        self._journal(record, body)
        record["active"] = "false" if record["state"] in ("6", "7", "8") else "true"
        record["sys_mod_count"] = str(int(record["sys_mod_count"]) + 1)
        record["sys_updated_on"] = self._now()
        record["sys_updated_by"] = by

    def _journal(self, record: dict[str, str], body: dict[str, Any]) -> None:
        """Journal fields append an entry and read back empty."""
        for element in JOURNAL_FIELDS:
            if body.get(element):
                self.journal.append((record["sys_id"], element, str(body[element])))
            record[element] = ""

    def _input(self, name: str, value: Any) -> str:
        """With sysparm_input_display_value=true a group may be given by name."""
        text = str(value)
        if name == "assignment_group" and request.args.get("sysparm_input_display_value") == "true":
            return self.groups.get(text, text)
        return text

    def _shown(self, row: dict[str, str]) -> dict[str, str]:
        """The row through sysparm_fields (unknown names dropped; `assignment_group.name` dot-walks)."""
        wanted = [name for name in request.args.get("sysparm_fields", "").split(",") if name]
        if not wanted:
            return dict(row)
        names = {sys_id: name for name, sys_id in self.groups.items()}
        shown = {name: row[name] for name in wanted if name in row}
        if "assignment_group.name" in wanted and "assignment_group" in row:
            shown["assignment_group.name"] = names.get(row["assignment_group"], "")
        return shown

    def _now(self) -> str:
        return self.clock().astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


_CONDITION = re.compile(r"^(?P<name>[a-z_][a-z0-9_.]*)(?P<operator>!=|>=|<=|IN|=)(?P<value>.*)$")


def _choice(element: str, value: str, label: str) -> dict[str, str]:
    return {"name": "incident", "element": element, "value": value, "label": label, "inactive": "false"}


def _run_query(rows: list[dict[str, str]], query: str) -> list[dict[str, str]]:
    """An encoded query: conditions joined by `^`, then ORDERBY parts; unknown fields are dropped."""
    known = set(rows[0]) if rows else set()
    order: list[tuple[str, bool]] = []
    for part in (p for p in query.split("^") if p):
        if part.startswith("ORDERBYDESC"):
            order.append((part.removeprefix("ORDERBYDESC"), True))
        elif part.startswith("ORDERBY"):
            order.append((part.removeprefix("ORDERBY"), False))
        elif (condition := _condition(part)) is not None and condition[0] in known:
            rows = [row for row in rows if _matches(row, *condition)]
    for name, descending in reversed(order):
        rows = _sorted(rows, name, descending)
    return rows


def _sorted(rows: list[dict[str, str]], name: str, descending: bool) -> list[dict[str, str]]:
    return sorted(rows, key=lambda row: row.get(name, ""), reverse=descending)


def _condition(part: str) -> tuple[str, str, str] | None:
    found = _CONDITION.match(part)
    return (found["name"], found["operator"], found["value"]) if found else None


def _matches(row: dict[str, str], name: str, operator: str, value: str) -> bool:
    actual = row.get(name, "")
    if operator == "IN":
        return actual in value.split(",")
    comparisons = {"=": actual == value, "!=": actual != value, ">=": actual >= value, "<=": actual <= value}
    return comparisons[operator]


def _error(
    message: str, detail: str, status: int, headers: dict[str, str] | None = None
) -> tuple[Response, int, dict[str, str]]:
    return (
        jsonify({"error": {"message": message, "detail": detail}, "status": "failure"}),
        status,
        headers or {},
    )
