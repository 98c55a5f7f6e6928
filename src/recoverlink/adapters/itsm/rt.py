"""Request Tracker 5 through REST2 (`<url>/REST/2.0`, REFERENCE.md 5): one ticket per recovery.

The correlation id lives in a ticket custom field (`itsm.rt.custom_field`). TicketSQL compares
it case-insensitively and its LIKE means "contains", so every search is checked against the
values RT returns. REST2 answers 200/201 even when part of a write failed (an unknown custom
field, a refused status), so each write is read back. RT's changes reach recoverlink twice: the
scrip in deploy/rt/ posts every status and owner change (`parse_callback`), and the
reconciliation poll reads our tickets updated since a time (`changed_since`), written in the
zone RT reads TicketSQL dates in (`ticketsql_time_zone`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import requests

from recoverlink.adapters.http_calls import Answer, Caller, excerpt, excerpt_bytes, utc_now
from recoverlink.adapters.itsm.auth import authorization
from recoverlink.config.itsm import RtConfig
from recoverlink.domain.bounds import MAX_BIGINT
from recoverlink.domain.errors import ItsmError, PayloadInvalid
from recoverlink.domain.itsm import (
    CORRELATION_PREFIX,
    CheckFinding,
    IncidentChange,
    IncidentDraft,
    IncidentLink,
    IncidentStatus,
)
from recoverlink.domain.rules import ResolutionPolicy

log = logging.getLogger(__name__)

SYSTEM = "rt"
PER_PAGE = 100  # REST2's maximum
MAX_POLL_PAGES = 50  # 5,000 tickets changed between two polls means something else is wrong
SEARCH_FIELDS = "Status,LastUpdated,LastUpdatedBy,CustomFields"
SQL_TIME = "%Y-%m-%d %H:%M:%S"


def ticketsql_string(value: str) -> str:
    """A TicketSQL string literal: single quotes, with backslash and quote escaped (RT::SQL)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class RtAdapter:
    """Implements `ItsmAdapter` for RT. `api_user` recognises echoes of our own changes."""

    config: RtConfig
    caller: Caller
    api_user: str | None

    @classmethod
    def from_config(
        cls,
        config: RtConfig,
        environ: Mapping[str, str],
        session: requests.Session,
        clock: Callable[[], datetime] = utc_now,
    ) -> RtAdapter:
        """Read the credentials once; the API user defaults to the basic auth username."""
        header = authorization(config.auth, environ, "itsm.rt")
        caller = Caller(SYSTEM, session, config.timeout_seconds, header, clock, error_type=ItsmError)
        basic_user = config.auth.basic.username if config.auth.basic is not None else None
        return cls(config, caller, config.api_user or basic_user)

    @property
    def name(self) -> str:
        return SYSTEM

    @property
    def target(self) -> str:
        return SYSTEM

    # --- incidents ------------------------------------------------------------------------------

    def find_incident(self, correlation: str) -> IncidentLink | None:
        query = f"{self._field_key()} = {ticketsql_string(correlation)}"
        found = self.search(query, fields="CustomFields", orderby="id")
        ids = [int(item["id"]) for item in found["items"] if correlation in self._field_values(item)]
        return self.link(str(min(ids))) if ids else None

    def create_incident(self, draft: IncidentDraft) -> IncidentLink:
        queue = draft.routing.queue or self.config.queue
        body: dict[str, Any] = {
            "Queue": queue,
            "Subject": draft.title,
            "Content": draft.description,
            "ContentType": "text/plain",
            "CustomFields": {self.config.custom_field: draft.correlation_id},
        }
        if (priority := self.config.priorities.get(draft.priority)) is not None:
            body["Priority"] = priority
        if self.config.requestor:
            body["Requestor"] = self.config.requestor
        answer = self.call("POST", "/ticket", json_body=body)
        if answer.status == 403:
            raise self._refused(answer, f"queue {queue!r} does not exist or {self._who} may not create in it")
        created = self.expect(answer, 201)
        ticket_id = created.get("id") if isinstance(created, dict) else None
        if not isinstance(ticket_id, str | int) or not str(ticket_id).isdigit():
            raise self.bad_answer(f"the created ticket has no id: {excerpt(json.dumps(created))}")
        self._check_stored(str(ticket_id), draft.correlation_id, queue)
        return self.link(str(ticket_id))

    def add_note(self, link: IncidentLink, note: str) -> None:
        body = {"Content": note, "ContentType": "text/plain"}
        self.expect(self.call("POST", f"{_ticket_path(link.id)}/comment", json_body=body), 201)

    def resolve_incident(self, link: IncidentLink, policy: ResolutionPolicy, note: str) -> IncidentStatus:
        self.add_note(link, note)
        if policy is ResolutionPolicy.COMMENT:
            status = self.status_meaning(self.ticket(link.id)["Status"])
            return status or IncidentStatus.IN_PROGRESS  # a status we do not map: not done
        if policy is ResolutionPolicy.MONITOR:
            return self._move(link, self.config.monitor_status) or IncidentStatus.ON_HOLD
        return self._move(link, self._status_name(IncidentStatus.RESOLVED, "resolved")) or (
            IncidentStatus.RESOLVED
        )

    def reopen_incident(self, link: IncidentLink, note: str) -> None:
        self.add_note(link, note)
        self._move(link, self._status_name(IncidentStatus.IN_PROGRESS, "open"))

    def read_incident(self, link: IncidentLink) -> IncidentChange:
        ticket = self.ticket(link.id)
        return self._change(link.id, ticket)

    def changed_since(self, since: datetime) -> list[IncidentChange]:
        cutoff = since.astimezone(UTC).replace(microsecond=0)  # RT keeps whole seconds
        query = f"{self.ours()} AND LastUpdated >= {self.date_literal(cutoff)}"
        changes: list[IncidentChange] = []
        for page in range(1, MAX_POLL_PAGES + 1):
            found = self.search(query, fields=SEARCH_FIELDS, orderby="LastUpdated", page=page)
            changes += [c for item in found["items"] if (c := self._polled(item, cutoff)) is not None]
            if not found.get("next_page"):
                return changes
        log.warning("rt poll stopped after %d pages", MAX_POLL_PAGES, extra={"itsm": SYSTEM})
        return changes

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> IncidentChange:
        """One JSON document of deploy/rt/recoverlink_scrip.pl; dedupes on its transaction id."""
        document = _callback_document(body)
        if document.get("source") != SYSTEM:
            raise PayloadInvalid("source must be 'rt'", field="source")
        ticket_id = _id_field(document, "ticket_id")
        transaction_id = _id_field(document, "transaction_id")
        status = _text_field(document, "status")
        creator = _text_field(document, "creator")
        _optional_text_field(document, "old_status")
        _optional_text_field(document, "owner")
        return IncidentChange(
            system=SYSTEM,
            incident_id=str(ticket_id),
            correlation_id=_optional_text_field(document, "correlation_id") or None,
            status=self.status_meaning(status),
            raw_status=status,
            dedup_key=f"txn:{transaction_id}",
            sequence=transaction_id,  # RT's transaction ids grow: they order a ticket's changes
            actor=creator,
            by_us=self.api_user is not None and creator == self.api_user,
            at=_time_field(document, "updated_at"),
        )

    def check(self) -> list[CheckFinding]:
        from recoverlink.adapters.itsm.rt_check import rt_findings  # it builds on this module

        return rt_findings(self)

    # --- what the checks use too ----------------------------------------------------------------

    def link(self, ticket_id: str) -> IncidentLink:
        url = f"{self.config.url.rstrip('/')}/Ticket/Display.html?id={ticket_id}"
        return IncidentLink(system=SYSTEM, id=ticket_id, number=ticket_id, url=url)

    def call(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, json_body: Any = None
    ) -> Answer:
        """One REST2 call; the answer whatever its status (transport failures raise)."""
        url = f"{self.config.url.rstrip('/')}/REST/2.0{path}"
        headers = {"Accept": "application/json"}
        prepared = self.caller.prepare(method, url, params=params, headers=headers, json_body=json_body)
        return self.caller.send(prepared)

    def expect(self, answer: Answer, *statuses: int) -> Any:
        """The JSON document of an answer with one of `statuses`; anything else raises."""
        if answer.status not in statuses:
            raise self.caller.status_failure(answer, _rt_message(answer))
        try:
            return json.loads(answer.body)
        except ValueError as exc:  # an HTML login or maintenance page: retry later
            shown = excerpt_bytes(answer.body) or "an empty body"
            raise ItsmError(
                f"{SYSTEM}: {answer.host} did not answer JSON: {shown}", retryable=True, reason="not_json"
            ) from exc

    def search(
        self,
        query: str,
        *,
        fields: str,
        orderby: str,
        order: str = "ASC",
        page: int = 1,
        per_page: int = PER_PAGE,
    ) -> Any:
        """One page of `GET /tickets` for a TicketSQL query; a document with a list of items."""
        params = {"query": query, "fields": fields, "orderby": orderby, "order": order}
        params |= {"page": str(page), "per_page": str(per_page)}
        found = self.expect(self.call("GET", "/tickets", params=params), 200)
        if not isinstance(found, dict) or not isinstance(found.get("items"), list):
            raise self.bad_answer("the ticket search answered no item list")
        if not all(isinstance(item, dict) and str(item.get("id")).isdigit() for item in found["items"]):
            raise self.bad_answer("the ticket search answered an item without a ticket id")
        return found

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        answer = self.call("GET", _ticket_path(ticket_id))
        document = self.expect(answer, 200)
        if not isinstance(document, dict) or not isinstance(document.get("Status"), str):
            raise self.bad_answer(f"ticket {ticket_id} has no Status")
        return document

    def status_meaning(self, raw: str) -> IncidentStatus | None:
        """What an RT status means through `itsm.rt.states`; None for a status listed nowhere."""
        for status, names in self.config.states.items():
            if raw.casefold() in (name.casefold() for name in names):
                return status
        return None

    def ours(self) -> str:
        """TicketSQL for tickets whose correlation field contains our prefix (check each value)."""
        return f"{self._field_key()} LIKE {ticketsql_string(CORRELATION_PREFIX + '%')}"

    def date_literal(self, moment: datetime) -> str:
        """A TicketSQL date: RT reads it in the API user's zone, which `ticketsql_time_zone` names."""
        local = moment.astimezone(ZoneInfo(self.config.ticketsql_time_zone))
        return ticketsql_string(local.strftime(SQL_TIME))

    # --- helpers --------------------------------------------------------------------------------

    @property
    def _who(self) -> str:
        return f"RT user {self.api_user!r}" if self.api_user else "the API user"

    def _field_key(self) -> str:
        return ticketsql_string(f"CF.{{{self.config.custom_field}}}")

    def _field_values(self, item: Mapping[str, Any]) -> list[str]:
        """The values of our custom field in a ticket or search item (`CustomFields` as REST2 shows it)."""
        fields = item.get("CustomFields")
        for entry in fields if isinstance(fields, list) else []:
            if isinstance(entry, dict) and entry.get("name") == self.config.custom_field:
                values = entry.get("values")
                return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []
        return []

    def _check_stored(self, ticket_id: str, correlation: str, queue: str) -> None:
        """REST2 ignores a custom field that does not apply to the queue; a retry would duplicate."""
        if correlation in self._field_values(self.ticket(ticket_id)):
            return
        raise ItsmError(
            f"{SYSTEM}: ticket {ticket_id} was created in queue {queue!r} without its correlation id: "
            f"custom field {self.config.custom_field!r} does not exist or does not apply to the queue "
            "(run `recoverlink itsm check`)",
            retryable=False,
            reason="correlation_not_stored",
        )

    def _move(self, link: IncidentLink, status: str) -> IncidentStatus | None:
        """Set the status and read it back (a refused change is still a 200 from REST2)."""
        answer = self.call("PUT", _ticket_path(link.id), json_body={"Status": status})
        said = self.expect(answer, 200)
        ticket = self.ticket(link.id)
        if str(ticket["Status"]).casefold() != status.casefold():
            shown = "; ".join(str(m) for m in said) if isinstance(said, list) else excerpt(str(said))
            raise ItsmError(
                f"{SYSTEM}: ticket {link.id} stayed {ticket['Status']!r} instead of {status!r}: {shown}",
                retryable=False,
                reason="status_refused",
            )
        return self.status_meaning(ticket["Status"])

    def _status_name(self, status: IncidentStatus, default: str) -> str:
        names = self.config.states.get(status)
        return names[0] if names else default

    def _change(self, ticket_id: str, ticket: Mapping[str, Any]) -> IncidentChange:
        updated = ticket.get("LastUpdated")
        if not isinstance(updated, str):
            raise self.bad_answer(f"ticket {ticket_id} has no LastUpdated")
        actor = _user_name(ticket.get("LastUpdatedBy"))
        values = self._field_values(ticket)
        return IncidentChange(
            system=SYSTEM,
            incident_id=ticket_id,
            correlation_id=values[0] if values else None,
            status=self.status_meaning(str(ticket.get("Status", ""))),
            raw_status=str(ticket.get("Status", "")),
            dedup_key=f"poll:{ticket_id}:{updated}",
            actor=actor,
            by_us=actor is not None and actor == self.api_user,
            at=self._parse_time(updated, f"ticket {ticket_id} LastUpdated"),
        )

    def _polled(self, item: Mapping[str, Any], cutoff: datetime) -> IncidentChange | None:
        """A search item as a change, if it is ours (LIKE is "contains") and not older than `cutoff`."""
        change = self._change(str(item["id"]), item)
        ours = (change.correlation_id or "").startswith(CORRELATION_PREFIX)
        return change if ours and change.at is not None and change.at >= cutoff else None

    def _parse_time(self, text: str, what: str) -> datetime:
        try:
            return utc_time(text)
        except ValueError as exc:
            raise self.bad_answer(f"{what} is not a date: {excerpt(text)}") from exc

    def _refused(self, answer: Answer, what: str) -> ItsmError:
        said = _rt_message(answer)
        return ItsmError(
            f"{SYSTEM}: {what} (RT answered HTTP {answer.status}: {said or 'no message'})",
            retryable=False,
            reason="http_4xx",
        )

    def bad_answer(self, what: str) -> ItsmError:
        """An answer of the wrong shape: like a page that is not JSON, worth another try later."""
        return ItsmError(f"{SYSTEM}: {what}", retryable=True, reason="bad_response")


def _ticket_path(ticket_id: str) -> str:
    """`/ticket/<id>`, for a link that names an RT ticket (digits only: nothing else in the path)."""
    if not (ticket_id.isascii() and ticket_id.isdigit()):
        raise ItsmError(
            f"{SYSTEM}: {ticket_id!r} is not an RT ticket id", retryable=False, reason="bad_request"
        )
    return f"/ticket/{ticket_id}"


def _rt_message(answer: Answer) -> str | None:
    """RT's `{"message": ...}` of an error answer, if it has one."""
    try:
        document = json.loads(answer.body)
    except ValueError:
        return None
    message = document.get("message") if isinstance(document, dict) else None
    return excerpt(message) if isinstance(message, str) else None


def _user_name(value: object) -> str | None:
    """REST2 shows a user as `{"id": "<name>", "type": "user", "_url": ...}`."""
    name = value.get("id") if isinstance(value, dict) else None
    return name if isinstance(name, str) else None


def utc_time(text: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (REST2 writes `2026-11-22T18:00:00Z`)."""
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _callback_document(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise PayloadInvalid("the body is not JSON") from exc
    if not isinstance(document, dict):
        raise PayloadInvalid("the body is not a JSON object")
    return document


def _id_field(document: Mapping[str, Any], name: str) -> int:
    """A positive integer (a digit string too: Perl's JSON may quote a number it printed)."""
    value = document.get(name)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_BIGINT:
        raise PayloadInvalid(f"{name} must be a positive integer below 2^63", field=name)
    return value


def _text_field(document: Mapping[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise PayloadInvalid(f"{name} must be a non-empty string", field=name)
    return value


def _optional_text_field(document: Mapping[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is not None and not isinstance(value, str):
        raise PayloadInvalid(f"{name} must be a string or null", field=name)
    return value


def _time_field(document: Mapping[str, Any], name: str) -> datetime:
    value = _text_field(document, name)
    try:
        return utc_time(value)
    except ValueError as exc:
        raise PayloadInvalid(f"{name} must be an ISO 8601 time", field=name) from exc
