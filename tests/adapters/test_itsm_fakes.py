"""The ServiceNow and Jira adapters end to end against contract-faithful fakes on real sockets.

Each fake (`tests/support/fake_servicenow.py`, `fake_jira.py`) keeps records in memory and answers
as the documentation says; these tests walk an incident through its life and spring the classic
duplicate trap: the create times out after the ITSM stored the record, and the retry must find
it instead of creating a second one.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests

from recoverlink.adapters.itsm.jira import JiraAdapter
from recoverlink.adapters.itsm.servicenow import ServiceNowAdapter
from recoverlink.config.itsm import JiraConfig, JiraTransitions, ServiceNowConfig
from recoverlink.domain.catalog import ItsmRouting
from recoverlink.domain.errors import ItsmError
from recoverlink.domain.itsm import IncidentDraft, IncidentLink, IncidentStatus, ItsmAdapter
from recoverlink.domain.rules import ResolutionPolicy
from tests.conftest import FakeClock
from tests.support.fake_jira import FakeJira
from tests.support.fake_servicenow import FakeServiceNow

CORRELATION = "recoverlink:rec-193"
TIMEOUT_SECONDS = 0.3  # the late create answers after 5 s; the client gives up long before


def draft(system: str) -> IncidentDraft:
    routing = ItsmRouting(system=system, assignment_group="Payments Ops", project="OPS")
    return IncidentDraft(CORRELATION, "payments-api degraded", "Checkout failing.", "P2", 1, 2, routing)


def open_once(adapter: ItsmAdapter, incident: IncidentDraft) -> IncidentLink:
    """What the worker does for `itsm.open_incident`: search first, create only when nothing is found."""
    return adapter.find_incident(incident.correlation_id) or adapter.create_incident(incident)


# --- ServiceNow ----------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def servicenow(clock: FakeClock) -> Iterator[tuple[FakeServiceNow, ServiceNowAdapter]]:
    fake = FakeServiceNow(clock=clock)
    with fake.serve() as url:
        config = ServiceNowConfig.model_validate(
            {
                "url": url,
                "timeout_seconds": TIMEOUT_SECONDS,
                "auth": {"basic": {"username": fake.user, "password": {"env": "SN_PASSWORD"}}},
            }
        )
        adapter = ServiceNowAdapter.from_config(
            config, {"SN_PASSWORD": fake.password}, requests.Session(), clock
        )
        yield fake, adapter


def test_servicenow_incident_from_open_to_reopen(
    servicenow: tuple[FakeServiceNow, ServiceNowAdapter],
) -> None:
    fake, adapter = servicenow

    link = open_once(adapter, draft("servicenow"))
    assert adapter.find_incident(CORRELATION) == link
    (stored,) = fake.incidents_with(CORRELATION)
    assert (stored["number"], stored["assignment_group"], stored["priority"]) == (
        link.number,
        fake.groups["Payments Ops"],
        "2",
    )

    adapter.add_note(link, "Impact: 3 journeys")
    assert adapter.resolve_incident(link, ResolutionPolicy.CLOSE, "Recovered") is IncidentStatus.RESOLVED
    resolved = adapter.read_incident(link)
    assert (resolved.status, resolved.resolution, resolved.by_us) == (
        IncidentStatus.RESOLVED,
        "Solved (Permanently)",
        True,
    )
    assert resolved.assignee_team == "Payments Ops" and resolved.sequence == 2

    adapter.reopen_incident(link, "Fired again")
    reopened = adapter.read_incident(link)
    assert (reopened.status, reopened.sequence) == (IncidentStatus.IN_PROGRESS, 3)
    assert fake.notes_of(link.id) == ["Impact: 3 journeys", "Fired again"]


def test_servicenow_create_that_timed_out_is_found_by_the_retry_not_made_twice(
    servicenow: tuple[FakeServiceNow, ServiceNowAdapter],
) -> None:
    fake, adapter = servicenow
    fake.time_out_next_create()

    with pytest.raises(ItsmError) as caught:
        open_once(adapter, draft("servicenow"))
    assert (caught.value.retryable, caught.value.reason) == (True, "timeout")

    retried = open_once(adapter, draft("servicenow"))

    (stored,) = fake.incidents_with(CORRELATION)
    assert retried.id == stored["sys_id"]
    assert [method for method, _ in fake.calls] == ["GET", "POST", "GET"]


def test_servicenow_asleep_or_throttled_is_retried_and_then_works(
    servicenow: tuple[FakeServiceNow, ServiceNowAdapter],
) -> None:
    fake, adapter = servicenow
    fake.fail_next(1, "hibernate")
    fake.fail_next(1, "429")
    fake.fail_next(1, "503")

    failures = [_failure(lambda: adapter.find_incident(CORRELATION)) for _ in range(3)]

    assert [(e.reason, e.retryable) for e in failures] == [
        ("not_json", True),
        ("http_429", True),
        ("http_503", True),
    ]
    assert failures[1].retry_after_seconds == 2.0
    assert adapter.find_incident(CORRELATION) is None


def test_servicenow_poll_sees_a_persons_change_and_skips_old_ones(
    servicenow: tuple[FakeServiceNow, ServiceNowAdapter], clock: FakeClock
) -> None:
    fake, adapter = servicenow
    link = open_once(adapter, draft("servicenow"))
    since = clock.now + timedelta(minutes=5)
    clock.now = since + timedelta(minutes=1)
    fake.set_state(link.id, "2", by="ann.agent")

    (change,) = adapter.changed_since(since)

    assert (change.incident_id, change.status, change.by_us, change.actor) == (
        link.id,
        IncidentStatus.IN_PROGRESS,
        False,
        "ann.agent",
    )
    assert adapter.changed_since(clock.now + timedelta(seconds=1)) == []


def test_servicenow_check_passes_on_a_default_instance(
    servicenow: tuple[FakeServiceNow, ServiceNowAdapter],
) -> None:
    _, adapter = servicenow

    findings = adapter.check()

    assert all(f.ok for f in findings), findings


def test_servicenow_fake_is_a_wsgi_app_for_the_flask_test_client() -> None:
    fake = FakeServiceNow()
    client = fake.app.test_client()

    refused = client.get("/api/now/table/incident", headers={"Accept": "application/json"})

    assert refused.status_code == 401 and refused.json is not None
    assert refused.json["error"]["message"] == "User Not Authenticated"


# --- Jira ----------------------------------------------------------------------------------------


@pytest.fixture(params=["cloud", "data_center"])
def jira(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[tuple[FakeJira, JiraAdapter]]:
    flavor = str(request.param)
    fake = FakeJira(
        flavor=flavor, user="bot@example.com" if flavor == "cloud" else "svc-recoverlink", clock=clock
    )
    with fake.serve() as url:
        config = JiraConfig.model_validate(
            {
                "url": url,
                "flavor": flavor,
                "timeout_seconds": TIMEOUT_SECONDS,
                "auth": {"basic": {"username": fake.user, "password": {"env": "JIRA_TOKEN"}}},
                **({"api_user": fake.account_id} if flavor == "cloud" else {}),
            }
        )
        adapter = JiraAdapter.from_config(config, {"JIRA_TOKEN": fake.token}, requests.Session(), clock)
        yield fake, adapter


def test_jira_issue_from_open_to_reopen(jira: tuple[FakeJira, JiraAdapter]) -> None:
    fake, adapter = jira

    link = open_once(adapter, draft("jira"))
    assert adapter.find_incident(CORRELATION) == link
    (stored,) = fake.issues_labelled("rl-rec-193")
    assert stored["properties"]["recoverlink"] == {"correlation_id": CORRELATION}
    assert (stored["labels"], stored["priority"]) == (["recoverlink", "rl-rec-193"], "High")

    adapter.add_note(link, "Impact: 3 journeys")
    assert adapter.resolve_incident(link, ResolutionPolicy.CLOSE, "Recovered") is IncidentStatus.RESOLVED
    resolved = adapter.read_incident(link)
    assert (resolved.status, resolved.raw_status, resolved.resolution) == (
        IncidentStatus.RESOLVED,
        "Done",
        "Done",
    )

    adapter.reopen_incident(link, "Fired again")
    assert adapter.read_incident(link).status is IncidentStatus.NEW
    assert len(stored["comments"]) == 3


def test_jira_create_that_timed_out_is_found_by_the_retry_not_made_twice(
    jira: tuple[FakeJira, JiraAdapter],
) -> None:
    fake, adapter = jira
    fake.time_out_next_create()

    with pytest.raises(ItsmError) as caught:
        open_once(adapter, draft("jira"))
    assert (caught.value.retryable, caught.value.reason) == (True, "timeout")

    retried = open_once(adapter, draft("jira"))

    (stored,) = fake.issues_labelled("rl-rec-193")
    assert retried.id == stored["key"]


def test_jira_wont_fix_is_never_reopened(jira: tuple[FakeJira, JiraAdapter]) -> None:
    fake, adapter = jira
    link = open_once(adapter, draft("jira"))
    fake.move(link.id, "Done", "Won't Fix")

    adapter.reopen_incident(link, "Fired again")

    change = adapter.read_incident(link)
    assert (change.status, change.resolution) == (IncidentStatus.RESOLVED, "Won't Fix")


def test_jira_missing_transition_names_what_the_workflow_offers(jira: tuple[FakeJira, JiraAdapter]) -> None:
    _, adapter = jira
    link = open_once(adapter, draft("jira"))

    error = _failure(lambda: adapter.resolve_incident(link, ResolutionPolicy.MONITOR, "Watching"))
    assert error.reason == "no_transition"

    adapter_with = JiraAdapter(
        adapter.config.model_copy(update={"transitions": JiraTransitions(monitor="Watch")}), adapter.caller
    )
    error = _failure(lambda: adapter_with.resolve_incident(link, ResolutionPolicy.MONITOR, "Watching"))
    assert "it offers 'In Progress', 'Done', 'Monitor'" in str(error)


def test_jira_poll_and_check_see_our_issues(jira: tuple[FakeJira, JiraAdapter], clock: FakeClock) -> None:
    fake, adapter = jira
    link = open_once(adapter, draft("jira"))
    clock.now += timedelta(minutes=3)
    fake.move(link.id, "In Progress")

    (change,) = adapter.changed_since(clock.now - timedelta(minutes=1))
    findings = JiraAdapter(adapter.config.model_copy(update={"project": "OPS"}), adapter.caller).check()

    assert (change.incident_id, change.status) == (link.id, IncidentStatus.IN_PROGRESS)
    assert adapter.changed_since(clock.now + timedelta(minutes=1)) == []
    assert all(f.ok for f in findings), findings


def test_jira_throttled_then_answers(jira: tuple[FakeJira, JiraAdapter]) -> None:
    fake, adapter = jira
    fake.fail_next(1, "429")
    fake.fail_next(1, "hibernate")

    assert _failure(lambda: adapter.find_incident(CORRELATION)).retry_after_seconds == 2.0
    assert _failure(lambda: adapter.find_incident(CORRELATION)).reason == "not_json"
    assert adapter.find_incident(CORRELATION) is None


def test_jira_fake_is_a_wsgi_app_for_the_flask_test_client() -> None:
    client = FakeJira(flavor="cloud").app.test_client()

    unbounded = client.post(
        "/rest/api/3/search/jql",
        json={"jql": "ORDER BY created"},
        headers={"Authorization": _basic("bot@example.com")},
    )
    legacy = client.get("/rest/api/2/search", headers={"Authorization": _basic("bot@example.com")})

    assert unbounded.status_code == 400 and legacy.status_code == 404


def _basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{FakeJira().token}".encode()).decode()


def _failure(call: Any) -> ItsmError:
    with pytest.raises(ItsmError) as caught:
        call()
    return caught.value
