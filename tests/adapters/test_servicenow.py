"""The ServiceNow adapter against the Table API's documented shapes (REFERENCE.md 3), through `responses`.

Answers are the documented ones: 201 with `{"result": {...}}` on create, `{"result": [...]}` (an
empty array when nothing matches) on search, `{"error": {...}, "status": "failure"}` on errors,
429 with `Retry-After`, and a hibernating developer instance's HTML page with status 200.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from recoverlink.adapters.itsm import build_itsm_adapters
from recoverlink.adapters.itsm.servicenow import PAGE_SIZE, ServiceNowAdapter
from recoverlink.config.itsm import ItsmConfig, ServiceNowConfig
from recoverlink.domain.catalog import ItsmRouting
from recoverlink.domain.errors import ItsmError, PayloadInvalid
from recoverlink.domain.itsm import IncidentDraft, IncidentLink, IncidentStatus
from recoverlink.domain.rules import ResolutionPolicy
from tests.conftest import FakeClock

BASE = "https://dev12345.service-now.com"
TABLE = f"{BASE}/api/now/table/incident"
SYS_ID = "c537bae64f411200adf9f8e18110c76e"
RECORD_URL = f"{TABLE}/{SYS_ID}"
CORRELATION = "recoverlink:rec-193"
PASSWORD = "sn-password-never-printed"
LINK = IncidentLink(system="servicenow", id=SYS_ID, number="INC0010002")
HIBERNATING = (
    "<html><head><title>Your instance is hibernating</title></head>"
    '<body class="instance-hibernating-page"><p>Wake your instance up</p></body></html>'
)
DRAFT = IncidentDraft(
    correlation_id=CORRELATION,
    title="payments-api degraded: checkout failing",
    description="Checkout errors above 5% for 10 minutes.",
    priority="P2",
    impact=1,
    urgency=2,
    routing=ItsmRouting(
        system="servicenow", assignment_group="Payments Ops", ci="55b35562c0a8010e01cff22378e0aea9"
    ),
)


@pytest.fixture
def remote() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def adapter(**settings: Any) -> ServiceNowAdapter:
    config = ServiceNowConfig.model_validate(
        {
            "url": BASE,
            "auth": {"basic": {"username": "recoverlink", "password": {"env": "SN_PASSWORD"}}},
            **settings,
        }
    )
    return ServiceNowAdapter.from_config(config, {"SN_PASSWORD": PASSWORD}, requests.Session(), FakeClock())


def record(**fields: str) -> dict[str, str]:
    """An incident as the Table API answers it with our sysparm_fields (every value a string)."""
    return {
        "sys_id": SYS_ID,
        "number": "INC0010002",
        "state": "2",
        "correlation_id": CORRELATION,
        "correlation_display": "recoverlink",
        "close_code": "",
        "sys_mod_count": "4",
        "sys_updated_on": "2026-11-22 18:05:00",
        "sys_updated_by": "ann.agent",
        "assignment_group.name": "Payments Ops",
        **fields,
    }


def error_body(message: str, detail: str) -> dict[str, Any]:
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


def failure(call: Any) -> ItsmError:
    with pytest.raises(ItsmError) as caught:
        call()
    return caught.value


def sent(remote: responses.RequestsMock, index: int = -1) -> Any:
    body = remote.calls[index].request.body
    return json.loads(body) if body else None


# --- create --------------------------------------------------------------------------------------


def test_create_posts_the_documented_request_and_links_the_new_incident(
    remote: responses.RequestsMock,
) -> None:
    expected_auth = "Basic " + base64.b64encode(f"recoverlink:{PASSWORD}".encode()).decode()
    remote.post(
        TABLE,
        status=201,
        headers={"Location": RECORD_URL},
        json={
            "result": {"sys_id": SYS_ID, "number": "INC0010002", "state": "1", "correlation_id": CORRELATION}
        },
        match=[
            matchers.query_param_matcher(
                {
                    "sysparm_fields": "sys_id,number,state,correlation_id",
                    "sysparm_exclude_reference_link": "true",
                    "sysparm_input_display_value": "true",
                }
            ),
            matchers.header_matcher(
                {
                    "Accept": "application/json",
                    "Content-Type": "application/json",
                    "Authorization": expected_auth,
                }
            ),
        ],
    )

    link = adapter(caller_id="681ccaf9c0a8016400b98a06818d57c7").create_incident(DRAFT)

    assert link == IncidentLink(
        system="servicenow", id=SYS_ID, number="INC0010002", url=f"{BASE}/incident.do?sys_id={SYS_ID}"
    )
    assert sent(remote) == {
        "short_description": "payments-api degraded: checkout failing",
        "description": "Checkout errors above 5% for 10 minutes.",
        "impact": "1",
        "urgency": "2",
        "assignment_group": "Payments Ops",
        "cmdb_ci": "55b35562c0a8010e01cff22378e0aea9",
        "caller_id": "681ccaf9c0a8016400b98a06818d57c7",
        "correlation_id": CORRELATION,
        "correlation_display": "recoverlink",
    }


def test_create_leaves_out_what_the_draft_does_not_say(remote: responses.RequestsMock) -> None:
    remote.post(TABLE, status=201, json={"result": {"sys_id": SYS_ID, "number": "INC0010003"}})

    adapter().create_incident(IncidentDraft(CORRELATION, "t", "d", "unknown"))

    assert set(sent(remote)) == {"short_description", "description", "correlation_id", "correlation_display"}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, {"result": {"sys_id": SYS_ID, "number": "INC0010002"}}),  # not 201: not a documented success
        (201, {"result": {"number": "INC0010002"}}),  # no sys_id
        (201, {"result": []}),
    ],
)
def test_create_without_a_201_and_a_sys_id_is_a_retryable_unknown_outcome(
    remote: responses.RequestsMock, status: int, body: Any
) -> None:
    remote.post(TABLE, status=status, json=body)

    error = failure(lambda: adapter().create_incident(DRAFT))

    assert (error.retryable, error.reason) == (True, "bad_response")
    assert "the retry searches before it creates" in str(error)


def test_hibernating_instance_page_is_retryable_not_json_never_a_created_incident(
    remote: responses.RequestsMock,
) -> None:
    remote.post(TABLE, status=200, body=HIBERNATING, content_type="text/html")

    error = failure(lambda: adapter().create_incident(DRAFT))

    assert (error.retryable, error.reason) == (True, "not_json")
    assert "hibernating" in str(error)


def test_a_json_content_type_with_a_body_that_does_not_parse_is_not_json(
    remote: responses.RequestsMock,
) -> None:
    remote.get(TABLE, status=200, body="<html>", content_type="application/json")

    error = failure(lambda: adapter().find_incident(CORRELATION))

    assert (error.retryable, error.reason) == (True, "not_json")


def test_create_whose_answer_times_out_is_a_retryable_timeout(remote: responses.RequestsMock) -> None:
    remote.post(TABLE, body=requests.exceptions.ReadTimeout("read timed out"))

    error = failure(lambda: adapter(timeout_seconds=3).create_incident(DRAFT))

    assert (error.retryable, error.reason) == (True, "timeout")
    assert "within 3 s" in str(error)


def test_create_refused_by_a_data_policy_says_what_servicenow_said(remote: responses.RequestsMock) -> None:
    remote.post(
        TABLE, status=403, json=error_body("Operation Failed", "Data Policy Exception: Impact is mandatory")
    )

    error = failure(lambda: adapter().create_incident(DRAFT))

    assert (error.retryable, error.reason) == (False, "http_4xx")
    assert "HTTP 403: Operation Failed: Data Policy Exception: Impact is mandatory" in str(error)


# --- failures of any call ------------------------------------------------------------------------


def test_rate_limited_call_is_retryable_after_the_delay_servicenow_asks_for(
    remote: responses.RequestsMock,
) -> None:
    remote.get(
        TABLE,
        status=429,
        headers={"Retry-After": "30", "X-RateLimit-Rule": "table-api"},
        json=error_body("Rate limit exceeded", "Rate limit of 100 requests per hour for Table API exceeded"),
    )

    error = failure(lambda: adapter().find_incident(CORRELATION))

    assert (error.retryable, error.reason, error.retry_after_seconds) == (True, "http_429", 30.0)
    assert "Rate limit exceeded" in str(error)


@pytest.mark.parametrize(
    ("status", "retryable", "reason"),
    [
        (400, False, "http_4xx"),
        (401, False, "http_4xx"),
        (403, False, "http_4xx"),
        (404, False, "http_4xx"),
        (500, True, "http_5xx"),
        (502, True, "http_5xx"),
        (503, True, "http_503"),
    ],
)
def test_status_codes_are_classified_for_the_worker(
    remote: responses.RequestsMock, status: int, retryable: bool, reason: str
) -> None:
    remote.patch(RECORD_URL, status=status, json=error_body("No Record found", "ACL restricts the record"))

    error = failure(lambda: adapter().add_note(LINK, "Impact: 3 journeys"))

    assert (error.retryable, error.reason) == (retryable, reason)
    assert f"HTTP {status}: No Record found" in str(error)
    assert error.retry_after_seconds is None
    assert PASSWORD not in str(error)


def test_basic_auth_refused_for_want_of_mfa_says_so(remote: responses.RequestsMock) -> None:
    remote.get(
        RECORD_URL,
        status=401,
        headers={"X-MFA_TOKEN": "invalid"},
        json=error_body("User Not Authenticated", ""),
    )

    error = failure(lambda: adapter().read_incident(LINK))

    assert "needs MFA" in str(error) and error.reason == "http_4xx"
    assert PASSWORD not in str(error)


# --- find ----------------------------------------------------------------------------------------


def test_find_asks_for_the_exact_correlation_id_and_finds_nothing_in_an_empty_result(
    remote: responses.RequestsMock,
) -> None:
    remote.get(
        TABLE,
        json={"result": []},
        match=[
            matchers.query_param_matcher(
                {"sysparm_query": f"correlation_id={CORRELATION}^ORDERBYsys_created_on"}, strict_match=False
            ),
            matchers.header_matcher({"Accept": "application/json"}),
        ],
    )

    assert adapter().find_incident(CORRELATION) is None


def test_find_ignores_a_near_match_that_a_dropped_query_part_let_through(
    remote: responses.RequestsMock,
) -> None:
    remote.get(
        TABLE, json={"result": [record(correlation_id="recoverlink:rec-1930"), record(correlation_id="")]}
    )

    assert adapter().find_incident(CORRELATION) is None


def test_find_returns_the_exact_match_among_others(remote: responses.RequestsMock) -> None:
    other = record(sys_id="0" * 32, number="INC0010001", correlation_id="recoverlink:rec-19")
    remote.get(TABLE, json={"result": [other, record()]})

    found = adapter().find_incident(CORRELATION)

    assert found is not None and (found.id, found.number) == (SYS_ID, "INC0010002")


def test_find_refuses_a_value_that_would_end_the_query_part() -> None:
    error = failure(lambda: adapter().find_incident("recoverlink:rec-1^ORactive=true"))

    assert (error.retryable, error.reason) == (False, "bad_request")


# --- notes, resolve, reopen ----------------------------------------------------------------------


def test_note_is_a_work_note_patch(remote: responses.RequestsMock) -> None:
    remote.patch(
        RECORD_URL,
        json={"result": record(sys_mod_count="5")},
        match=[matchers.header_matcher({"Accept": "application/json", "Content-Type": "application/json"})],
    )

    adapter().add_note(LINK, "Impact: 3 journeys, 1200 customers")

    assert sent(remote) == {"work_notes": "Impact: 3 journeys, 1200 customers"}


def test_close_policy_resolves_with_the_configured_close_code(remote: responses.RequestsMock) -> None:
    remote.get(RECORD_URL, json={"result": record(state="2")})
    remote.patch(RECORD_URL, json={"result": record(state="6", close_code="Solved (Work Around)")})

    status = adapter(close_code="Solved (Work Around)").resolve_incident(
        LINK, ResolutionPolicy.CLOSE, "Recovered: all alerts resolved at 18:40"
    )

    assert status is IncidentStatus.RESOLVED
    assert sent(remote) == {
        "state": "6",
        "close_code": "Solved (Work Around)",
        "close_notes": "Recovered: all alerts resolved at 18:40",
    }


def test_close_policy_on_an_incident_already_resolved_only_adds_the_note(
    remote: responses.RequestsMock,
) -> None:
    remote.get(RECORD_URL, json={"result": record(state="6")})
    remote.patch(RECORD_URL, json={"result": record(state="6")})

    assert adapter().resolve_incident(LINK, ResolutionPolicy.CLOSE, "Recovered") is IncidentStatus.RESOLVED
    assert sent(remote) == {"work_notes": "Recovered"}


def test_close_policy_leaves_a_closed_incident_alone(remote: responses.RequestsMock) -> None:
    remote.get(RECORD_URL, json={"result": record(state="7")})

    assert adapter().resolve_incident(LINK, ResolutionPolicy.CLOSE, "Recovered") is IncidentStatus.CLOSED
    assert len(remote.calls) == 1


def test_comment_policy_only_writes_a_work_note(remote: responses.RequestsMock) -> None:
    remote.patch(RECORD_URL, json={"result": record(state="2")})

    assert (
        adapter().resolve_incident(LINK, ResolutionPolicy.COMMENT, "Recovered") is IncidentStatus.IN_PROGRESS
    )
    assert sent(remote) == {"work_notes": "Recovered"}


def test_monitor_policy_moves_to_the_monitor_state_with_its_hold_reason(
    remote: responses.RequestsMock,
) -> None:
    remote.get(RECORD_URL, json={"result": record(state="2")})
    remote.patch(RECORD_URL, json={"result": record(state="3")})

    status = adapter(monitor_hold_reason="5").resolve_incident(LINK, ResolutionPolicy.MONITOR, "Watching")

    assert status is IncidentStatus.ON_HOLD
    assert sent(remote) == {"state": "3", "hold_reason": "5", "work_notes": "Watching"}


def test_reopen_moves_a_resolved_incident_back_to_in_progress_with_a_note(
    remote: responses.RequestsMock,
) -> None:
    remote.get(RECORD_URL, json={"result": record(state="6")})
    remote.patch(RECORD_URL, json={"result": record(state="2")})

    adapter().reopen_incident(LINK, "The alert fired again")

    assert sent(remote) == {"state": "2", "work_notes": "The alert fired again"}


@pytest.mark.parametrize("state", ["2", "7", "8"])
def test_reopen_of_an_open_closed_or_canceled_incident_only_adds_the_note(
    remote: responses.RequestsMock, state: str
) -> None:
    remote.get(RECORD_URL, json={"result": record(state=state)})
    remote.patch(RECORD_URL, json={"result": record(state=state)})

    adapter().reopen_incident(LINK, "The alert fired again")

    assert sent(remote) == {"work_notes": "The alert fired again"}


# --- read and the reconciliation poll -----------------------------------------------------------


def test_read_gives_the_incident_as_a_change_keyed_on_its_modification_count(
    remote: responses.RequestsMock,
) -> None:
    remote.get(
        RECORD_URL,
        json={"result": record(state="6", close_code="Solved (Permanently)", sys_updated_by="recoverlink")},
        match=[matchers.query_param_matcher({"sysparm_exclude_reference_link": "true"}, strict_match=False)],
    )

    change = adapter().read_incident(LINK)

    assert change.dedup_key == f"poll:{SYS_ID}:4"
    assert (change.sequence, change.status, change.raw_status) == (4, IncidentStatus.RESOLVED, "6")
    assert (change.correlation_id, change.assignee_team, change.resolution) == (
        CORRELATION,
        "Payments Ops",
        "Solved (Permanently)",
    )
    assert change.by_us and change.actor == "recoverlink"
    assert change.at == datetime(2026, 11, 22, 18, 5, tzinfo=UTC)


def test_a_state_the_config_does_not_map_means_nothing(remote: responses.RequestsMock) -> None:
    remote.get(RECORD_URL, json={"result": record(state="42")})

    change = adapter().read_incident(LINK)

    assert (change.status, change.raw_status, change.by_us) == (None, "42", False)


def test_poll_asks_for_our_incidents_updated_since_and_pages_through_them(
    remote: responses.RequestsMock,
) -> None:
    query = "correlation_display=recoverlink^sys_updated_on>=2026-11-22 18:00:00^ORDERBYsys_id"
    first = [record(sys_id=f"{n:032x}", correlation_id=f"recoverlink:rec-{n}") for n in range(PAGE_SIZE)]
    remote.get(
        TABLE,
        json={"result": first},
        match=[
            matchers.query_param_matcher({"sysparm_query": query, "sysparm_offset": "0"}, strict_match=False)
        ],
    )
    remote.get(
        TABLE,
        json={
            "result": [record(), record(correlation_display=""), record(sys_updated_on="2026-11-22 17:59:59")]
        },
        match=[matchers.query_param_matcher({"sysparm_offset": str(PAGE_SIZE)}, strict_match=False)],
    )

    changes = adapter().changed_since(datetime(2026, 11, 22, 18, 0, 0, 500_000, tzinfo=UTC))

    assert len(changes) == PAGE_SIZE + 1  # the row that is not ours and the older one are dropped
    assert changes[-1].incident_id == SYS_ID


# --- callbacks ------------------------------------------------------------------------------------


def callback(**overrides: Any) -> bytes:
    """What deploy/servicenow/recoverlink_business_rule.js sends."""
    body = {
        "source": "servicenow",
        "event": "incident.updated",
        "sys_id": SYS_ID,
        "number": "INC0010002",
        "correlation_id": CORRELATION,
        "state": "2",
        "previous_state": "1",
        "assignment_group": "Payments Ops",
        "assigned_to": "Ann Agent",
        "close_code": None,
        "close_notes": None,
        "updated_at": "2026-11-22 18:07:00",
        "mod_count": "5",
        "updated_by": "ann.agent",
        **overrides,
    }
    return json.dumps(body).encode()


def test_callback_becomes_a_change_deduplicated_on_sys_id_and_mod_count() -> None:
    change = adapter().parse_callback(callback(), {"Content-Type": "application/json"})

    assert change.dedup_key == f"{SYS_ID}:5" and change.sequence == 5
    assert (change.status, change.assignee_team, change.actor) == (
        IncidentStatus.IN_PROGRESS,
        "Payments Ops",
        "ann.agent",
    )
    assert change.correlation_id == CORRELATION and not change.by_us
    assert change.at == datetime(2026, 11, 22, 18, 7, tzinfo=UTC)


def test_callback_of_our_own_update_is_an_echo() -> None:
    assert adapter().parse_callback(callback(updated_by="recoverlink"), {}).by_us
    assert (
        adapter(api_user="svc.recoverlink").parse_callback(callback(updated_by="svc.recoverlink"), {}).by_us
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"sys_id": None}, "sys_id"),
        ({"sys_id": 42}, "sys_id"),
        ({"mod_count": None}, "mod_count"),
        ({"mod_count": "five"}, "mod_count"),
        ({"mod_count": str(10**20)}, "mod_count"),
        ({"state": 2}, "state"),
        ({"assignment_group": ["Payments Ops"]}, "assignment_group"),
        ({"updated_at": "yesterday"}, "updated_at"),
        ({"source": "jira"}, "source"),
    ],
)
def test_callback_with_a_missing_or_ill_typed_field_names_it(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(PayloadInvalid) as caught:
        adapter().parse_callback(callback(**overrides), {})

    assert caught.value.field == field


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b""])
def test_callback_that_is_not_a_json_object_is_invalid(body: bytes) -> None:
    with pytest.raises(PayloadInvalid):
        adapter().parse_callback(body, {})


# --- check ----------------------------------------------------------------------------------------


def choices(element: str, *values: str, inactive: tuple[str, ...] = ()) -> dict[str, Any]:
    rows = [
        {
            "name": "incident",
            "element": element,
            "value": v,
            "label": f"label {v}",
            "inactive": str(v in inactive).lower(),
        }
        for v in values
    ]
    return {"result": rows}


def answer_choices(remote: responses.RequestsMock, element: str, body: dict[str, Any]) -> None:
    remote.get(
        f"{BASE}/api/now/table/sys_choice",
        json=body,
        match=[
            matchers.query_param_matcher(
                {"sysparm_query": f"name=incident^element={element}"}, strict_match=False
            )
        ],
    )


def test_check_passes_when_the_instance_offers_everything_configured(remote: responses.RequestsMock) -> None:
    remote.get(TABLE, json={"result": [{"sys_id": SYS_ID, "correlation_id": "", "correlation_display": ""}]})
    answer_choices(remote, "state", choices("state", "1", "2", "3", "6", "7", "8"))
    answer_choices(
        remote, "close_code", choices("close_code", "Solved (Permanently)", "Solved (Work Around)")
    )

    findings = adapter().check()

    assert [f.ok for f in findings] == [True] * 5, findings


def test_check_names_missing_states_and_close_code(remote: responses.RequestsMock) -> None:
    remote.get(TABLE, json={"result": [{"sys_id": SYS_ID}]})  # sysparm_fields dropped both: no such fields
    answer_choices(remote, "state", choices("state", "1", "2", "3", "6", "7", "8", inactive=("8",)))
    answer_choices(remote, "close_code", choices("close_code", "Resolved by caller"))

    findings = {f.what: f for f in adapter(monitor_state="4").check()}

    assert not findings["servicenow correlation fields"].ok
    assert (
        "correlation_id, correlation_display not in a incident record"
        in findings["servicenow correlation fields"].detail
    )
    state = findings["servicenow state choices"]
    assert (
        not state.ok
        and "8 (canceled), 4 (monitor_state) not an active choice of incident.state" in state.detail
    )
    close = findings["servicenow close_code choices"]
    assert not close.ok and "Solved (Permanently) (close_code)" in close.detail
    assert "Resolved by caller" in close.detail


def test_check_reads_sys_dictionary_when_the_table_is_empty(remote: responses.RequestsMock) -> None:
    remote.get(TABLE, json={"result": []})
    remote.get(
        f"{BASE}/api/now/table/sys_dictionary",
        json={
            "result": [
                {"name": "task", "element": "correlation_id"},
                {"name": "task", "element": "correlation_display"},
            ]
        },
    )
    answer_choices(remote, "state", choices("state", "1", "2", "3", "6", "7", "8"))
    answer_choices(remote, "close_code", choices("close_code", "Solved (Permanently)"))

    findings = {f.what: f for f in adapter().check()}

    assert findings["servicenow correlation fields"].ok
    assert "sys_dictionary" in findings["servicenow correlation fields"].detail


@pytest.mark.parametrize(("status", "oks"), [(401, [False]), (403, [True, False])])
def test_check_stops_when_the_user_cannot_log_in_or_read(
    remote: responses.RequestsMock, status: int, oks: list[bool]
) -> None:
    remote.get(
        TABLE,
        status=status,
        json=error_body("User Not Authenticated", "Required to provide Auth information"),
    )

    assert [f.ok for f in adapter().check()] == oks


def test_check_of_a_hibernating_instance_says_it_is_unreachable(remote: responses.RequestsMock) -> None:
    remote.get(TABLE, status=200, body=HIBERNATING, content_type="text/html")

    (finding,) = adapter().check()

    assert not finding.ok and "hibernating" in finding.detail


def test_the_adapter_is_built_from_the_itsm_section() -> None:
    config = ItsmConfig.model_validate(
        {
            "default": "servicenow",
            "servicenow": {
                "url": BASE,
                "auth": {"bearer": {"env": "SN_TOKEN"}},
                "api_user": "svc.recoverlink",
            },
        }
    )

    built = build_itsm_adapters(config, {"SN_TOKEN": "token"})["servicenow"]

    assert isinstance(built, ServiceNowAdapter)
    assert built.name == built.target == "servicenow" and built.api_user == "svc.recoverlink"
    assert built.caller.authorization == "Bearer token"
