"""The Request Tracker adapter's HTTP shape and failures, with REST2 played by `responses`.

What a real RT 5.0.3 does is in test_rt_real.py; here are the calls it is hard to make a real RT
do (401, 429, 500/503, an HTML page, a timeout) and the exact requests sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from responses import matchers

from recoverlink.adapters.itsm.rt import RtAdapter, ticketsql_string
from recoverlink.config.itsm import RtConfig
from recoverlink.domain.catalog import ItsmRouting
from recoverlink.domain.errors import ItsmError, PayloadInvalid
from recoverlink.domain.itsm import IncidentDraft, IncidentLink, IncidentStatus
from recoverlink.domain.rules import ResolutionPolicy
from tests.conftest import FakeClock

RT = "https://rt.example"
API = f"{RT}/REST/2.0"
TOKEN = "1-7-rt-token-that-must-never-be-printed"
CORRELATION = "recoverlink:rec-123"
LINK = IncidentLink(system="rt", id="12", number="12", url=f"{RT}/Ticket/Display.html?id=12")
DRAFT = IncidentDraft(CORRELATION, "Checkout errors high", "5xx above 2 %\nsince 18:00", "P2")


@pytest.fixture
def remote() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def adapter(clock: FakeClock | None = None, **overrides: Any) -> RtAdapter:
    values = {
        "url": RT,
        "auth": {"token": {"env": "RT_TOKEN"}},
        "queue": "Incidents",
        "api_user": "recoverlink",
    }
    config = RtConfig.model_validate({**values, **overrides})
    return RtAdapter.from_config(config, {"RT_TOKEN": TOKEN}, requests.Session(), clock or FakeClock())


def ticket(status: str = "open", correlation: str | None = CORRELATION, **fields: Any) -> dict[str, Any]:
    """A `GET /ticket/12` answer as RT 5.0.3 writes it (the parts the adapter reads)."""
    values = [correlation] if correlation is not None else []
    return {
        "id": 12,
        "Status": status,
        "LastUpdated": "2026-11-22T18:05:00Z",
        "LastUpdatedBy": {"id": "jane", "type": "user", "_url": f"{API}/user/jane"},
        "CustomFields": [{"id": "2", "name": "CorrelationId", "values": values, "type": "customfield"}],
        **fields,
    }


def item(ticket_id: str, correlation: str, updated: str = "2026-11-22T18:05:00Z") -> dict[str, Any]:
    """One item of a `GET /tickets` search with fields=Status,LastUpdated,LastUpdatedBy,CustomFields."""
    return {**ticket(correlation=correlation, LastUpdated=updated), "id": ticket_id}


def page(*items: dict[str, Any], next_page: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"page": 1, "per_page": 100, "count": len(items), "items": list(items)}
    if next_page:
        answer["next_page"] = next_page
    return answer


def query_of(call: Any) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(call.request.url).query).items()}


def failure(call: Any) -> ItsmError:
    with pytest.raises(ItsmError) as caught:
        call()
    assert TOKEN not in str(caught.value)
    return caught.value


# --- what is sent -------------------------------------------------------------------------------


def test_ticketsql_strings_escape_quotes_and_backslashes() -> None:
    assert ticketsql_string("recoverlink:rec-1") == "'recoverlink:rec-1'"
    assert ticketsql_string("it's") == r"'it\'s'"
    assert ticketsql_string("a\\b") == r"'a\\b'"


def test_find_searches_the_field_and_keeps_only_the_exact_value(remote: responses.RequestsMock) -> None:
    # TicketSQL's = ignores case, so RT may return a near match; the lowest id of the exact ones wins.
    near = item("9", CORRELATION.upper())
    remote.get(f"{API}/tickets", json=page(near, item("14", CORRELATION), item("12", CORRELATION)))

    found = adapter().find_incident(CORRELATION)

    assert found == LINK
    sent = query_of(remote.calls[0])
    assert sent["query"] == "'CF.{CorrelationId}' = 'recoverlink:rec-123'"
    assert remote.calls[0].request.headers["Authorization"] == f"token {TOKEN}"


def test_find_returns_none_without_an_exact_match(remote: responses.RequestsMock) -> None:
    remote.get(f"{API}/tickets", json=page(item("9", "recoverlink:rec-1234")))
    assert adapter().find_incident(CORRELATION) is None


def test_create_sends_queue_subject_text_priority_requestor_and_the_correlation(
    remote: responses.RequestsMock,
) -> None:
    expected = {
        "Queue": "Payments",
        "Subject": DRAFT.title,
        "Content": DRAFT.description,
        "ContentType": "text/plain",
        "Priority": 75,
        "Requestor": "oncall@example.com",
        "CustomFields": {"CorrelationId": CORRELATION},
    }
    remote.post(
        f"{API}/ticket", status=201, json={"id": "12"}, match=[matchers.json_params_matcher(expected)]
    )
    remote.get(f"{API}/ticket/12", json=ticket("new"))
    draft = IncidentDraft(**{**DRAFT.__dict__, "routing": ItsmRouting(system="rt", queue="Payments")})

    link = adapter(requestor="oncall@example.com").create_incident(draft)

    assert link == LINK


def test_create_leaves_an_unknown_priority_to_the_queue(remote: responses.RequestsMock) -> None:
    remote.post(f"{API}/ticket", status=201, json={"id": "12"})
    remote.get(f"{API}/ticket/12", json=ticket("new"))
    adapter().create_incident(IncidentDraft(CORRELATION, "t", "d", "unknown"))
    sent = json.loads(remote.calls[0].request.body or "")
    assert "Priority" not in sent
    assert sent["Queue"] == "Incidents"
    assert "Requestor" not in sent


def test_create_in_an_unknown_queue_is_not_retried_and_names_the_queue(
    remote: responses.RequestsMock,
) -> None:
    remote.post(
        f"{API}/ticket", status=403, json={"message": "No permission to create tickets in the queue 'Nope'"}
    )
    error = failure(lambda: adapter(queue="Nope").create_incident(DRAFT))
    assert not error.retryable
    assert error.reason == "http_4xx"
    assert "queue 'Nope' does not exist or RT user 'recoverlink' may not create in it" in str(error)


def test_create_fails_when_rt_dropped_the_correlation(remote: responses.RequestsMock) -> None:
    # REST2 ignores a custom field that does not apply to the queue and still answers 201.
    remote.post(f"{API}/ticket", status=201, json={"id": "12"})
    remote.get(f"{API}/ticket/12", json=ticket("new", correlation=None))
    error = failure(lambda: adapter().create_incident(DRAFT))
    assert (error.reason, error.retryable) == ("correlation_not_stored", False)
    assert "ticket 12" in str(error)


def test_add_note_is_a_plain_text_comment(remote: responses.RequestsMock) -> None:
    body = {"Content": "alerts resolved", "ContentType": "text/plain"}
    remote.post(
        f"{API}/ticket/12/comment",
        status=201,
        json=["Comments added"],
        match=[matchers.json_params_matcher(body)],
    )
    adapter().add_note(LINK, "alerts resolved")


@pytest.mark.parametrize(
    ("policy", "status", "expected"),
    [
        (ResolutionPolicy.CLOSE, "resolved", IncidentStatus.RESOLVED),
        (ResolutionPolicy.MONITOR, "stalled", IncidentStatus.ON_HOLD),
    ],
)
def test_resolve_comments_then_sets_the_policy_status(
    remote: responses.RequestsMock, policy: ResolutionPolicy, status: str, expected: IncidentStatus
) -> None:
    remote.post(f"{API}/ticket/12/comment", status=201, json=["Comments added"])
    remote.put(
        f"{API}/ticket/12",
        json=[f"Ticket 12: Status changed from 'open' to '{status}'"],
        match=[matchers.json_params_matcher({"Status": status})],
    )
    remote.get(f"{API}/ticket/12", json=ticket(status))

    assert adapter().resolve_incident(LINK, policy, "verified") == expected
    assert [c.request.method for c in remote.calls] == ["POST", "PUT", "GET"]


def test_resolve_by_comment_changes_no_status(remote: responses.RequestsMock) -> None:
    remote.post(f"{API}/ticket/12/comment", status=201, json=["Comments added"])
    remote.get(f"{API}/ticket/12", json=ticket("open"))
    assert (
        adapter().resolve_incident(LINK, ResolutionPolicy.COMMENT, "verified") == IncidentStatus.IN_PROGRESS
    )
    assert "PUT" not in [c.request.method for c in remote.calls]


def test_a_status_rt_refused_with_a_200_is_an_error(remote: responses.RequestsMock) -> None:
    remote.post(f"{API}/ticket/12/comment", status=201, json=["Comments added"])
    remote.put(
        f"{API}/ticket/12", json=["Ticket 12: Status 'monitoring' isn't a valid status for this ticket."]
    )
    remote.get(f"{API}/ticket/12", json=ticket("open"))
    error = failure(
        lambda: adapter(monitor_status="monitoring").resolve_incident(LINK, ResolutionPolicy.MONITOR, "x")
    )
    assert (error.reason, error.retryable) == ("status_refused", False)
    assert "isn't a valid status" in str(error)


def test_reopen_comments_and_opens(remote: responses.RequestsMock) -> None:
    remote.post(f"{API}/ticket/12/comment", status=201, json=["Comments added"])
    remote.put(f"{API}/ticket/12", json=["ok"], match=[matchers.json_params_matcher({"Status": "open"})])
    remote.get(f"{API}/ticket/12", json=ticket("open"))
    adapter().reopen_incident(LINK, "alerts fire again")


def test_read_maps_the_status_and_keys_the_poll_on_last_updated(remote: responses.RequestsMock) -> None:
    remote.get(f"{API}/ticket/12", json=ticket("resolved"))
    change = adapter().read_incident(LINK)
    assert change.status == IncidentStatus.RESOLVED
    assert change.dedup_key == "poll:12:2026-11-22T18:05:00Z"
    assert (change.actor, change.by_us) == ("jane", False)
    assert change.correlation_id == CORRELATION
    assert change.at == datetime(2026, 11, 22, 18, 5, tzinfo=UTC)


def test_changed_since_writes_the_date_in_rt_s_zone_and_follows_pages(remote: responses.RequestsMock) -> None:
    first = page(
        item("12", CORRELATION, "2026-11-22T18:01:00Z"),
        item("13", "x-recoverlink:rec-5", "2026-11-22T18:02:00Z"),  # LIKE means "contains"
        next_page=f"{API}/tickets?page=2",
    )
    remote.get(
        f"{API}/tickets", json=first, match=[matchers.query_param_matcher({"page": "1"}, strict_match=False)]
    )
    second = page(item("14", "recoverlink:rec-124", "2026-11-22T18:03:00Z"))
    remote.get(
        f"{API}/tickets", json=second, match=[matchers.query_param_matcher({"page": "2"}, strict_match=False)]
    )

    since = datetime(2026, 11, 22, 18, 0, 0, 400_000, tzinfo=UTC)
    changes = adapter(ticketsql_time_zone="Europe/Berlin").changed_since(since)

    assert [c.incident_id for c in changes] == ["12", "14"]
    sent = query_of(remote.calls[0])
    assert sent["query"] == (
        "'CF.{CorrelationId}' LIKE 'recoverlink:rec-%' AND LastUpdated >= '2026-11-22 19:00:00'"
    )
    assert (sent["orderby"], sent["order"], sent["per_page"]) == ("LastUpdated", "ASC", "100")


# --- how failures are classified ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "retryable"),
    [(401, "http_4xx", False), (404, "http_4xx", False), (500, "http_5xx", True), (503, "http_503", True)],
)
def test_error_statuses_are_classified(
    remote: responses.RequestsMock, status: int, reason: str, retryable: bool
) -> None:
    remote.get(f"{API}/ticket/12", status=status, json={"message": "Unauthorized"})
    error = failure(lambda: adapter().read_incident(LINK))
    assert (error.reason, error.retryable) == (reason, retryable)
    assert f"HTTP {status}" in str(error)


def test_rate_limit_is_retried_after_what_rt_asks(remote: responses.RequestsMock) -> None:
    remote.get(f"{API}/tickets", status=429, headers={"Retry-After": "30"}, body="slow down")
    error = failure(lambda: adapter().find_incident(CORRELATION))
    assert (error.reason, error.retryable, error.retry_after_seconds) == ("http_429", True, 30.0)


def test_an_html_page_instead_of_json_is_retried(remote: responses.RequestsMock) -> None:
    remote.get(f"{API}/ticket/12", status=200, body="<html>Login</html>", content_type="text/html")
    error = failure(lambda: adapter().read_incident(LINK))
    assert (error.reason, error.retryable) == ("not_json", True)


def test_a_timeout_is_retried(remote: responses.RequestsMock) -> None:
    remote.post(f"{API}/ticket", body=requests.exceptions.ReadTimeout("read timed out"))
    error = failure(lambda: adapter(timeout_seconds=2).create_incident(DRAFT))
    assert (error.reason, error.retryable) == ("timeout", True)
    assert "within 2 s" in str(error)


def test_a_link_that_names_no_ticket_is_refused_before_any_call(remote: responses.RequestsMock) -> None:
    error = failure(lambda: adapter().add_note(IncidentLink("rt", "12/../../rt", "12"), "x"))
    assert (error.reason, error.retryable) == ("bad_request", False)
    assert not remote.calls


def test_check_stops_at_rejected_credentials(remote: responses.RequestsMock) -> None:
    remote.get(f"{API}/rt", status=401, json={"message": "Unauthorized"})
    [finding] = adapter().check()
    assert not finding.ok
    assert "Auth Tokens" in finding.detail


def test_check_names_a_configured_status_missing_from_the_default_lifecycle(
    remote: responses.RequestsMock,
) -> None:
    remote.get(f"{API}/rt", json={"Version": "5.0.3"})
    queue = {
        "Name": "Incidents",
        "Lifecycle": "default",
        "TicketCustomFields": [{"name": "CorrelationId"}],
        "_hyperlinks": [{"ref": "create", "type": "ticket"}],
    }
    remote.get(f"{API}/queue/Incidents", json=queue)
    remote.get(f"{API}/tickets", json=page())

    findings = adapter(monitor_status="monitoring").check()

    failed = [f for f in findings if not f.ok]
    assert [f.what for f in failed] == [
        "status 'monitoring' (itsm.rt.monitor_status) is in lifecycle 'default'"
    ]


# --- callbacks of the shipped scrip -------------------------------------------------------------

CALLBACK = {
    "source": "rt",
    "ticket_id": 12,
    "transaction_id": 345,
    "status": "resolved",
    "old_status": "open",
    "owner": "jane",
    "creator": "jane",
    "correlation_id": CORRELATION,
    "updated_at": "2026-11-22T18:05:00Z",
}


def test_callback_becomes_a_change_deduped_on_the_transaction() -> None:
    change = adapter().parse_callback(json.dumps(CALLBACK).encode(), {})
    assert change.incident_id == "12"
    assert change.status == IncidentStatus.RESOLVED
    assert (change.dedup_key, change.sequence) == ("txn:345", 345)
    assert (change.actor, change.by_us) == ("jane", False)
    assert change.at == datetime(2026, 11, 22, 18, 5, tzinfo=UTC)


def test_callback_of_our_own_change_is_an_echo() -> None:
    change = adapter().parse_callback(json.dumps({**CALLBACK, "creator": "recoverlink"}).encode(), {})
    assert change.by_us


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("source", "jira"),
        ("ticket_id", None),
        ("ticket_id", "twelve"),
        ("transaction_id", True),
        ("transaction_id", -1),
        ("transaction_id", 2**63),
        ("ticket_id", str(2**64)),
        ("status", 3),
        ("creator", ""),
        ("old_status", ["open"]),
        ("owner", 7),
        ("correlation_id", {"id": 1}),
        ("updated_at", "yesterday"),
    ],
)
def test_ill_typed_callback_fields_are_named(field: str, value: Any) -> None:
    with pytest.raises(PayloadInvalid) as caught:
        adapter().parse_callback(json.dumps({**CALLBACK, field: value}).encode(), {})
    assert caught.value.field == field


def test_a_missing_callback_field_is_named() -> None:
    body = {key: value for key, value in CALLBACK.items() if key != "transaction_id"}
    with pytest.raises(PayloadInvalid) as caught:
        adapter().parse_callback(json.dumps(body).encode(), {})
    assert caught.value.field == "transaction_id"


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]"])
def test_a_callback_that_is_no_json_object_is_invalid(body: bytes) -> None:
    with pytest.raises(PayloadInvalid):
        adapter().parse_callback(body, {})
