"""ServiceNow through the Table API (REFERENCE.md 3): one incident per recovery, found by correlation_id.

The correlation id goes into `correlation_id` and `recoverlink` into `correlation_display`. An
encoded query silently drops a part it cannot read (3.1), so every search result is checked
again here: an exact `correlation_id` for find, our display value and update time for the poll.
Writes are PATCHes of the fields that matter; resolve and reopen read the state first, so a retry
after a lost answer does not try a move that is already done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from recoverlink.adapters.http_calls import Caller
from recoverlink.adapters.itsm.answers import document, failure, send
from recoverlink.adapters.itsm.auth import authorization
from recoverlink.adapters.itsm.servicenow_check import ServiceNowChecks
from recoverlink.adapters.itsm.servicenow_records import (
    LINK_FIELDS,
    OUR_DISPLAY,
    RECORD_FIELDS,
    SYSTEM,
    RecordInvalid,
    callback_change,
    create_body,
    format_time,
    is_ours,
    parse_time,
    record_change,
    status_of,
    text,
    to_the_second,
)
from recoverlink.config.itsm import ServiceNowConfig
from recoverlink.domain.errors import DependencyError, ItsmError
from recoverlink.domain.itsm import CheckFinding, IncidentChange, IncidentDraft, IncidentLink, IncidentStatus
from recoverlink.domain.rules import ResolutionPolicy

log = logging.getLogger(__name__)

PAGE_SIZE = 100
MAX_PAGES = 50  # 5000 changed incidents in one poll means the query lost its filter: stop there
FIND_LIMIT = 10
_FINISHED = (IncidentStatus.RESOLVED, IncidentStatus.CLOSED, IncidentStatus.CANCELED)
_LOCKED = (IncidentStatus.CLOSED, IncidentStatus.CANCELED)  # read-only in a default instance
_REOPENABLE = (IncidentStatus.RESOLVED, IncidentStatus.ON_HOLD)


@dataclass(frozen=True)
class ServiceNowAdapter:
    """`ItsmAdapter` for ServiceNow incidents (or another task table, `config.table`)."""

    config: ServiceNowConfig
    caller: Caller

    @classmethod
    def from_config(
        cls,
        config: ServiceNowConfig,
        environ: Mapping[str, str],
        session: requests.Session,
        clock: Callable[[], datetime],
    ) -> ServiceNowAdapter:
        """Read the credentials once; every call then shares the session and the timeout."""
        caller = Caller(
            who=SYSTEM,
            session=session,
            timeout_seconds=config.timeout_seconds,
            authorization=authorization(config.auth, environ, "itsm.servicenow"),
            clock=clock,
            error_type=ItsmError,
        )
        return cls(config, caller)

    @property
    def name(self) -> str:
        return SYSTEM

    @property
    def target(self) -> str:
        return SYSTEM

    @property
    def base_url(self) -> str:
        return self.config.url.rstrip("/")

    @property
    def table_url(self) -> str:
        return f"{self.base_url}/api/now/table/{self.config.table}"

    @property
    def api_user(self) -> str | None:
        """Who our own updates are made by: the configured user, else the basic auth username."""
        if self.config.api_user:
            return self.config.api_user
        return self.config.auth.basic.username if self.config.auth.basic else None

    def find_incident(self, correlation: str) -> IncidentLink | None:
        """The oldest incident whose correlation_id is exactly `correlation` (never a near match)."""
        params = {
            "sysparm_query": f"correlation_id={_query_value(self.caller, correlation)}^ORDERBYsys_created_on",
            "sysparm_fields": LINK_FIELDS,
            "sysparm_limit": str(FIND_LIMIT),
            "sysparm_exclude_reference_link": "true",
            "sysparm_no_count": "true",
        }
        rows = self._rows(self.get(self.table_url, params))
        exact = [row for row in rows if row.get("correlation_id") == correlation]
        return self._link(exact[0]) if exact else None

    def create_incident(self, draft: IncidentDraft) -> IncidentLink:
        """POST the incident; only a 201 with a readable `result.sys_id` is a success.

        Any other 2xx is an unknown outcome and a retryable failure: the retry searches first.
        """
        params = {
            "sysparm_fields": LINK_FIELDS,
            "sysparm_exclude_reference_link": "true",
            "sysparm_input_display_value": "true",  # an assignment group may be given by name
        }
        answer = send(
            self.caller, "POST", self.table_url, params=params, body=create_body(draft, self.config)
        )
        if not answer.ok:
            raise failure(self.caller, answer)
        try:
            record = self._record(document(self.caller, answer, expected=(201,)))
            link = self._link(record)
        except DependencyError as exc:
            raise ItsmError(
                f"{exc} (the incident may exist: the retry searches before it creates)",
                retryable=True,
                reason=exc.reason,
            ) from exc
        if record.get("correlation_id") != draft.correlation_id:
            log.warning(
                "servicenow did not keep the correlation id of a new incident",
                extra={"incident": link.number, "correlation_id": draft.correlation_id},
            )
        return link

    def add_note(self, link: IncidentLink, note: str) -> None:
        """A work note: internal, appended to the incident's journal."""
        self.patch(link, {"work_notes": note})

    def resolve_incident(self, link: IncidentLink, policy: ResolutionPolicy, note: str) -> IncidentStatus:
        """Resolve (state 6 with the close code), only note, or move to the monitoring state."""
        if policy is ResolutionPolicy.COMMENT:
            return self._status(self.patch(link, {"work_notes": note})) or IncidentStatus.IN_PROGRESS
        target = IncidentStatus.RESOLVED if policy is ResolutionPolicy.CLOSE else IncidentStatus.ON_HOLD
        current = self._status(self.read_record(link))
        if current is target or current in _FINISHED:  # done by a person, or by our own lost answer
            if current not in _LOCKED:
                self.add_note(link, note)
            return current
        fields = self._close_fields(note) if policy is ResolutionPolicy.CLOSE else self._monitor_fields(note)
        return self._status(self.patch(link, fields)) or target

    def _close_fields(self, note: str) -> dict[str, str]:
        state = self._state_value(IncidentStatus.RESOLVED, "6")
        return {"state": state, "close_code": self.config.close_code, "close_notes": note}

    def _monitor_fields(self, note: str) -> dict[str, str]:
        fields = {"state": self.config.monitor_state, "work_notes": note}
        if self.config.monitor_hold_reason:
            fields["hold_reason"] = self.config.monitor_hold_reason
        return fields

    def reopen_incident(self, link: IncidentLink, note: str) -> None:
        """Back to in progress from resolved or monitoring; a canceled or closed incident only gets
        the note (closed incidents are read-only by default, a canceled one was a false alarm)."""
        current = self._status(self.read_record(link))
        if current in _REOPENABLE:
            in_progress = self._state_value(IncidentStatus.IN_PROGRESS, "2")
            self.patch(link, {"state": in_progress, "work_notes": note})
        else:
            self.add_note(link, note)

    def read_incident(self, link: IncidentLink) -> IncidentChange:
        """The incident as it is now, keyed `poll:<sys_id>:<sys_mod_count>`."""
        return self._change(self.read_record(link))

    def changed_since(self, since: datetime) -> list[IncidentChange]:
        """Our incidents updated at or after `since`, page by page in sys_id order (a record updated
        while we page can then only appear twice, never be skipped)."""
        query = f"correlation_display={OUR_DISPLAY}^sys_updated_on>={format_time(since)}^ORDERBYsys_id"
        params = {
            "sysparm_query": query,
            "sysparm_fields": RECORD_FIELDS,
            "sysparm_limit": str(PAGE_SIZE),
            "sysparm_exclude_reference_link": "true",
            "sysparm_no_count": "true",
        }
        not_before = to_the_second(since)
        changes: list[IncidentChange] = []
        for page in range(MAX_PAGES):
            rows = self._rows(self.get(self.table_url, {**params, "sysparm_offset": str(page * PAGE_SIZE)}))
            changes.extend(self._change(row) for row in rows if _is_recent_and_ours(row, not_before))
            if len(rows) < PAGE_SIZE:
                return changes
        log.warning("servicenow poll stopped after %d pages", MAX_PAGES, extra={"itsm": SYSTEM})
        return changes

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> IncidentChange:
        """The Business Rule's JSON (REFERENCE.md 3.7); headers carry nothing more."""
        return callback_change(body, self.config, self.api_user)

    def check(self) -> list[CheckFinding]:
        """Credentials, read rights, the correlation fields, and the configured states and close code."""
        return ServiceNowChecks(self).run()

    # --- calls -------------------------------------------------------------------------------

    def get(self, url: str, params: Mapping[str, str]) -> Any:
        """A GET whose answer must be 200 JSON."""
        return document(self.caller, send(self.caller, "GET", url, params=params))

    def read_record(self, link: IncidentLink) -> dict[str, Any]:
        params = {"sysparm_fields": RECORD_FIELDS, "sysparm_exclude_reference_link": "true"}
        return self._record(self.get(self._record_url(link), params))

    def patch(self, link: IncidentLink, fields: Mapping[str, str]) -> dict[str, Any]:
        """A partial update; answers the record as it is afterwards."""
        params = {"sysparm_fields": RECORD_FIELDS, "sysparm_exclude_reference_link": "true"}
        answer = send(self.caller, "PATCH", self._record_url(link), params=params, body=dict(fields))
        return self._record(document(self.caller, answer))

    def _record_url(self, link: IncidentLink) -> str:
        return f"{self.table_url}/{_path_part(self.caller, link.id)}"

    # --- reading answers ---------------------------------------------------------------------

    def _record(self, parsed: Any) -> dict[str, Any]:
        result = parsed.get("result") if isinstance(parsed, dict) else None
        if not isinstance(result, dict):
            raise self.caller.error("the answer has no result record", "bad_response")
        return result

    def _rows(self, parsed: Any) -> list[dict[str, Any]]:
        result = parsed.get("result") if isinstance(parsed, dict) else None
        if not isinstance(result, list) or not all(isinstance(row, dict) for row in result):
            raise self.caller.error("the answer has no result list", "bad_response")
        return result

    def _link(self, record: Mapping[str, Any]) -> IncidentLink:
        try:
            sys_id = text(record, "sys_id")
        except RecordInvalid as exc:
            raise self.caller.error(f"bad record: {exc}", "bad_response") from exc
        number = record.get("number")
        number = number if isinstance(number, str) and number else sys_id
        url = f"{self.base_url}/{self.config.table}.do?sys_id={sys_id}"
        return IncidentLink(system=SYSTEM, id=sys_id, number=number, url=url)

    def _change(self, record: Mapping[str, Any]) -> IncidentChange:
        try:
            return record_change(record, self.config, self.api_user)
        except RecordInvalid as exc:
            raise self.caller.error(f"bad record: {exc}", "bad_response") from exc

    def _status(self, record: Mapping[str, Any]) -> IncidentStatus | None:
        state = record.get("state")
        return status_of(state, self.config.states) if isinstance(state, str) else None

    def _state_value(self, status: IncidentStatus, fallback: str) -> str:
        values = self.config.states.get(status)
        return values[0] if values else fallback


def _is_recent_and_ours(row: Mapping[str, Any], not_before: datetime) -> bool:
    """Checked again on the answer: a query part the instance dropped would let others through."""
    stamp = row.get("sys_updated_on")
    updated = parse_time(stamp if isinstance(stamp, str) else None)
    return updated is not None and updated >= not_before and is_ours(row)


def _query_value(caller: Caller, value: str) -> str:
    """A value safe inside an encoded query: `^` would start another condition."""
    if "^" in value or "\n" in value:
        raise caller.error(f"cannot search for {value!r}: '^' and newlines end a query part", "bad_request")
    return value


def _path_part(caller: Caller, sys_id: str) -> str:
    if not sys_id.isascii() or not sys_id.isalnum():
        raise caller.error(f"{sys_id!r} is not a sys_id", "bad_request")
    return sys_id
