"""A fake Jira that behaves as REFERENCE.md 4 says, as Cloud (REST v3) or Data Center (REST v2).

In memory: projects with issue types, issues with labels, status and resolution, a small workflow
whose transitions are addressed by id (To Do -> In Progress -> Monitoring -> Done, and Reopen),
comments (ADF on v3, strings on v2), issue properties, and JQL searches of the form recoverlink
sends (`labels = "x"`, `project = X`, `updated >= "yyyy-MM-dd HH:mm"`, `AND`, `ORDER BY`), with
Cloud's `POST /search/jql` (page tokens, bounded JQL only) or Data Center's `GET /search` (startAt).
Status codes are the documented ones: 201 create and comment, 204 transitions, 201/200 property.

Faults, as on the ServiceNow fake: an HTML page, 429 with Retry-After or 503 for the next calls,
and a create that stores the issue and answers too late.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue

from tests.support.fake_servicenow import Faults, serving, utc_now

STATUSES = {"To Do": "new", "In Progress": "indeterminate", "Monitoring": "indeterminate", "Done": "done"}
RESOLUTIONS = ("Done", "Won't Fix", "Duplicate")
PRIORITIES = ("Highest", "High", "Medium", "Low", "Lowest")


@dataclass(frozen=True)
class Transition:
    id: str
    name: str
    to: str
    sources: tuple[str, ...]
    screen: tuple[str, ...] = ()  # the fields its screen shows


WORKFLOW = (
    Transition("11", "In Progress", "In Progress", ("To Do",)),
    Transition("31", "Done", "Done", ("To Do", "In Progress", "Monitoring"), ("resolution",)),
    Transition("41", "Monitor", "Monitoring", ("To Do", "In Progress")),
    Transition("51", "Reopen", "To Do", ("Done",)),
)
_CLAUSE = re.compile(
    r'^(?P<field>labels|project|updated|key)\s*(?P<op>>=|=)\s*(?P<value>"(?:[^"\\]|\\.)*"|\S+)$'
)
_ORDER = re.compile(r"(?:^|\s+)ORDER BY\s+(?P<field>\w+)(?:\s+(?P<direction>ASC|DESC))?\s*$", re.IGNORECASE)


class JqlError(ValueError):
    """A JQL the fake (like Jira) does not accept: answered 400."""


@dataclass
class FakeJira:
    """One site; `app` is the WSGI app (Flask test client or `serve()`)."""

    flavor: str = "cloud"
    user: str = "bot@example.com"  # the email (Cloud) or user name (Data Center) of basic auth
    token: str = "jira-token"
    account_id: str = "557058:recoverlink-bot"
    projects: dict[str, list[str]] = field(default_factory=lambda: {"OPS": ["Incident", "Task"]})
    clock: Callable[[], datetime] = utc_now
    issues: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    calls: list[tuple[str, str]] = field(default_factory=list)
    app: Flask = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.app = self._build_app()

    @property
    def version(self) -> str:
        return "3" if self.flavor == "cloud" else "2"

    # --- what a test does to it ------------------------------------------------------------

    @contextmanager
    def serve(self) -> Iterator[str]:
        with serving(self.app) as url:
            try:
                yield url
            finally:
                self.faults.released.set()  # a late create answers now, before the server stops

    def fail_next(self, count: int, kind: str) -> None:
        """Answer the next `count` calls with `hibernate` (an HTML page), `429` or `503`."""
        assert kind in ("hibernate", "429", "503"), kind
        self.faults.queued.extend([kind] * count)

    def time_out_next_create(self, late_seconds: float = 5.0) -> None:
        self.faults.late_creates += 1
        self.faults.late_seconds = late_seconds

    def issues_labelled(self, label: str) -> list[dict[str, Any]]:
        return [issue for issue in self.issues.values() if label in issue["labels"]]

    def move(self, key: str, status: str, resolution: str | None = None) -> None:
        """A person's change in the UI."""
        with self._lock:
            issue = self.issues[key]
            issue.update(status=status, resolution=resolution, updated=self.clock())

    # --- the API ---------------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("fake_jira")
        app.before_request(self._gate)
        base = f"/rest/api/{self.version}"
        rules: list[tuple[str, Callable[..., ResponseReturnValue], list[str]]] = [
            ("/myself", self._myself, ["GET"]),
            ("/project/<key>", self._project, ["GET"]),
            ("/issue", self._create, ["POST"]),
            ("/issue/<key>", self._read, ["GET"]),
            ("/issue/<key>/transitions", self._transitions, ["GET"]),
            ("/issue/<key>/transitions", self._transition, ["POST"]),
            ("/issue/<key>/comment", self._comment, ["POST"]),
            ("/issue/<key>/properties/<name>", self._property, ["GET", "PUT"]),
            ("/search/jql" if self.flavor == "cloud" else "/search", self._search, ["POST", "GET"]),
        ]
        for path, view, methods in rules:
            app.add_url_rule(base + path, f"{view.__name__}_{'_'.join(methods)}", view, methods=methods)
        return app

    def _gate(self) -> ResponseReturnValue | None:
        self.calls.append((request.method, request.path))
        fault = self.faults.next()
        if fault == "hibernate":
            return "<html><body>Log in to continue</body></html>", 200, {"Content-Type": "text/html"}
        if fault in ("429", "503"):
            message = "Rate limit exceeded." if fault == "429" else "Service Unavailable"
            return _error(int(fault), message, headers={"Retry-After": self.faults.retry_after})
        expected = base64.b64encode(f"{self.user}:{self.token}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return _error(
                401, "You are not authenticated. Authentication required to perform this operation."
            )
        return None

    def _myself(self) -> ResponseReturnValue:
        me = (
            {"accountId": self.account_id}
            if self.flavor == "cloud"
            else {"name": self.user, "key": "JIRAUSER1"}
        )
        return jsonify({**me, "displayName": "recoverlink bot", "active": True})

    def _project(self, key: str) -> ResponseReturnValue:
        if key not in self.projects:
            return _error(404, f"No project could be found with key '{key}'.")
        types = [{"id": str(10000 + n), "name": name} for n, name in enumerate(self.projects[key])]
        return jsonify({"id": "10000", "key": key, "name": key, "issueTypes": types})

    def _create(self) -> ResponseReturnValue:
        fields = (request.get_json(silent=True) or {}).get("fields")
        if not isinstance(fields, dict):
            return _error(400, "The request body is not an issue.")
        if errors := self._create_errors(fields):
            return _error(400, errors=errors)
        with self._lock:
            issue = self._new_issue(fields)
        if self.faults.take_late_create():
            self.faults.wait_late()
        return jsonify({"id": issue["id"], "key": issue["key"], "self": self._self(issue)}), 201

    def _create_errors(self, fields: dict[str, Any]) -> dict[str, str]:
        """What Jira refuses in a create, by field."""
        project = (fields.get("project") or {}).get("key")
        errors: dict[str, str] = {}
        if project not in self.projects:
            errors["project"] = "valid project is required"
        elif (fields.get("issuetype") or {}).get("name") not in self.projects[project]:
            errors["issuetype"] = "Specify a valid issue type"
        if not fields.get("summary"):
            errors["summary"] = "You must specify a summary of the issue."
        if any(" " in label for label in fields.get("labels", [])):
            errors["labels"] = "The label must not contain spaces."
        if "description" in fields and not self._rich_text_ok(fields["description"]):
            errors["description"] = (
                "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
            )
        if "priority" in fields and (fields["priority"] or {}).get("name") not in PRIORITIES:
            errors["priority"] = "Specify the Priority (name) in the string format"
        return errors

    def _new_issue(self, fields: dict[str, Any]) -> dict[str, Any]:
        number = len(self.issues) + 1
        project = fields["project"]["key"]
        issue: dict[str, Any] = {
            "id": str(10000 + number),
            "key": f"{project}-{number}",
            "project": project,
            "summary": fields["summary"],
            "description": fields.get("description"),
            "labels": list(fields.get("labels", [])),
            "priority": (fields.get("priority") or {}).get("name", "Medium"),
            "status": "To Do",
            "resolution": None,
            "created": self.clock(),
            "updated": self.clock(),
            "comments": [],
            "properties": {},
        }
        self.issues[issue["key"]] = issue
        return issue

    def _read(self, key: str) -> ResponseReturnValue:
        issue = self.issues.get(key)
        if issue is None:
            return _error(404, "Issue does not exist or you do not have permission to see it.")
        wanted = [name for name in request.args.get("fields", "").split(",") if name]
        return jsonify(self._shown(issue, wanted))

    def _transitions(self, key: str) -> ResponseReturnValue:
        issue = self.issues.get(key)
        if issue is None:
            return _error(404, "Issue does not exist or you do not have permission to see it.")
        expanded = "transitions.fields" in request.args.get("expand", "")
        return jsonify({"transitions": [self._transition_json(t, expanded) for t in _offered(issue)]})

    def _transition(self, key: str) -> ResponseReturnValue:
        issue = self.issues.get(key)
        if issue is None:
            return _error(404, "Issue does not exist or you do not have permission to see it.")
        body = request.get_json(silent=True) or {}
        wanted = str((body.get("transition") or {}).get("id"))
        chosen = next((t for t in _offered(issue) if t.id == wanted), None)
        if chosen is None:
            return _error(400, f"Transition id '{wanted}' is not valid for this issue.")
        fields = body.get("fields") or {}
        if unknown := [name for name in fields if name not in chosen.screen]:
            return _error(
                400, errors={n: f"Field '{n}' cannot be set. It is not on the screen." for n in unknown}
            )
        with self._lock:
            resolution = (fields.get("resolution") or {}).get("name", "Done") if chosen.to == "Done" else None
            issue.update(status=chosen.to, resolution=resolution, updated=self.clock())
        return "", 204

    def _comment(self, key: str) -> ResponseReturnValue:
        issue = self.issues.get(key)
        if issue is None:
            return _error(404, "Issue does not exist or you do not have permission to see it.")
        body = request.get_json(silent=True) or {}
        if not self._rich_text_ok(body.get("body")):
            return _error(400, errors={"comment": "Comment body is not valid for this API version."})
        with self._lock:
            number = str(20000 + len(issue["comments"]))
            comment = {"id": number, "body": body["body"], "properties": body.get("properties", [])}
            issue["comments"].append(comment)
            issue["updated"] = self.clock()
        return jsonify(comment), 201

    def _property(self, key: str, name: str) -> ResponseReturnValue:
        issue = self.issues.get(key)
        if issue is None:
            return _error(404, "Issue does not exist or you do not have permission to see it.")
        if request.method == "GET":
            if name not in issue["properties"]:
                return _error(404, f"The property with key '{name}' does not exist.")
            return jsonify({"key": name, "value": issue["properties"][name]})
        existed = name in issue["properties"]
        issue["properties"][name] = request.get_json(silent=True)
        return "", 200 if existed else 201

    def _search(self) -> ResponseReturnValue:
        query: Any = (request.get_json(silent=True) or {}) if request.method == "POST" else request.args
        try:
            found = self._matching(str(query.get("jql", "")))
        except JqlError as exc:
            return _error(400, str(exc))
        fields = query.get("fields", [])
        wanted = fields.split(",") if isinstance(fields, str) else list(fields)
        limit = int(query.get("maxResults", 50))
        if self.flavor == "cloud":
            start = int(query.get("nextPageToken") or 0)
            page = found[start : start + limit]
            following = str(start + limit) if start + limit < len(found) else None
            issues = [self._shown(issue, wanted) for issue in page]
            return jsonify({"issues": issues, "nextPageToken": following, "isLast": following is None})
        start = int(query.get("startAt", 0))
        issues = [self._shown(issue, wanted) for issue in found[start : start + limit]]
        return jsonify({"startAt": start, "maxResults": limit, "total": len(found), "issues": issues})

    # --- helpers ---------------------------------------------------------------------------

    def _matching(self, jql: str) -> list[dict[str, Any]]:
        """Issues matching a JQL of recoverlink's form, in its order."""
        order = _ORDER.search(jql)
        where = jql[: order.start()] if order else jql
        clauses = [_clause(c.strip()) for c in re.split(r"\s+AND\s+", where) if c.strip()]
        if not clauses and self.flavor == "cloud":
            raise JqlError("Unbounded JQL queries are not allowed here. Please add a search restriction.")
        with self._lock:
            found = [issue for issue in self.issues.values() if all(_holds(issue, *c) for c in clauses)]
        name = order["field"].lower() if order else "created"
        descending = bool(order and (order["direction"] or "").upper() == "DESC")
        return sorted(found, key=lambda issue: _sort_key(issue, name), reverse=descending)

    def _shown(self, issue: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
        every = {
            "summary": issue["summary"],
            "description": issue["description"],
            "labels": issue["labels"],
            "status": _status_json(issue["status"]),
            "resolution": {"name": issue["resolution"]} if issue["resolution"] else None,
            "priority": {"name": issue["priority"]},
            "project": {"key": issue["project"]},
            "assignee": None,
            "created": _jira_time(issue["created"]),
            "updated": _jira_time(issue["updated"]),
        }
        fields = {name: every[name] for name in wanted if name in every} if wanted else every
        return {"id": issue["id"], "key": issue["key"], "self": self._self(issue), "fields": fields}

    def _transition_json(self, transition: Transition, expanded: bool) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "id": transition.id,
            "name": transition.name,
            "to": _status_json(transition.to),
        }
        if expanded:
            shown["fields"] = {name: {"required": False, "name": name.title()} for name in transition.screen}
        return shown

    def _rich_text_ok(self, value: Any) -> bool:
        """v3 takes ADF documents only; v2 plain strings only."""
        if self.flavor == "cloud":
            return isinstance(value, dict) and value.get("type") == "doc" and value.get("version") == 1
        return isinstance(value, str)

    def _self(self, issue: dict[str, Any]) -> str:
        return f"{request.host_url.rstrip('/')}/rest/api/{self.version}/issue/{issue['id']}"


def _offered(issue: dict[str, Any]) -> list[Transition]:
    return [t for t in WORKFLOW if issue["status"] in t.sources]


def _status_json(name: str) -> dict[str, Any]:
    return {"name": name, "statusCategory": {"key": STATUSES[name]}}


def _clause(text: str) -> tuple[str, Any]:
    """One `field op value` clause, read before any issue is looked at (as Jira parses first)."""
    found = _CLAUSE.match(text)
    if found is None:
        raise JqlError(f"Error in the JQL Query: cannot read {text!r}")
    value = found["value"].strip('"').replace('\\"', '"')
    if found["field"] != "updated":
        return found["field"], value
    try:
        return "updated", datetime.strptime(value, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    except ValueError as exc:
        raise JqlError(f"Date value '{value}' for field 'updated' is invalid") from exc


def _holds(issue: dict[str, Any], name: str, value: Any) -> bool:
    if name == "labels":
        return value in issue["labels"]
    if name == "updated":
        return bool(issue["updated"] >= value)
    return bool(issue[name] == value)


def _sort_key(issue: dict[str, Any], name: str) -> Any:
    if name == "key":
        project, _, number = issue["key"].partition("-")
        return (project, int(number))
    return issue.get(name) or issue["created"]


def _jira_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _error(
    status: int, *messages: str, errors: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> tuple[Response, int, dict[str, str]]:
    """Jira's error body: `{"errorMessages": [...], "errors": {field: message}}`."""
    return jsonify({"errorMessages": list(messages), "errors": errors or {}}), status, headers or {}
