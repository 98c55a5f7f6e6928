"""`recoverlink itsm check` for Request Tracker: what the RT adapter needs, and how to fix each gap.

In order: REST2 answers and takes the credentials; the queue exists and the API user may create
in it; the correlation custom field applies to that queue; every configured status is in the
queue's lifecycle (REST2 5.0 names the lifecycle but lists no statuses, so only RT's default
lifecycle can be compared); and RT reads TicketSQL dates in `ticketsql_time_zone`, tried on the
newest ticket of ours, since a wrong zone makes the reconciliation poll miss changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from recoverlink.adapters.itsm.rt import RtAdapter, utc_time
from recoverlink.domain.errors import ItsmError
from recoverlink.domain.itsm import CheckFinding

# RT_Config.pm's default lifecycle (REFERENCE.md 5.1).
DEFAULT_LIFECYCLE = ("new", "open", "stalled", "resolved", "rejected", "deleted")
TICKET_FIELD_TYPE = "RT::Queue-RT::Ticket"  # RT::Ticket->CustomFieldLookupType


def rt_findings(adapter: RtAdapter) -> list[CheckFinding]:
    """Every finding; after a failed first call (no RT, bad credentials) only that one."""
    access = _guarded("RT REST2 answers and accepts the credentials", lambda: _access(adapter))
    if not access[0].ok:
        return access
    queue: dict[str, Any] = {}
    findings = access + _guarded(f"queue {adapter.config.queue!r}", lambda: _queue(adapter, queue))
    if queue:
        findings += _guarded("the correlation custom field", lambda: [_custom_field(adapter, queue)])
        findings += _statuses(adapter, queue)
    findings += _guarded("the TicketSQL time zone", lambda: [_time_zone(adapter)])
    return findings


def _guarded(what: str, check: Callable[[], list[CheckFinding]]) -> list[CheckFinding]:
    """A check whose call failed says so, in the adapter's words (which name the status and host)."""
    try:
        return check()
    except ItsmError as exc:
        return [CheckFinding(what, ok=False, detail=str(exc))]


def _access(adapter: RtAdapter) -> list[CheckFinding]:
    what = "RT REST2 answers and accepts the credentials"
    answer = adapter.call("GET", "/rt")
    if answer.status == 401:
        hint = (
            "RT rejected the credentials: create an auth token for the API user (Logged in as -> "
            "Settings -> Auth Tokens) and give it in itsm.rt.auth.token"
        )
        return [CheckFinding(what, ok=False, detail=hint)]
    version = adapter.expect(answer, 200)
    shown = version.get("Version") if isinstance(version, dict) else None
    return [
        CheckFinding(what, ok=True, detail=f"RT {shown or '(version not shown)'} at {adapter.config.url}")
    ]


def _queue(adapter: RtAdapter, into: dict[str, Any]) -> list[CheckFinding]:
    """The queue's record goes `into` the dict when it exists, for the checks that need it."""
    name = adapter.config.queue
    answer = adapter.call("GET", f"/queue/{quote(name, safe='')}")
    if answer.status in (403, 404):
        detail = (
            f"RT has no queue {name!r} that the API user can see: create it (Admin -> Queues -> "
            f"Create), or name an existing one in itsm.rt.queue, and grant the API user SeeQueue on it"
        )
        return [CheckFinding(f"queue {name!r} exists", ok=False, detail=detail)]
    record = adapter.expect(answer, 200)
    if not isinstance(record, dict):
        raise adapter.bad_answer(f"queue {name!r} answered no record")
    into.update(record)
    links = record.get("_hyperlinks")
    # REST2 shows the `create` link only to a user with CreateTicket on the queue.
    can_create = any(isinstance(x, dict) and x.get("ref") == "create" for x in links or [])
    hint = (
        ""
        if can_create
        else (
            f"grant the API user CreateTicket on queue {name!r} (Admin -> Queues -> {name} -> User "
            "Rights, or the Group Rights of a group it is in)"
        )
    )
    create = CheckFinding(f"the API user may create tickets in queue {name!r}", ok=can_create, detail=hint)
    return [CheckFinding(f"queue {name!r} exists", ok=True), create]


def _custom_field(adapter: RtAdapter, queue: dict[str, Any]) -> CheckFinding:
    field_name, queue_name = adapter.config.custom_field, adapter.config.queue
    what = f"custom field {field_name!r} applies to queue {queue_name!r}"
    applied = queue.get("TicketCustomFields")
    names = [x.get("name") for x in applied if isinstance(x, dict)] if isinstance(applied, list) else []
    if field_name in names:
        return CheckFinding(what, ok=True)
    if _field_exists(adapter, field_name):
        detail = (
            f"custom field {field_name!r} exists but does not apply to queue {queue_name!r}, so tickets "
            f"there cannot carry the correlation id: Admin -> Custom Fields -> {field_name} -> "
            f"Applies to -> tick {queue_name!r} (or apply it globally)"
        )
    else:
        detail = (
            f"RT has no ticket custom field {field_name!r} that the API user can see: Admin -> Custom "
            f"Fields -> Create (Name {field_name}, Type 'Enter one value', Applies to 'Tickets'), "
            f"apply it to queue {queue_name!r}, and grant the API user SeeCustomField and "
            "ModifyCustomField; or name the existing field in itsm.rt.custom_field"
        )
    return CheckFinding(what, ok=False, detail=detail)


def _field_exists(adapter: RtAdapter, name: str) -> bool:
    query = json.dumps(
        [{"field": "Name", "value": name}, {"field": "LookupType", "value": TICKET_FIELD_TYPE}]
    )
    params = {"query": query, "fields": "Name,LookupType"}
    found = adapter.expect(adapter.call("GET", "/customfields", params=params), 200)
    items = found.get("items") if isinstance(found, dict) else None
    return any(isinstance(x, dict) and x.get("Name") == name for x in items or [])


def _statuses(adapter: RtAdapter, queue: dict[str, Any]) -> list[CheckFinding]:
    """Each configured status (states, monitor_status) in the queue's lifecycle, if RT's default."""
    configured = {adapter.config.monitor_status: "itsm.rt.monitor_status"}
    for status, names in adapter.config.states.items():
        configured.update({name: f"itsm.rt.states.{status}" for name in names})
    lifecycle = queue.get("Lifecycle") or "default"
    what = f"the configured statuses are in lifecycle {lifecycle!r} of queue {adapter.config.queue!r}"
    if lifecycle != "default":
        detail = (
            f"not verified: REST2 does not list the statuses of lifecycle {lifecycle!r}; make sure it "
            f"has {', '.join(sorted(configured))}"
        )
        return [CheckFinding(what, ok=True, detail=detail)]
    missing = [(name, key) for name, key in configured.items() if name.casefold() not in DEFAULT_LIFECYCLE]
    if not missing:
        return [CheckFinding(what, ok=True)]
    return [
        CheckFinding(
            f"status {name!r} ({key}) is in lifecycle 'default'",
            ok=False,
            detail=f"RT's default lifecycle has {', '.join(DEFAULT_LIFECYCLE)}: change {key}, or give the "
            "queue a lifecycle with that status (RT_SiteConfig.pm %Lifecycles)",
        )
        for name, key in missing
    ]


def _time_zone(adapter: RtAdapter) -> CheckFinding:
    """Ask for the newest ticket of ours since its own LastUpdated, and since one second later."""
    zone = adapter.config.ticketsql_time_zone
    what = f"RT reads TicketSQL dates in {zone} (itsm.rt.ticketsql_time_zone)"
    newest = adapter.search(
        adapter.ours(), fields="LastUpdated", orderby="LastUpdated", order="DESC", per_page=1
    )
    items = [x for x in newest["items"] if isinstance(x.get("LastUpdated"), str)]
    if not items:
        return CheckFinding(what, ok=True, detail="not verified: no ticket of recoverlink's yet")
    ticket_id, updated = str(items[0]["id"]), utc_time(items[0]["LastUpdated"])

    def found_since(delay_seconds: int) -> bool:
        query = f"id = {int(ticket_id)} AND LastUpdated >= "
        query += adapter.date_literal(updated + timedelta(seconds=delay_seconds))
        return bool(adapter.search(query, fields="LastUpdated", orderby="id", per_page=1)["items"])

    if found_since(0) and not found_since(1):
        return CheckFinding(what, ok=True)
    detail = (
        f"ticket {ticket_id} was updated at {updated:%Y-%m-%d %H:%M:%S} UTC, but a search for that time "
        f"written in {zone} does not find exactly it: RT reads dates in another zone. Set "
        "itsm.rt.ticketsql_time_zone to the API user's time zone (its Preferences, else RT's "
        "$Timezone), or the reconciliation poll misses changes"
    )
    return CheckFinding(what, ok=False, detail=detail)
