"""Jira issues and webhooks as recoverlink's incident values, and the bodies the Jira adapter sends.

Pure, no I/O (REFERENCE.md 4). The correlation id travels as the label `rl-rec-<recovery id>`
beside `config.label` (labels cannot hold the ':' of `recoverlink:rec-<id>` readably, and JQL
finds labels but not issue properties). Cloud's REST v3 wants descriptions and comment bodies
as Atlassian Document Format; Data Center's v2 takes plain strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from recoverlink.config.itsm import JiraConfig
from recoverlink.domain.errors import PayloadInvalid
from recoverlink.domain.itsm import (
    IncidentChange,
    IncidentDraft,
    IncidentStatus,
    correlation_id,
    recovery_id_of,
)

SYSTEM = "jira"
LABEL_PREFIX = "rl-rec-"
PROPERTY_KEY = "recoverlink"  # the issue property that confirms an issue is ours
ISSUE_FIELDS = ("status", "labels", "resolution", "assignee", "updated")
SUMMARY_CHARS = 255
# Jira Service Management shows a comment to customers unless this property marks it internal;
# other projects store the property and ignore it [3rd: several REST clients].
INTERNAL_COMMENT = [{"key": "sd.public.comment", "value": {"internal": True}}]
WEBHOOK_ID_HEADER = "X-Atlassian-Webhook-Identifier"
_UPDATED_FORMAT = "%Y-%m-%dT%H:%M:%S.%f%z"  # 2026-11-22T18:10:00.000+0000
_ISSUE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*-[0-9]+$|^[0-9]+$")


class IssueInvalid(ValueError):
    """An issue or webhook lacks a field recoverlink needs, or has it in another shape."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def correlation_label(correlation: str) -> str:
    """`rl-rec-193` for `recoverlink:rec-193`; a correlation id of another form is refused."""
    recovery_id = recovery_id_of(correlation)
    if recovery_id is None:
        raise ValueError(f"{correlation!r} is not a recoverlink correlation id")
    return f"{LABEL_PREFIX}{recovery_id}"


def correlation_of(labels: Iterable[object]) -> str | None:
    """The correlation id an issue's `rl-rec-<id>` label names, if it has one."""
    for label in labels:
        if isinstance(label, str) and label.startswith(LABEL_PREFIX):
            digits = label.removeprefix(LABEL_PREFIX)
            if digits.isascii() and digits.isdigit():
                return correlation_id(int(digits))
    return None


def is_issue_key(value: str) -> bool:
    """An issue key (`OPS-154`) or id (`10002`): safe as a URL path part."""
    return bool(_ISSUE_KEY.match(value))


def adf(text: str) -> dict[str, Any]:
    """Plain text as an ADF document: blank lines part paragraphs, single newlines are hard breaks."""
    blocks = text.replace("\r\n", "\n").split("\n\n")
    return {"type": "doc", "version": 1, "content": [_paragraph(block) for block in blocks if block.strip()]}


def _paragraph(block: str) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    for number, line in enumerate(block.strip("\n").split("\n")):
        if number:
            nodes.append({"type": "hardBreak"})
        if line:  # ADF refuses an empty text node
            nodes.append({"type": "text", "text": line})
    return {"type": "paragraph", "content": nodes}


def rich_text(text: str, config: JiraConfig) -> Any:
    """A description or comment body as the flavour's API wants it."""
    return adf(text) if config.flavor == "cloud" else text


def comment_body(note: str, config: JiraConfig) -> dict[str, Any]:
    return {"body": rich_text(note, config), "properties": INTERNAL_COMMENT}


def create_fields(draft: IncidentDraft, config: JiraConfig, project: str) -> dict[str, Any]:
    """The `fields` of a new issue: project, type and priority by name, both labels."""
    fields: dict[str, Any] = {
        "project": {"key": project},
        "issuetype": {"name": config.issue_type},
        "summary": " ".join(draft.title.split())[:SUMMARY_CHARS],
        "labels": [config.label, correlation_label(draft.correlation_id)],
    }
    if draft.description.strip():
        fields["description"] = rich_text(draft.description, config)
    if priority := config.priorities.get(draft.priority):
        fields["priority"] = {"name": priority}
    return fields


def jql_string(value: str) -> str:
    """A JQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def jql_time(moment: datetime, time_zone: str) -> str:
    """`yyyy-MM-dd HH:mm` in the API user's time zone, where JQL reads it; floored to the minute."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(ZoneInfo(time_zone)).strftime("%Y-%m-%d %H:%M")


def status_of(
    name: str, category: str | None, states: Mapping[IncidentStatus, list[str]]
) -> IncidentStatus | None:
    """A status name listed in `states` wins over its category key (new, indeterminate, done)."""
    for wanted in (name, category):
        if not wanted:
            continue
        for status, values in states.items():
            if any(wanted.casefold() == value.casefold() for value in values):
                return status
    return None


def issue_status(issue: Mapping[str, Any], config: JiraConfig) -> tuple[IncidentStatus | None, str]:
    """What an issue's status means, and its name."""
    status = _object(_fields(issue), "status", "issue.fields.status", required=True)
    name = _text(status, "name", "issue.fields.status.name")
    category = _object(status, "statusCategory", "issue.fields.status.statusCategory")
    key = category.get("key") if isinstance(category.get("key"), str) else None
    return status_of(name, key, config.states), name


def resolution_of(issue: Mapping[str, Any]) -> str | None:
    resolution = _object(_fields(issue), "resolution", "issue.fields.resolution")
    name = resolution.get("name")
    return name if isinstance(name, str) and name else None


def labels_of(issue: Mapping[str, Any]) -> list[str]:
    labels = _fields(issue).get("labels")
    return [label for label in labels if isinstance(label, str)] if isinstance(labels, list) else []


def issue_change(issue: Mapping[str, Any], config: JiraConfig) -> IncidentChange:
    """An issue read by the reconciliation poll, keyed `poll:<key>:<updated>`."""
    key = _text(issue, "key", "issue.key")
    status, name = issue_status(issue, config)
    updated = _fields(issue).get("updated")
    updated_text = updated if isinstance(updated, str) else ""
    return IncidentChange(
        system=SYSTEM,
        incident_id=key,
        correlation_id=correlation_of(labels_of(issue)),
        status=status,
        raw_status=name,
        dedup_key=f"poll:{key}:{updated_text}",
        assignee_team=_display_name(_object(_fields(issue), "assignee", "issue.fields.assignee")),
        resolution=resolution_of(issue),
        at=_parse_updated(updated_text),
    )


def webhook_change(
    body: bytes, headers: Mapping[str, str], config: JiraConfig, api_user: str | None
) -> IncidentChange:
    """A `jira:issue_updated` delivery (REFERENCE.md 4.5); a missing or ill-typed field is PayloadInvalid."""
    payload = _webhook_object(body)
    try:
        issue = _object(payload, "issue", "issue", required=True)
        key = _text(issue, "key", "issue.key")
        status, name = issue_status(issue, config)
        user = _object(payload, "user", "user")
        change = IncidentChange(
            system=SYSTEM,
            incident_id=key,
            correlation_id=correlation_of(labels_of(issue)),
            status=status,
            raw_status=name,
            dedup_key=_webhook_dedup_key(payload, issue, headers),
            assignee_team=_display_name(_object(_fields(issue), "assignee", "issue.fields.assignee")),
            actor=_display_name(user) or _user_id(user),
            by_us=api_user is not None and _user_id(user) == api_user,
            resolution=resolution_of(issue),
            at=_timestamp(payload),
        )
    except IssueInvalid as exc:
        raise PayloadInvalid(f"the webhook's {exc}", field=exc.field) from exc
    return change


def _webhook_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise PayloadInvalid("the webhook body is not JSON") from exc
    if not isinstance(payload, dict):
        raise PayloadInvalid("the webhook body is not a JSON object")
    event = payload.get("webhookEvent")
    if event != "jira:issue_updated":
        shown = json.dumps(event)[:60]
        raise PayloadInvalid(
            f"webhookEvent is {shown}: only jira:issue_updated is read", field="webhookEvent"
        )
    return payload


def _webhook_dedup_key(
    payload: Mapping[str, Any], issue: Mapping[str, Any], headers: Mapping[str, str]
) -> str:
    """The delivery id, stable across Jira's retries; without it, the issue id and the event time."""
    delivery = header(headers, WEBHOOK_ID_HEADER)
    if delivery:
        return delivery
    timestamp = payload.get("timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise IssueInvalid("timestamp", f"timestamp is {json.dumps(timestamp)[:40]}, not milliseconds")
    return f"{_text(issue, 'id', 'issue.id')}:{timestamp}"


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, whatever the case (a plain dict of headers is case-sensitive)."""
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def _timestamp(payload: Mapping[str, Any]) -> datetime | None:
    value = payload.get("timestamp")
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    return None


def _parse_updated(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, _UPDATED_FORMAT).astimezone(UTC) if text else None
    except ValueError:
        return None


def _user_id(user: Mapping[str, Any]) -> str | None:
    """Cloud names people by accountId, Data Center by user name."""
    for key in ("accountId", "name"):
        value = user.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _display_name(person: Mapping[str, Any]) -> str | None:
    value = person.get("displayName")
    return value if isinstance(value, str) and value else None


def _fields(issue: Mapping[str, Any]) -> Mapping[str, Any]:
    return _object(issue, "fields", "issue.fields", required=True)


def _object(parent: Mapping[str, Any], name: str, path: str, *, required: bool = False) -> Mapping[str, Any]:
    """A JSON object field (`path` names it in messages); a missing optional one, or null, is empty."""
    value = parent.get(name)
    if isinstance(value, dict):
        return value
    if value is None and not required:
        return {}
    raise IssueInvalid(path, f"{path} is {json.dumps(value)[:40]}, not an object")


def _text(parent: Mapping[str, Any], name: str, path: str) -> str:
    value = parent.get(name)
    if isinstance(value, str) and value:
        return value
    raise IssueInvalid(path, f"{path} is {json.dumps(value)[:40]}, not a non-empty string")
