"""Fuzzing where the existing suites do not: the ITSM callbacks (`POST /webhook/itsm/<system>`) with
the real ServiceNow, Jira and RT adapters, and the jobs API on jobs that exist, in every state. Zero
5xx, on SQLite and PostgreSQL (NUL bytes and odd numbers reach PostgreSQL differently).

The Alertmanager webhook's payload fuzzing is tests/integration/test_webhook_http.py and the whole
API's schemathesis contract is tests/integration/test_openapi_contract.py; neither is repeated here.
Callbacks are authenticated (the right secret), so the bodies reach the adapters and the store; a
few known incident ids make some of them match a linked recovery.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from schemathesis import Case, GenerationMode
from schemathesis.checks import negative_data_rejection

from recoverlink.config.loader import Settings
from recoverlink.config.model import Config
from recoverlink.domain.itsm import IncidentLink
from recoverlink.domain.recovery_state import new_recovery_status
from recoverlink.domain.tokens import Role
from recoverlink.job_operations import discard_job
from recoverlink.store import incidents
from recoverlink.store import recoveries as recovery_store
from recoverlink.store.engine import Store
from recoverlink.store.recoveries import NewRecovery
from recoverlink.store.tokens import register_token
from recoverlink.web import create_app
from tests.conftest import WEBHOOK_TOKEN, FakeClock, make_settings
from tests.support.outbox import Jobs

pytestmark = pytest.mark.reliability

SECRETS = {
    "servicenow": "sn-fuzz-secret-0123456789",
    "jira": "jira-fuzz-secret-0123",
    "rt": "rt-fuzz-secret-0123",
}
# The incident each system's linked recovery has: some generated callbacks name it.
LINKED = {"servicenow": "0f3e8f6a1b2c3d4e5f60718293a4b5c6", "jira": "OPS-7", "rt": "42"}
ANSWERS = {"applied", "duplicate", "stale", "echo", "unknown_incident"}
EXAMPLES = 150
JOB_IDS = (1, 2, 3, 4, 5)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
odd_text = st.text(max_size=30)  # NUL, surrogates' neighbours, RTL marks: whatever Hypothesis draws


def shaped(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A document with every field a real ITSM sends (each drawn from `fields`), then up to two fields
    replaced by odd values and up to two left out: most bodies get past parsing to the store."""
    names = sorted(fields)

    def mutate(parts: tuple[dict[str, Any], dict[str, Any], set[str]]) -> dict[str, Any]:
        base, odd, dropped = parts
        return {k: v for k, v in {**base, **odd}.items() if k not in dropped}

    odd = st.dictionaries(st.sampled_from(names), odd_text | json_values, max_size=2)
    dropped = st.sets(st.sampled_from(names), max_size=2)
    return st.tuples(st.fixed_dictionaries(fields), odd, dropped).map(mutate)


def one_of(*values: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


servicenow_bodies = shaped(
    source=one_of("servicenow"),
    event=one_of("incident.updated", "incident.inserted"),
    sys_id=one_of(LINKED["servicenow"], LINKED["servicenow"], "a" * 32),
    number=one_of("INC0010001"),
    correlation_id=one_of("recoverlink:rec-1", "recoverlink:rec-999", ""),
    state=one_of("1", "2", "3", "6", "7", "8", "99"),
    previous_state=one_of("1", "2"),
    assignment_group=one_of("Payments Ops", ""),
    assigned_to=one_of("Ann Agent", ""),
    close_code=one_of("Solved (Permanently)", ""),
    close_notes=one_of("fixed", ""),
    updated_at=one_of("2026-12-01 08:05:00", "2026-11-30 23:59:59", "0001-01-01 00:00:00"),
    mod_count=st.integers(0, 10**20).map(str),
    updated_by=one_of("ann.agent", "recoverlink"),
)
jira_bodies = shaped(
    timestamp=st.integers(0, 2_000_000_000_000),
    webhookEvent=one_of("jira:issue_updated"),
    issue_event_type_name=one_of("issue_generic", "issue_assigned"),
    user=shaped(accountId=one_of("557058:ann", "recoverlink-bot"), displayName=one_of("Ann")),
    issue=shaped(
        id=one_of("10007"),
        key=one_of(LINKED["jira"], LINKED["jira"], "OPS-8"),
        fields=shaped(
            status=shaped(
                name=one_of("In Progress", "Done", "To Do", "Won't Do"),
                statusCategory=shaped(key=one_of("new", "indeterminate", "done")),
            ),
            labels=st.lists(one_of("recoverlink", "rl-rec-2", "rl-rec-999"), max_size=3),
            resolution=st.none() | shaped(name=one_of("Done", "Won't Do")),
            assignee=st.none() | shaped(displayName=one_of("Ann")),
        ),
    ),
    changelog=shaped(id=one_of("1"), items=st.lists(json_values, max_size=2)),
)
rt_bodies = shaped(
    source=one_of("rt"),
    ticket_id=one_of(int(LINKED["rt"]), LINKED["rt"], 43),
    transaction_id=st.integers(1, 2**70) | st.integers(1, 10**6).map(str),
    status=one_of("new", "open", "stalled", "resolved", "rejected", "deleted"),
    old_status=one_of("new", "open"),
    owner=one_of("Nobody", "root"),
    creator=one_of("root", "recoverlink"),
    correlation_id=one_of("recoverlink:rec-3", ""),
    updated_at=one_of("2026-12-01T08:05:00Z", "2026-12-01T08:05:00+01:00", "2026-12-01 08:05:00"),
)
BODIES = {"servicenow": servicenow_bodies, "jira": jira_bodies, "rt": rt_bodies}


def _settings(tmp_path: Path, database_url: str) -> Settings:
    files = {}
    for name, secret in {"webhook": WEBHOOK_TOKEN, "password": "pw", **SECRETS}.items():
        path = tmp_path / f"{name}.secret"
        path.write_text(secret)
        files[name] = {"file": str(path)}
    auth = {"basic": {"username": "recoverlink", "password": files["password"]}}
    systems = {
        "servicenow": {"url": "https://sn.invalid"},
        "jira": {"url": "https://jira.invalid", "flavor": "cloud", "project": "OPS"},
        "rt": {"url": "https://rt.invalid"},
    }
    config = Config.model_validate(
        {
            "webhook": {"auth": {"bearer": files["webhook"]}},
            "database": {"sqlite_path": str(tmp_path / "recoverlink.db")},
            "itsm": {
                "default": "servicenow",
                **{
                    name: {**system, "auth": auth, "callback_secret": files[name]}
                    for name, system in systems.items()
                },
            },
        }
    )
    return Settings(config=config, config_path=tmp_path / "config.yaml", database_url=database_url, listen="")


def _link_recoveries(store: Store, clock: FakeClock) -> None:
    """Recoveries 1-3, each with an incident in one system."""
    for system, incident_id in LINKED.items():
        status = new_recovery_status(clock(), itsm_configured=True, resolution_closes_incident=True)
        new = NewRecovery(
            correlation_key=f"fuzz/{system}",
            title=f"{system} fuzz",
            service="payments-api",
            service_ref=None,
            team="payments",
            priority="P2",
            resolution_policy="close",
            reopen_window=timedelta(hours=1),
            linked_to=None,
            storm=False,
            itsm_system=system,
        )
        with store.write() as conn:
            recovery_id = recovery_store.open_recovery(conn, new, status, clock())
            assert recovery_id is not None
            link = IncidentLink(system, incident_id, incident_id)
            incidents.link_incident(conn, recovery_id, link, "new", clock())


@pytest.fixture
def callback_client(
    tmp_path: Path, store: Store, registry: CollectorRegistry, clock: FakeClock
) -> FlaskClient:
    """The app with the real adapters of all three systems, and a linked recovery for each."""
    app = create_app(_settings(tmp_path, str(store.engine.url)), store=store, registry=registry, clock=clock)
    _link_recoveries(store, clock)
    return app.test_client()


def _post(client: FlaskClient, system: str, body: bytes, headers: dict[str, str] | None = None) -> None:
    all_headers = {"Authorization": f"Bearer {SECRETS[system]}", "Content-Type": "application/json"}
    answer = client.post(f"/webhook/itsm/{system}", data=body, headers={**all_headers, **(headers or {})})
    assert answer.status_code < 500, (system, body, answer.status_code, answer.json)
    assert answer.is_json, answer.data
    if answer.status_code == 200:
        assert answer.json is not None and answer.json["status"] in ANSWERS, answer.json
    else:
        assert answer.status_code == 400, (answer.status_code, answer.json)


@pytest.mark.parametrize("system", sorted(BODIES))
def test_callbacks_shaped_like_each_itsm_never_get_a_5xx(callback_client: FlaskClient, system: str) -> None:
    """Bodies shaped like the system's callback, every field sometimes odd or of the wrong type: each
    answer is 200 with a known outcome or a JSON 400, never a 5xx."""

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(body=BODIES[system], delivery=st.none() | odd_text)
    def check(body: dict[str, Any], delivery: str | None) -> None:
        headers = {"X-Atlassian-Webhook-Identifier": delivery} if delivery and system == "jira" else {}
        _post(callback_client, system, json.dumps(body).encode(), _latin1_only(headers))

    check()


@pytest.mark.parametrize("system", sorted(BODIES))
def test_random_json_and_bytes_to_each_itsm_callback_never_get_a_5xx(
    callback_client: FlaskClient, system: str
) -> None:
    """Any JSON document, and any bytes at all, authenticated: a JSON 400 (or a 200), never a 5xx."""

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(body=json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=300))
    def check(body: bytes) -> None:
        _post(callback_client, system, body)

    check()


def _latin1_only(headers: dict[str, str]) -> dict[str, str]:
    """HTTP header values are bytes; what a client cannot even send is left out."""
    kept = {}
    for name, text in headers.items():
        try:
            text.encode("latin-1")
        except UnicodeEncodeError:
            continue
        if text.isprintable() and text.strip() == text:
            kept[name] = text
    return kept


# --- the jobs API on real jobs ------------------------------------------------------------------


@pytest.fixture
def jobs_app(tmp_path: Path, store: Store, registry: CollectorRegistry, clock: FakeClock) -> Flask:
    settings = make_settings(tmp_path, str(store.engine.url))
    return create_app(settings, store=store, registry=registry, clock=clock, environ={})


@pytest.fixture
def admin(store: Store, clock: FakeClock) -> dict[str, str]:
    """Jobs 1-5 in every state a job can be in: dead, done, running, pending, discarded."""
    jobs = Jobs(store, clock)
    jobs.dead("fuzz-dead")
    jobs.done("fuzz-done")
    jobs.claim_only(jobs.add("fuzz-running"))
    jobs.add("fuzz-pending")
    discard_job(store, jobs.add("fuzz-discarded"), clock(), "fuzz", "operator")
    assert [jobs.get(n).state for n in JOB_IDS] == ["dead", "done", "running", "pending", "discarded"]
    with store.write() as conn:
        register_token(conn, "rl_fuzz_admin", Role.ADMIN, "fuzz-admin", clock())
    return {"Authorization": "Bearer rl_fuzz_admin"}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_the_jobs_api_on_jobs_in_every_state_never_gets_a_5xx(
    jobs_app: Flask, admin: dict[str, str], mode: GenerationMode
) -> None:
    """schemathesis on every /api/v1/jobs operation with the ids of jobs that exist in each state
    (the contract test's generated ids almost never name one), repeatedly: retry and discard change
    the state, so later examples meet jobs in states the seed did not make."""
    api = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", jobs_app)
    excluded = [negative_data_rejection] if mode is GenerationMode.NEGATIVE else []
    for result in api.get_all_operations():
        operation = result.ok()
        if "{job_id}" not in operation.path:
            continue
        strategies = [
            operation.as_strategy(generation_mode=mode, path_parameters={"job_id": job_id})
            for job_id in JOB_IDS
        ]

        @given(case=st.one_of(strategies))
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case: Case) -> None:
            case.call_and_validate(headers=admin, excluded_checks=excluded)

        check()
