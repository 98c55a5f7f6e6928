"""The Request Tracker adapter against a real RT 5.0.3 (one per session, tests/support/rt.py).

Each test makes tickets of its own correlation ids, so the tests share the RT without seeing each
other's tickets. "A person" is root through REST2 with basic auth; recoverlink is its own API user.
"""

from __future__ import annotations

import itertools
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from recoverlink.adapters.itsm.rt import RtAdapter
from recoverlink.domain.errors import ItsmError
from recoverlink.domain.itsm import IncidentDraft, IncidentLink, IncidentStatus
from recoverlink.domain.rules import ResolutionPolicy
from tests.support.processes import wait_until
from tests.support.rt import (
    API_USER,
    CLOSED_QUEUE,
    CUSTOM_FIELD,
    QUEUE,
    QUEUE_ONLY_FIELD,
    UNLINKED_QUEUE,
    RequestTracker,
)

_RECOVERY_IDS = itertools.count(secrets.randbelow(10**6) * 100)


def new_correlation() -> str:
    """A correlation id no other test (nor an earlier session's leftover) uses."""
    return f"recoverlink:rec-{next(_RECOVERY_IDS)}"


def draft(correlation: str) -> IncidentDraft:
    return IncidentDraft(correlation, "Checkout errors high", "5xx above 2 % since 18:00\nrunbook: ...", "P2")


def as_person(rt: RequestTracker, method: str, path: str, body: Any = None) -> Any:
    """One REST2 call made by root, the person of these tests."""
    answer = rt.person().request(method, rt.rest(path), json=body, timeout=10)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def correlations_of(ticket: dict[str, Any]) -> list[str]:
    """The CorrelationId values of a ticket or search item as REST2 shows them."""
    return next(f["values"] for f in ticket["CustomFields"] if f["name"] == CUSTOM_FIELD)


def tickets_with(rt: RequestTracker, correlation: str) -> list[str]:
    query = f"'CF.{{{CUSTOM_FIELD}}}' LIKE '{correlation}'"
    found = as_person(rt, "GET", f"/tickets?query={quote(query)}&fields=CustomFields")
    return [i["id"] for i in found["items"] if correlation in correlations_of(i)]


def comments_of(rt: RequestTracker, ticket_id: str) -> int:
    history = as_person(rt, "GET", f"/ticket/{ticket_id}/history?fields=Type&per_page=100")
    return sum(1 for t in history["items"] if t["Type"] == "Comment")


# --- an incident's life -------------------------------------------------------------------------


def test_an_incident_lives_from_create_to_reopen_and_the_poll_sees_it(
    request_tracker: RequestTracker,
) -> None:
    rt, adapter = request_tracker, request_tracker.adapter()
    since = datetime.now(UTC) - timedelta(seconds=2)
    correlation = new_correlation()

    link = adapter.create_incident(draft(correlation))

    ticket = as_person(rt, "GET", f"/ticket/{link.id}")
    assert correlations_of(ticket) == [correlation]
    assert (ticket["Subject"], str(ticket["Priority"]), ticket["Status"]) == (
        "Checkout errors high",
        "75",
        "new",
    )
    assert link.url == f"{rt.url}/Ticket/Display.html?id={link.id}"
    assert adapter.find_incident(correlation) == link

    adapter.add_note(link, "impact: 40 failed checkouts a minute")
    assert adapter.resolve_incident(link, ResolutionPolicy.MONITOR, "fix deployed") == IncidentStatus.ON_HOLD
    assert adapter.read_incident(link).raw_status == "stalled"
    assert adapter.resolve_incident(link, ResolutionPolicy.COMMENT, "still quiet") == IncidentStatus.ON_HOLD
    assert adapter.resolve_incident(link, ResolutionPolicy.CLOSE, "verified") == IncidentStatus.RESOLVED
    resolved = adapter.read_incident(link)
    assert (resolved.status, resolved.correlation_id, resolved.by_us) == (
        IncidentStatus.RESOLVED,
        correlation,
        True,
    )
    adapter.reopen_incident(link, "the alerts fire again")
    reopened = adapter.read_incident(link)
    assert (reopened.status, reopened.raw_status) == (IncidentStatus.IN_PROGRESS, "open")
    assert comments_of(rt, link.id) == 5

    polled = [c for c in adapter.changed_since(since) if c.incident_id == link.id]
    assert [(c.status, c.dedup_key) for c in polled] == [(IncidentStatus.IN_PROGRESS, reopened.dedup_key)]
    assert link.id not in [
        c.incident_id for c in adapter.changed_since(datetime.now(UTC) + timedelta(minutes=1))
    ]


def test_find_ignores_near_matches_of_the_correlation(request_tracker: RequestTracker) -> None:
    rt, adapter = request_tracker, request_tracker.adapter()
    short = new_correlation()  # recoverlink:rec-N
    longer = short + "3"  # recoverlink:rec-N3
    first = adapter.create_incident(draft(longer))
    # TicketSQL's = ignores case: a person's typo of ours must not count as ours.
    as_person(
        rt,
        "POST",
        "/ticket",
        {"Queue": QUEUE, "Subject": "typo", "CustomFields": {"CorrelationId": short.upper()}},
    )

    assert adapter.find_incident(short) is None
    assert adapter.find_incident(longer) == first
    assert adapter.find_incident(longer + "0") is None


def test_a_create_retried_after_it_succeeded_finds_the_first_ticket(request_tracker: RequestTracker) -> None:
    """The duplicate trap: the answer to a create is lost, RT made the ticket, the worker tries again."""
    rt = request_tracker
    correlation = new_correlation()
    impatient = rt.adapter(timeout_seconds=0.05)  # RT takes ~0.3 s to create: the answer is lost

    with pytest.raises(ItsmError) as lost:  # what the worker sees: a retryable timeout, and no link
        impatient.create_incident(draft(correlation))
    assert (lost.value.reason, lost.value.retryable) == ("timeout", True)
    adapter = rt.adapter()
    first = wait_until(lambda: adapter.find_incident(correlation), timeout=15, what="the first ticket")

    retried = open_incident(adapter, draft(correlation))  # the retried job searches before it creates

    assert retried == first
    assert tickets_with(rt, correlation) == [first.id]


def open_incident(adapter: RtAdapter, incident: IncidentDraft) -> IncidentLink:
    """What the worker's open-incident job does: search, and create only when nothing is found."""
    return adapter.find_incident(incident.correlation_id) or adapter.create_incident(incident)


def test_rt_refuses_a_status_outside_the_lifecycle(request_tracker: RequestTracker) -> None:
    adapter = request_tracker.adapter()
    link = adapter.create_incident(draft(new_correlation()))
    monitoring = request_tracker.adapter(monitor_status="monitoring")
    with pytest.raises(ItsmError) as refused:
        monitoring.resolve_incident(link, ResolutionPolicy.MONITOR, "fix deployed")
    assert refused.value.reason == "status_refused"
    assert "isn't a valid status" in str(refused.value)
    assert adapter.read_incident(link).raw_status == "new"


# --- itsm check ---------------------------------------------------------------------------------


def test_check_is_all_ok_on_the_bootstrapped_rt(request_tracker: RequestTracker) -> None:
    adapter = request_tracker.adapter()
    adapter.create_incident(draft(new_correlation()))  # so the time zone check has a ticket to try

    findings = adapter.check()

    assert [f for f in findings if not f.ok] == []
    assert len(findings) == 6
    assert not any(f.detail.startswith("not verified") for f in findings)


def failed(adapter: RtAdapter) -> dict[str, str]:
    return {f.what: f.detail for f in adapter.check() if not f.ok}


def test_check_names_a_queue_that_does_not_exist(request_tracker: RequestTracker) -> None:
    assert failed(request_tracker.adapter(queue="Incidnets")) == {
        "queue 'Incidnets' exists": "RT has no queue 'Incidnets' that the API user can see: create it "
        "(Admin -> Queues -> Create), or name an existing one in itsm.rt.queue, and grant the API user "
        "SeeQueue on it"
    }


def test_check_names_a_custom_field_that_does_not_apply_to_the_queue(request_tracker: RequestTracker) -> None:
    problems = failed(request_tracker.adapter(queue=UNLINKED_QUEUE, custom_field=QUEUE_ONLY_FIELD))
    assert list(problems) == [f"custom field '{QUEUE_ONLY_FIELD}' applies to queue '{UNLINKED_QUEUE}'"]
    assert "exists but does not apply to queue 'Unlinked'" in next(iter(problems.values()))


def test_check_names_a_missing_custom_field_and_a_queue_closed_to_the_api_user(
    request_tracker: RequestTracker,
) -> None:
    problems = failed(request_tracker.adapter(queue=CLOSED_QUEUE, custom_field="CorrelationKey"))
    assert problems[f"the API user may create tickets in queue '{CLOSED_QUEUE}'"].startswith(
        "grant the API user CreateTicket"
    )
    assert problems[f"custom field 'CorrelationKey' applies to queue '{CLOSED_QUEUE}'"].startswith(
        "RT has no ticket custom field 'CorrelationKey'"
    )


def test_check_notices_a_wrong_ticketsql_time_zone(request_tracker: RequestTracker) -> None:
    adapter = request_tracker.adapter(ticketsql_time_zone="America/New_York")
    adapter.create_incident(draft(new_correlation()))
    problems = failed(adapter)
    assert list(problems) == ["RT reads TicketSQL dates in America/New_York (itsm.rt.ticketsql_time_zone)"]


# --- the shipped scrip --------------------------------------------------------------------------


def test_a_person_s_status_change_reaches_recoverlink_through_the_scrip(
    request_tracker: RequestTracker,
) -> None:
    rt, adapter = request_tracker, request_tracker.adapter()
    correlation = new_correlation()
    link = adapter.create_incident(draft(correlation))

    as_person(rt, "PUT", f"/ticket/{link.id}", {"Status": "resolved"})

    headers, body = rt.callbacks.wait_for(
        lambda d: d["ticket_id"] == int(link.id) and d["status"] == "resolved"
    )
    assert headers["authorization"] == f"Bearer {rt.callback_secret}"
    assert headers["content-type"] == "application/json"
    sent = json.loads(body)
    assert (sent["source"], sent["old_status"], sent["creator"], sent["owner"]) == (
        "rt",
        "new",
        "root",
        "Nobody",
    )
    change = adapter.parse_callback(body, headers)
    assert (change.incident_id, change.correlation_id, change.status) == (
        link.id,
        correlation,
        IncidentStatus.RESOLVED,
    )
    assert (change.actor, change.by_us, change.dedup_key) == ("root", False, f"txn:{sent['transaction_id']}")
    assert change.at is not None and abs(change.at - datetime.now(UTC)) < timedelta(minutes=1)


def test_recoverlink_s_own_status_change_comes_back_as_an_echo(request_tracker: RequestTracker) -> None:
    rt, adapter = request_tracker, request_tracker.adapter()
    link = adapter.create_incident(draft(new_correlation()))

    adapter.resolve_incident(link, ResolutionPolicy.CLOSE, "verified")

    _, body = rt.callbacks.wait_for(lambda d: d["ticket_id"] == int(link.id) and d["status"] == "resolved")
    change = adapter.parse_callback(body, {})
    assert (change.actor, change.by_us) == (API_USER, True)


def test_an_owner_change_reaches_recoverlink_too(request_tracker: RequestTracker) -> None:
    rt, adapter = request_tracker, request_tracker.adapter()
    link = adapter.create_incident(draft(new_correlation()))

    as_person(rt, "PUT", f"/ticket/{link.id}", {"Owner": "root"})

    _, body = rt.callbacks.wait_for(lambda d: d["ticket_id"] == int(link.id) and d["owner"] == "root")
    sent = json.loads(body)
    assert (sent["status"], sent["old_status"]) == ("new", None)
    assert adapter.parse_callback(body, {}).status == IncidentStatus.NEW
