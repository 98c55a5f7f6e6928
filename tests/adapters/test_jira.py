"""The Jira adapter against the documented shapes of Cloud (REST v3) and Data Center (REST v2).

Each test runs for both flavours unless it is about one: Cloud sends ADF bodies and searches with
`POST /rest/api/3/search/jql`, Data Center plain strings and `GET /rest/api/2/search`
(REFERENCE.md 4). Webhook payloads follow 4.5.
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

from recoverlink.adapters.itsm.jira import JiraAdapter
from recoverlink.config.itsm import JiraConfig
from recoverlink.domain.catalog import ItsmRouting
from recoverlink.domain.errors import ItsmError, PayloadInvalid
from recoverlink.domain.itsm import IncidentDraft, IncidentLink, IncidentStatus
from recoverlink.domain.rules import ResolutionPolicy
from tests.conftest import FakeClock

BASE = "https://example.atlassian.net"
CORRELATION = "recoverlink:rec-193"
LABEL = "rl-rec-193"
KEY = "OPS-154"
LINK = IncidentLink(system="jira", id=KEY, number=KEY)
ACCOUNT = "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077"
DRAFT = IncidentDraft(
    correlation_id=CORRELATION,
    title="payments-api degraded: checkout failing",
    description="Checkout errors above 5%.\n\nRunbook: https://runbooks.example/payments",
    priority="P2",
    routing=ItsmRouting(system="jira", project="OPS"),
)
TRANSITIONS = {
    "transitions": [
        {
            "id": "21",
            "name": "In Progress",
            "to": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}},
        },
        {
            "id": "31",
            "name": "Done",
            "to": {"name": "Done", "statusCategory": {"key": "done"}},
            "fields": {"resolution": {"required": True, "name": "Resolution"}},
        },
    ]
}


@pytest.fixture
def remote() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture(params=["cloud", "data_center"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def adapter(flavor: str = "cloud", **settings: Any) -> JiraAdapter:
    user = "bot@example.com" if flavor == "cloud" else "svc-recoverlink"
    defaults: dict[str, Any] = {"api_user": ACCOUNT} if flavor == "cloud" else {}
    config = JiraConfig.model_validate(
        {
            "url": BASE,
            "flavor": flavor,
            "auth": {"basic": {"username": user, "password": {"env": "JIRA_TOKEN"}}},
            **defaults,
            **settings,
        }
    )
    return JiraAdapter.from_config(config, {"JIRA_TOKEN": "jira-token"}, requests.Session(), FakeClock())


def api(flavor: str) -> str:
    return f"{BASE}/rest/api/{3 if flavor == 'cloud' else 2}"


def issue(
    key: str = KEY, status: str = "In Progress", category: str = "indeterminate", **fields: Any
) -> dict[str, Any]:
    return {
        "id": "10002",
        "key": key,
        "self": f"{BASE}/rest/api/3/issue/10002",
        "fields": {
            "status": {"name": status, "statusCategory": {"key": category}},
            "labels": ["recoverlink", LABEL],
            "resolution": None,
            "assignee": {"accountId": "557058:ann", "displayName": "Ann Agent"},
            "updated": "2026-11-22T18:10:00.000+0000",
            **fields,
        },
    }


def answer_search(
    remote: responses.RequestsMock, flavor: str, issues: list[dict[str, Any]], **extra: Any
) -> None:
    if flavor == "cloud":
        remote.post(f"{api(flavor)}/search/jql", json={"issues": issues, "isLast": True, **extra})
    else:
        remote.get(
            f"{api(flavor)}/search",
            json={"startAt": 0, "maxResults": 10, "total": len(issues), "issues": issues},
        )


def searched_jql(remote: responses.RequestsMock, flavor: str, index: int = 0) -> str:
    request = remote.calls[index].request
    if flavor == "cloud":
        return str(json.loads(request.body or b"{}")["jql"])
    return _query(request.url)["jql"]


def _query(url: str | None) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url or "").query).items()}


def body_of(remote: responses.RequestsMock, index: int) -> Any:
    return json.loads(remote.calls[index].request.body or b"null")


def failure(call: Any) -> ItsmError:
    with pytest.raises(ItsmError) as caught:
        call()
    return caught.value


def adf(*paragraphs: str) -> dict[str, Any]:
    content = [{"type": "paragraph", "content": [{"type": "text", "text": p}]} for p in paragraphs]
    return {"type": "doc", "version": 1, "content": content}


# --- create --------------------------------------------------------------------------------------


def test_create_sends_labels_type_priority_and_the_flavours_description(
    remote: responses.RequestsMock, flavor: str
) -> None:
    remote.post(f"{api(flavor)}/issue", status=201, json={"id": "10002", "key": KEY, "self": "..."})
    remote.put(f"{api(flavor)}/issue/{KEY}/properties/recoverlink", status=201)

    link = adapter(flavor).create_incident(DRAFT)

    assert link == IncidentLink(system="jira", id=KEY, number=KEY, url=f"{BASE}/browse/{KEY}")
    description: Any = "Checkout errors above 5%.\n\nRunbook: https://runbooks.example/payments"
    if flavor == "cloud":
        description = adf("Checkout errors above 5%.", "Runbook: https://runbooks.example/payments")
    assert body_of(remote, 0) == {
        "fields": {
            "project": {"key": "OPS"},
            "issuetype": {"name": "Incident"},
            "summary": "payments-api degraded: checkout failing",
            "description": description,
            "labels": ["recoverlink", LABEL],
            "priority": {"name": "High"},
        }
    }
    assert body_of(remote, 1) == {"correlation_id": CORRELATION}


def test_create_uses_the_default_project_and_leaves_out_an_unmapped_priority(
    remote: responses.RequestsMock,
) -> None:
    remote.post(f"{api('cloud')}/issue", status=201, json={"id": "10003", "key": "SRE-1"})
    remote.put(f"{api('cloud')}/issue/SRE-1/properties/recoverlink", status=200)

    adapter(project="SRE").create_incident(IncidentDraft(CORRELATION, "t", "", "unknown"))

    fields = body_of(remote, 0)["fields"]
    assert fields["project"] == {"key": "SRE"} and "priority" not in fields and "description" not in fields


def test_create_without_any_project_is_refused_before_calling_jira() -> None:
    error = failure(lambda: adapter().create_incident(IncidentDraft(CORRELATION, "t", "d", "P1")))

    assert (error.retryable, error.reason) == (False, "no_project")


def test_create_answered_without_a_key_or_with_a_login_page_is_a_retryable_unknown_outcome(
    remote: responses.RequestsMock,
) -> None:
    remote.post(f"{api('cloud')}/issue", status=201, json={"id": "10002"})
    remote.post(f"{api('cloud')}/issue", status=200, body="<html>Log in</html>", content_type="text/html")

    first = failure(lambda: adapter().create_incident(DRAFT))
    second = failure(lambda: adapter().create_incident(DRAFT))

    assert (first.retryable, first.reason) == (True, "bad_response")
    assert (second.retryable, second.reason) == (True, "not_json")


def test_create_keeps_the_issue_when_the_ownership_property_cannot_be_set(
    remote: responses.RequestsMock,
) -> None:
    remote.post(f"{api('cloud')}/issue", status=201, json={"id": "10002", "key": KEY})
    remote.put(f"{api('cloud')}/issue/{KEY}/properties/recoverlink", status=500)

    assert adapter().create_incident(DRAFT).id == KEY


def test_create_refused_says_which_field_jira_did_not_like(
    remote: responses.RequestsMock, flavor: str
) -> None:
    remote.post(
        f"{api(flavor)}/issue",
        status=400,
        json={
            "errorMessages": [],
            "errors": {"labels": "Field 'labels' cannot be set. It is not on the screen."},
        },
    )

    error = failure(lambda: adapter(flavor).create_incident(DRAFT))

    assert (error.retryable, error.reason) == (False, "http_4xx")
    assert "labels: Field 'labels' cannot be set" in str(error)


def test_create_whose_answer_times_out_is_retryable(remote: responses.RequestsMock) -> None:
    remote.post(f"{api('cloud')}/issue", body=requests.exceptions.ReadTimeout())

    error = failure(lambda: adapter().create_incident(DRAFT))

    assert (error.retryable, error.reason) == (True, "timeout")


@pytest.mark.parametrize(("status", "reason"), [(429, "http_429"), (503, "http_503")])
def test_rate_limits_and_outages_are_retried_after_the_delay_jira_asks_for(
    remote: responses.RequestsMock, status: int, reason: str
) -> None:
    remote.post(
        f"{api('cloud')}/search/jql",
        status=status,
        headers={"Retry-After": "17", "RateLimit-Reason": "jira-burst-based"},
        json={"errorMessages": ["Rate limit exceeded."], "errors": {}},
    )

    error = failure(lambda: adapter().find_incident(CORRELATION))

    assert (error.retryable, error.reason, error.retry_after_seconds) == (True, reason, 17.0)


# --- find ----------------------------------------------------------------------------------------


def test_find_searches_the_label_with_bounded_jql_and_finds_nothing_in_an_empty_answer(
    remote: responses.RequestsMock, flavor: str
) -> None:
    answer_search(remote, flavor, [])

    assert adapter(flavor).find_incident(CORRELATION) is None
    assert searched_jql(remote, flavor) == 'labels = "rl-rec-193" ORDER BY created ASC'


def test_find_confirms_the_labelled_issue_through_its_property(
    remote: responses.RequestsMock, flavor: str
) -> None:
    near = issue(key="OPS-9", labels=["recoverlink", "rl-rec-1930"])
    answer_search(remote, flavor, [near, issue()])
    remote.get(
        f"{api(flavor)}/issue/{KEY}/properties/recoverlink",
        json={"key": "recoverlink", "value": {"correlation_id": CORRELATION}},
    )

    found = adapter(flavor).find_incident(CORRELATION)

    assert found is not None and found.id == KEY


def test_find_prefers_the_issue_whose_property_confirms_it_over_a_clone(
    remote: responses.RequestsMock,
) -> None:
    clone, copied, ours = issue(key="OPS-150"), issue(key="OPS-151"), issue(key="OPS-160")
    answer_search(remote, "cloud", [clone, copied, ours])
    properties = f"{api('cloud')}/issue/{{}}/properties/recoverlink"
    remote.get(properties.format("OPS-150"), status=404, json={"errorMessages": ["not found"], "errors": {}})
    remote.get(
        properties.format("OPS-151"),
        json={"key": "recoverlink", "value": {"correlation_id": "recoverlink:rec-7"}},
    )
    remote.get(
        properties.format("OPS-160"), json={"key": "recoverlink", "value": {"correlation_id": CORRELATION}}
    )

    found = adapter().find_incident(CORRELATION)

    assert found is not None and found.id == "OPS-160"


def test_find_accepts_a_labelled_issue_whose_property_was_never_set(remote: responses.RequestsMock) -> None:
    answer_search(remote, "cloud", [issue()])
    remote.get(
        f"{api('cloud')}/issue/{KEY}/properties/recoverlink", status=404, json={"errorMessages": ["gone"]}
    )

    found = adapter().find_incident(CORRELATION)

    assert found is not None and found.id == KEY


# --- notes, resolve, reopen ----------------------------------------------------------------------


def test_note_is_an_internal_comment_in_the_flavours_format(
    remote: responses.RequestsMock, flavor: str
) -> None:
    remote.post(f"{api(flavor)}/issue/{KEY}/comment", status=201, json={"id": "10100"})

    adapter(flavor).add_note(LINK, "Impact: 3 journeys")

    body = body_of(remote, 0)
    assert body["body"] == (adf("Impact: 3 journeys") if flavor == "cloud" else "Impact: 3 journeys")
    assert body["properties"] == [{"key": "sd.public.comment", "value": {"internal": True}}]


def answer_issue(remote: responses.RequestsMock, flavor: str, **issue_fields: Any) -> None:
    remote.get(f"{api(flavor)}/issue/{KEY}", json=issue(**issue_fields))


def test_close_policy_takes_the_resolve_transition_by_name_with_the_resolution(
    remote: responses.RequestsMock, flavor: str
) -> None:
    answer_issue(remote, flavor)
    remote.get(
        f"{api(flavor)}/issue/{KEY}/transitions",
        json=TRANSITIONS,
        match=[matchers.query_param_matcher({"expand": "transitions.fields"})],
    )
    remote.post(f"{api(flavor)}/issue/{KEY}/transitions", status=204)
    remote.post(f"{api(flavor)}/issue/{KEY}/comment", status=201, json={"id": "1"})

    status = adapter(flavor).resolve_incident(LINK, ResolutionPolicy.CLOSE, "Recovered at 18:40")

    assert status is IncidentStatus.RESOLVED
    assert body_of(remote, 2) == {"transition": {"id": "31"}, "fields": {"resolution": {"name": "Done"}}}


def test_the_resolution_is_left_out_when_the_transition_has_no_screen_for_it(
    remote: responses.RequestsMock,
) -> None:
    answer_issue(remote, "cloud")
    done = {
        "id": "31",
        "name": "Done",
        "to": {"name": "Done", "statusCategory": {"key": "done"}},
        "fields": {},
    }
    remote.get(f"{api('cloud')}/issue/{KEY}/transitions", json={"transitions": [done]})
    remote.post(f"{api('cloud')}/issue/{KEY}/transitions", status=204)
    remote.post(f"{api('cloud')}/issue/{KEY}/comment", status=201, json={"id": "1"})

    adapter().resolve_incident(LINK, ResolutionPolicy.CLOSE, "Recovered")

    assert body_of(remote, 2) == {"transition": {"id": "31"}}


def test_a_missing_transition_is_not_retried_and_names_the_transitions_that_exist(
    remote: responses.RequestsMock, flavor: str
) -> None:
    answer_issue(remote, flavor)
    remote.get(f"{api(flavor)}/issue/{KEY}/transitions", json=TRANSITIONS)

    error = failure(
        lambda: adapter(flavor, transitions={"resolve": "Resolve Issue"}).resolve_incident(
            LINK, ResolutionPolicy.CLOSE, "Recovered"
        )
    )

    assert (error.retryable, error.reason) == (False, "no_transition")
    assert "no transition 'Resolve Issue'" in str(error) and "it offers 'In Progress', 'Done'" in str(error)


def test_close_policy_on_an_issue_already_done_only_comments(remote: responses.RequestsMock) -> None:
    answer_issue(remote, "cloud", status="Done", category="done", resolution={"name": "Done"})
    remote.post(f"{api('cloud')}/issue/{KEY}/comment", status=201, json={"id": "1"})

    assert adapter().resolve_incident(LINK, ResolutionPolicy.CLOSE, "Recovered") is IncidentStatus.RESOLVED


def test_comment_policy_only_comments(remote: responses.RequestsMock) -> None:
    answer_issue(remote, "cloud")
    remote.post(f"{api('cloud')}/issue/{KEY}/comment", status=201, json={"id": "1"})

    assert (
        adapter().resolve_incident(LINK, ResolutionPolicy.COMMENT, "Recovered") is IncidentStatus.IN_PROGRESS
    )


def test_monitor_policy_needs_its_transition_configured(remote: responses.RequestsMock) -> None:
    answer_issue(remote, "cloud")

    error = failure(lambda: adapter().resolve_incident(LINK, ResolutionPolicy.MONITOR, "Watching"))

    assert (error.retryable, error.reason) == (False, "no_transition")


def test_monitor_policy_takes_the_monitor_transition(remote: responses.RequestsMock) -> None:
    answer_issue(remote, "cloud")
    monitor = {
        "id": "41",
        "name": "Monitor",
        "to": {"name": "Monitoring", "statusCategory": {"key": "indeterminate"}},
    }
    remote.get(f"{api('cloud')}/issue/{KEY}/transitions", json={"transitions": [monitor]})
    remote.post(f"{api('cloud')}/issue/{KEY}/transitions", status=204)
    remote.post(f"{api('cloud')}/issue/{KEY}/comment", status=201, json={"id": "1"})

    status = adapter(transitions={"monitor": "monitor"}, states={"on_hold": ["Monitoring"]}).resolve_incident(
        LINK, ResolutionPolicy.MONITOR, "Watching"
    )

    assert status is IncidentStatus.ON_HOLD
    assert body_of(remote, 2) == {"transition": {"id": "41"}}


def test_reopen_takes_the_reopen_transition_of_a_done_issue(
    remote: responses.RequestsMock, flavor: str
) -> None:
    answer_issue(remote, flavor, status="Done", category="done", resolution={"name": "Done"})
    reopen = {"id": "51", "name": "Reopen", "to": {"name": "To Do", "statusCategory": {"key": "new"}}}
    remote.get(f"{api(flavor)}/issue/{KEY}/transitions", json={"transitions": [reopen]})
    remote.post(f"{api(flavor)}/issue/{KEY}/transitions", status=204)
    remote.post(f"{api(flavor)}/issue/{KEY}/comment", status=201, json={"id": "1"})

    adapter(flavor).reopen_incident(LINK, "The alert fired again")

    assert body_of(remote, 2) == {"transition": {"id": "51"}}


@pytest.mark.parametrize("resolution", ["Won't Fix", "Duplicate"])
def test_an_issue_closed_as_wont_fix_is_never_reopened(
    remote: responses.RequestsMock, resolution: str
) -> None:
    answer_issue(remote, "cloud", status="Done", category="done", resolution={"name": resolution})
    remote.post(f"{api('cloud')}/issue/{KEY}/comment", status=201, json={"id": "1"})

    adapter().reopen_incident(LINK, "The alert fired again")

    assert [call.request.method for call in remote.calls] == ["GET", "POST"]
    assert remote.calls[1].request.url == f"{api('cloud')}/issue/{KEY}/comment"


def test_reopen_of_an_open_issue_only_comments(remote: responses.RequestsMock) -> None:
    answer_issue(remote, "cloud")
    remote.post(f"{api('cloud')}/issue/{KEY}/comment", status=201, json={"id": "1"})

    adapter().reopen_incident(LINK, "The alert fired again")


# --- read and the reconciliation poll -----------------------------------------------------------


def test_read_gives_the_issue_as_a_change(remote: responses.RequestsMock, flavor: str) -> None:
    remote.get(
        f"{api(flavor)}/issue/{KEY}",
        json=issue(status="Closed", category="done", resolution={"name": "Done"}),
        match=[matchers.query_param_matcher({"fields": "status,labels,resolution,assignee,updated"})],
    )

    change = adapter(flavor, states={"resolved": ["done"], "closed": ["Closed"]}).read_incident(LINK)

    assert change.dedup_key == f"poll:{KEY}:2026-11-22T18:10:00.000+0000"
    assert (change.status, change.raw_status, change.resolution) == (IncidentStatus.CLOSED, "Closed", "Done")
    assert (change.correlation_id, change.assignee_team) == (CORRELATION, "Ann Agent")
    assert change.at == datetime(2026, 11, 22, 18, 10, tzinfo=UTC)


def test_poll_on_cloud_writes_the_time_in_the_api_users_zone_and_follows_page_tokens(
    remote: responses.RequestsMock,
) -> None:
    url = f"{api('cloud')}/search/jql"
    remote.post(url, json={"issues": [issue("OPS-1")], "nextPageToken": "page-2", "isLast": False})
    remote.post(
        url, json={"issues": [issue("OPS-2"), issue("OPS-3", labels=["recoverlink"])], "isLast": True}
    )

    since = datetime(2026, 11, 22, 18, 0, 59, tzinfo=UTC)
    changes = adapter(jql_time_zone="Europe/Berlin").changed_since(since)

    assert [c.incident_id for c in changes] == ["OPS-1", "OPS-2"]  # OPS-3 carries no correlation label
    assert (
        body_of(remote, 0)["jql"]
        == 'labels = "recoverlink" AND updated >= "2026-11-22 19:00" ORDER BY key ASC'
    )
    assert "nextPageToken" not in body_of(remote, 0) and body_of(remote, 1)["nextPageToken"] == "page-2"


def test_poll_on_data_center_pages_by_start_at(remote: responses.RequestsMock) -> None:
    url = f"{api('data_center')}/search"
    remote.get(
        url,
        json={"startAt": 0, "maxResults": 1, "total": 2, "issues": [issue("OPS-1")]},
        match=[matchers.query_param_matcher({"startAt": "0"}, strict_match=False)],
    )
    remote.get(
        url,
        json={"startAt": 1, "maxResults": 1, "total": 2, "issues": [issue("OPS-2")]},
        match=[matchers.query_param_matcher({"startAt": "1"}, strict_match=False)],
    )

    changes = adapter("data_center").changed_since(datetime(2026, 11, 22, 18, 0, tzinfo=UTC))

    assert [c.incident_id for c in changes] == ["OPS-1", "OPS-2"]
    assert _query(remote.calls[0].request.url)["jql"].endswith(
        'updated >= "2026-11-22 18:00" ORDER BY key ASC'
    )


# --- webhooks -------------------------------------------------------------------------------------


def webhook(**overrides: Any) -> bytes:
    payload: dict[str, Any] = {
        "timestamp": 1536083559131,
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic",
        "user": {"accountId": "557058:ann", "displayName": "Ann"},
        "issue": issue(),
        "changelog": {
            "id": "10100",
            "items": [
                {"field": "status", "fromString": "To Do", "toString": "In Progress", "from": "1", "to": "3"}
            ],
        },
        **overrides,
    }
    return json.dumps(payload).encode()


def test_webhook_becomes_a_change_deduplicated_on_the_delivery_identifier() -> None:
    headers = {"x-atlassian-webhook-identifier": "delivery-1", "content-type": "application/json"}

    change = adapter().parse_callback(webhook(), headers)

    assert change.dedup_key == "delivery-1"
    assert (change.incident_id, change.correlation_id, change.status) == (
        KEY,
        CORRELATION,
        IncidentStatus.IN_PROGRESS,
    )
    assert (change.actor, change.assignee_team, change.by_us) == ("Ann", "Ann Agent", False)
    assert change.at == datetime.fromtimestamp(1536083559.131, tz=UTC)


def test_webhook_without_an_identifier_is_deduplicated_on_issue_and_time() -> None:
    assert adapter().parse_callback(webhook(), {}).dedup_key == "10002:1536083559131"


def test_webhook_of_our_own_change_is_an_echo(flavor: str) -> None:
    user = (
        {"accountId": ACCOUNT} if flavor == "cloud" else {"name": "svc-recoverlink", "key": "JIRAUSER10100"}
    )

    assert adapter(flavor).parse_callback(webhook(user=user), {}).by_us


def test_webhook_done_as_wont_fix_carries_the_resolution() -> None:
    done = issue(status="Done", category="done", resolution={"name": "Won't Fix"})

    change = adapter().parse_callback(webhook(issue=done), {})

    assert (change.status, change.resolution) == (IncidentStatus.RESOLVED, "Won't Fix")


def test_webhook_status_name_configured_wins_over_its_category() -> None:
    config = {"states": {"resolved": ["done"], "canceled": ["Canceled"]}}
    canceled = issue(status="Canceled", category="done")

    assert adapter(**config).parse_callback(webhook(issue=canceled), {}).status is IncidentStatus.CANCELED


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"webhookEvent": "jira:issue_deleted"}, "webhookEvent"),
        ({"issue": None}, "issue"),
        ({"issue": {"id": "1", "fields": {"status": {"name": "x"}}}}, "issue.key"),
        ({"issue": {"id": "1", "key": KEY, "fields": {"status": "Done"}}}, "issue.fields.status"),
        ({"issue": {"id": "1", "key": KEY}}, "issue.fields"),
        ({"timestamp": "yesterday"}, "timestamp"),
    ],
)
def test_webhook_with_a_missing_or_ill_typed_field_names_it(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(PayloadInvalid) as caught:
        adapter().parse_callback(webhook(**overrides), {})

    assert caught.value.field == field


def test_webhook_that_is_not_json_is_invalid() -> None:
    with pytest.raises(PayloadInvalid):
        adapter().parse_callback(b"<html>", {})


# --- check ----------------------------------------------------------------------------------------


def answer_myself(remote: responses.RequestsMock, flavor: str) -> None:
    me = {"accountId": ACCOUNT} if flavor == "cloud" else {"name": "svc-recoverlink", "key": "JIRAUSER10100"}
    remote.get(f"{api(flavor)}/myself", json={**me, "displayName": "recoverlink bot"})


def test_check_sees_credentials_user_project_type_and_transitions(
    remote: responses.RequestsMock, flavor: str
) -> None:
    answer_myself(remote, flavor)
    remote.get(
        f"{api(flavor)}/project/OPS", json={"id": "10000", "key": "OPS", "issueTypes": [{"name": "Incident"}]}
    )
    answer_search(remote, flavor, [issue()])
    remote.get(f"{api(flavor)}/issue/{KEY}/transitions", json=TRANSITIONS)

    findings = adapter(flavor, project="OPS").check()

    assert [(f.what, f.ok) for f in findings] == [
        ("jira credentials", True),
        ("jira api_user", True),
        ("jira project OPS", True),
        ("jira issue type", True),
        ("jira transition 'Done'", True),
    ]


def test_check_says_what_is_wrong(remote: responses.RequestsMock) -> None:
    answer_myself(remote, "cloud")
    remote.get(
        f"{api('cloud')}/project/OPS", json={"key": "OPS", "issueTypes": [{"name": "Task"}, {"name": "Bug"}]}
    )
    answer_search(remote, "cloud", [issue(status="Done", category="done")])
    remote.get(f"{api('cloud')}/issue/{KEY}/transitions", json=TRANSITIONS)

    findings = {f.what: f for f in adapter(project="OPS", api_user="557058:someone-else").check()}

    assert "is not the accountId the credentials log in as" in findings["jira api_user"].detail
    assert findings["jira issue type"].detail == "has no issue type 'Incident'; it has Task, Bug"
    reopen = findings["jira transition 'Reopen'"]
    assert not reopen.ok and reopen.detail == "OPS-154 (Done) offers only In Progress, Done"


def test_check_stops_when_the_credentials_are_refused(remote: responses.RequestsMock) -> None:
    remote.get(f"{api('cloud')}/myself", status=401, json={"errorMessages": ["Unauthorized"]})

    assert [(f.what, f.ok) for f in adapter().check()] == [("jira credentials", False)]


def test_check_before_any_issue_exists_says_transitions_wait(remote: responses.RequestsMock) -> None:
    answer_myself(remote, "cloud")
    answer_search(remote, "cloud", [])

    findings = adapter(api_user=None).check()

    assert [f.ok for f in findings] == [True, False, True, True]
    assert f"set itsm.jira.api_user to '{ACCOUNT}'" in findings[1].detail
    assert "checked once one exists" in findings[-1].detail
