"""ServiceNow incident records and Business Rule callbacks as recoverlink's incident values.

Pure translation, no I/O: the create body (REFERENCE.md 3.3, 3.5), a record read back through the
Table API (every value a string, reference fields plain with `sysparm_exclude_reference_link`),
and the callback JSON that `deploy/servicenow/recoverlink_business_rule.js` sends (3.7).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from recoverlink.config.itsm import ServiceNowConfig
from recoverlink.domain.bounds import MAX_BIGINT
from recoverlink.domain.errors import PayloadInvalid
from recoverlink.domain.itsm import (
    IncidentChange,
    IncidentDraft,
    IncidentStatus,
    recovery_id_of,
)

SYSTEM = "servicenow"
OUR_DISPLAY = "recoverlink"  # correlation_display of every incident recoverlink opens
LINK_FIELDS = "sys_id,number,state,correlation_id"
# Dot-walking gives the assignment group's name, which is what the catalog's teams are matched on.
RECORD_FIELDS = (
    "sys_id,number,state,correlation_id,correlation_display,close_code,"
    "sys_mod_count,sys_updated_on,sys_updated_by,assignment_group.name"
)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # how ServiceNow writes and reads a date-time, in UTC
SHORT_DESCRIPTION_CHARS = 160  # the field's default length; longer text is cut by the instance anyway


class RecordInvalid(ValueError):
    """A record (or callback) lacks a field recoverlink needs, or has it in another shape."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def create_body(draft: IncidentDraft, config: ServiceNowConfig) -> dict[str, str]:
    """The POST body of a new incident; optional fields are left out rather than sent empty."""
    body = {
        "short_description": " ".join(draft.title.split())[:SHORT_DESCRIPTION_CHARS],
        "description": draft.description,
        "correlation_id": draft.correlation_id,
        "correlation_display": OUR_DISPLAY,
    }
    optional = {
        "impact": _level(draft.impact),
        "urgency": _level(draft.urgency),
        "assignment_group": draft.routing.assignment_group,
        "cmdb_ci": draft.routing.ci,
        "caller_id": config.caller_id,
    }
    body.update({name: value for name, value in optional.items() if value})
    return body


def _level(value: int | None) -> str | None:
    """Impact and urgency travel as the strings "1" (high) .. "3" (low)."""
    return str(value) if value in (1, 2, 3) else None


def status_of(raw: str, states: Mapping[IncidentStatus, list[str]]) -> IncidentStatus | None:
    """What a ServiceNow state value means to recoverlink, through the configured map."""
    return next((status for status, values in states.items() if raw in values), None)


def to_the_second(moment: datetime) -> datetime:
    """A moment in UTC without its fraction, as ServiceNow keeps times (a naive time is taken as UTC)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(microsecond=0)


def format_time(moment: datetime) -> str:
    """A moment as an encoded query compares it: plain text is read as UTC [3rd]."""
    return to_the_second(moment).strftime(TIME_FORMAT)


def parse_time(text: str | None) -> datetime | None:
    """A ServiceNow date-time (`2016-01-22 14:28:24`, UTC); None when absent or not one."""
    if not text:
        return None
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def text(record: Mapping[str, Any], name: str) -> str:
    """A field that must be a non-empty string."""
    value = record.get(name)
    if not isinstance(value, str) or not value:
        raise RecordInvalid(name, f"{name} is {_shown(value)}, not a non-empty string")
    return value


def optional_text(record: Mapping[str, Any], name: str) -> str | None:
    """A field that may be missing, null or empty (all three mean "not set")."""
    value = record.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RecordInvalid(name, f"{name} is {_shown(value)}, not a string")
    return value


def counter(record: Mapping[str, Any], name: str) -> int:
    """A modification counter: digits in a string, as the Table API sends it, or a JSON integer."""
    value = record.get(name)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_BIGINT:
        return value
    raise RecordInvalid(name, f"{name} is {_shown(value)}, not a count below 2^63")


def is_ours(record: Mapping[str, Any]) -> bool:
    """An incident recoverlink opened: our correlation_display and a correlation id of our form."""
    correlation = record.get("correlation_id")
    ours = isinstance(correlation, str) and recovery_id_of(correlation) is not None
    return ours and record.get("correlation_display") == OUR_DISPLAY


def record_change(
    record: Mapping[str, Any], config: ServiceNowConfig, api_user: str | None
) -> IncidentChange:
    """A record read by the reconciliation poll, as a change keyed on its modification count."""
    sys_id = text(record, "sys_id")
    mod_count = counter(record, "sys_mod_count")
    state = optional_text(record, "state") or ""
    updated_by = optional_text(record, "sys_updated_by")
    return IncidentChange(
        system=SYSTEM,
        incident_id=sys_id,
        correlation_id=optional_text(record, "correlation_id"),
        status=status_of(state, config.states),
        raw_status=state,
        dedup_key=f"poll:{sys_id}:{mod_count}",
        sequence=mod_count,
        assignee_team=optional_text(record, "assignment_group.name"),
        actor=updated_by,
        by_us=api_user is not None and updated_by == api_user,
        resolution=optional_text(record, "close_code"),
        at=parse_time(optional_text(record, "sys_updated_on")),
    )


def callback_change(body: bytes, config: ServiceNowConfig, api_user: str | None) -> IncidentChange:
    """One Business Rule callback (REFERENCE.md 3.7); a missing or ill-typed field is `PayloadInvalid`."""
    payload = _callback_object(body)
    try:
        sys_id = text(payload, "sys_id")
        mod_count = counter(payload, "mod_count")
        state = text(payload, "state")
        fields = {name: optional_text(payload, name) for name in _CALLBACK_OPTIONAL}
    except RecordInvalid as exc:
        raise PayloadInvalid(f"the callback's {exc}", field=exc.field) from exc
    at = parse_time(fields["updated_at"])
    if fields["updated_at"] and at is None:
        raise PayloadInvalid(f"updated_at is not a date-time like {TIME_FORMAT}", field="updated_at")
    return IncidentChange(
        system=SYSTEM,
        incident_id=sys_id,
        correlation_id=fields["correlation_id"],
        status=status_of(state, config.states),
        raw_status=state,
        dedup_key=f"{sys_id}:{mod_count}",
        sequence=mod_count,
        assignee_team=fields["assignment_group"],
        actor=fields["updated_by"],
        by_us=api_user is not None and fields["updated_by"] == api_user,
        resolution=fields["close_code"],
        at=at,
    )


_CALLBACK_OPTIONAL = ("correlation_id", "assignment_group", "close_code", "updated_at", "updated_by")


def _callback_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise PayloadInvalid("the callback body is not JSON") from exc
    if not isinstance(payload, dict):
        raise PayloadInvalid("the callback body is not a JSON object")
    if payload.get("source", SYSTEM) != SYSTEM:
        raise PayloadInvalid(f"source is {_shown(payload.get('source'))}, not servicenow", field="source")
    return payload


def _shown(value: object) -> str:
    """A JSON value, short, for a message (`null` says the field was missing)."""
    shown = json.dumps(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."
