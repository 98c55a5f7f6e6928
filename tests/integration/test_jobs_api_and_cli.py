"""Operators and the outbox: `/api/v1/jobs` (admin only) and `recoverlink jobs list|show|retry|discard`.

Jobs 1-3 are the fake handler's (dead, done, pending, no recovery); jobs 4 and 5 are the impact
lookups that opening recoveries 1 and 2 from captured Alertmanager payloads enqueued."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from werkzeug.test import TestResponse

from recoverlink.cli import main
from recoverlink.config.enrichment_loader import LoadedEnrichment
from recoverlink.domain.outbox import JobState
from recoverlink.domain.tokens import Role
from recoverlink.job_operations import job_record
from recoverlink.store.engine import Store
from recoverlink.store.schema import audit_events
from recoverlink.store.tokens import register_token
from recoverlink.web import create_app
from tests.conftest import FakeClock, bearer, make_settings
from tests.integration.test_recoveries_api import Recoveries, example_enrichment
from tests.support.outbox import ECHO, Jobs

OTHER = "fake.other"
LOOKUP = "impact.lookup"
DEAD, DONE, PENDING, LOOKUP_1, LOOKUP_2 = 1, 2, 3, 4, 5
# Refusals that come before any query but the token's: one backend is enough (and a second database
# per case costs most of the file's runtime).
SQLITE_ONLY = pytest.mark.parametrize("store", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def loaded() -> LoadedEnrichment:
    return example_enrichment()


@pytest.fixture
def jobs(store: Store, clock: FakeClock, loaded: LoadedEnrichment) -> Jobs:
    """The five jobs of the module docstring."""
    jobs = Jobs(store, clock)
    assert jobs.dead("echo-dead") == DEAD
    assert jobs.done("echo-done") == DONE
    assert jobs.add("other-pending", kind=OTHER) == PENDING
    recoveries = Recoveries(store, loaded, clock)
    recoveries.deliver("firing_single.json")
    recoveries.deliver("firing_group.json")
    assert [jobs.get(n).recovery_id for n in (LOOKUP_1, LOOKUP_2)] == [1, 2]
    return jobs


def audit_rows(store: Store, kind: str) -> list[dict[str, Any]]:
    query = select(audit_events).where(audit_events.c.kind == kind).order_by(audit_events.c.id)
    with store.read() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


# --- the API -----------------------------------------------------------------------------------


@pytest.fixture
def app(tmp_path: Path, store: Store, registry: CollectorRegistry, clock: FakeClock) -> Flask:
    settings = make_settings(tmp_path, str(store.engine.url))
    return create_app(settings, store=store, registry=registry, clock=clock, environ={})


def token(store: Store, clock: FakeClock, role: Role) -> str:
    value = f"rl_test_{role.value}"
    with store.write() as conn:
        register_token(conn, value, role, f"{role.value}-on-call", clock())
    return value


@pytest.fixture
def admin(jobs: Jobs) -> dict[str, str]:
    return bearer(token(jobs.store, jobs.clock, Role.ADMIN))


def error_of(response: TestResponse) -> dict[str, Any]:
    assert response.json is not None, response.data
    body: dict[str, Any] = response.json["error"]
    return body


def ids(response: TestResponse) -> list[int]:
    assert response.status_code == 200, response.json
    assert response.json is not None
    return [item["id"] for item in response.json["items"]]


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/api/v1/jobs"),
        ("GET", f"/api/v1/jobs/{DEAD}"),
        ("POST", f"/api/v1/jobs/{DEAD}/retry"),
        ("POST", f"/api/v1/jobs/{PENDING}/discard"),
    ],
)
def test_the_jobs_api_needs_an_admin_token(client: FlaskClient, jobs: Jobs, method: str, url: str) -> None:
    assert client.open(url, method=method).status_code == 401
    for role in (Role.VIEWER, Role.OPERATOR):
        response = client.open(url, method=method, headers=bearer(token(jobs.store, jobs.clock, role)))
        assert (response.status_code, error_of(response)["code"]) == (403, "forbidden")
    assert (jobs.get(DEAD).state, jobs.get(PENDING).state) == (JobState.DEAD, JobState.PENDING)


def test_list_shows_every_job_newest_first(client: FlaskClient, admin: dict[str, str]) -> None:
    response = client.get("/api/v1/jobs", headers=admin)
    assert ids(response) == [LOOKUP_2, LOOKUP_1, PENDING, DONE, DEAD]
    assert response.json is not None
    assert response.json["next_cursor"] is None
    dead = response.json["items"][-1]
    assert (dead["kind"], dead["state"], dead["attempts"], dead["max_attempts"]) == (ECHO, "dead", 1, 3)
    assert (dead["last_reason"], dead["recovery_id"], dead["payload"]) == (
        "bad_request",
        None,
        {"key": "echo-dead"},
    )
    assert dead["last_error"] == "400 Bad Request [not retryable (bad_request)]"


FILTERS = [
    ("state=dead", [DEAD]),
    ("state=dead,done", [DONE, DEAD]),
    ("state=pending&state=done", [LOOKUP_2, LOOKUP_1, PENDING, DONE]),
    (f"kind={LOOKUP}", [LOOKUP_2, LOOKUP_1]),
    (f"kind={ECHO}&state=pending", []),
    ("recovery_id=1", [LOOKUP_1]),
    (f"recovery_id=2&kind={LOOKUP}&state=pending", [LOOKUP_2]),
    ("recovery_id=3", []),
]


def test_list_filters_by_state_kind_and_recovery(client: FlaskClient, admin: dict[str, str]) -> None:
    answered = {query: ids(client.get(f"/api/v1/jobs?{query}", headers=admin)) for query, _ in FILTERS}
    assert answered == dict(FILTERS)


def test_pages_follow_the_cursor_to_the_oldest_job(client: FlaskClient, admin: dict[str, str]) -> None:
    pages, url = [], "/api/v1/jobs?limit=2"
    while url:
        response = client.get(url, headers=admin)
        pages.append(ids(response))
        assert response.json is not None
        cursor = response.json["next_cursor"]
        url = f"/api/v1/jobs?limit=2&cursor={cursor}" if cursor is not None else ""
    assert pages == [[LOOKUP_2, LOOKUP_1], [PENDING, DONE], [DEAD]]


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=dead,buried", "state"),
        ("kind=", "kind"),
        ("kind=" + "k" * 65, "kind"),
        ("recovery_id=one", "recovery_id"),
        ("recovery_id=0", "recovery_id"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("cursor=-3", "cursor"),
    ],
)
def test_bad_filter_values_are_400_naming_the_field(
    client: FlaskClient, admin: dict[str, str], query: str, field: str
) -> None:
    response = client.get(f"/api/v1/jobs?{query}", headers=admin)
    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["field"]) == ("payload-invalid", field)


def test_show_answers_one_job_whole(client: FlaskClient, jobs: Jobs, admin: dict[str, str]) -> None:
    response = client.get(f"/api/v1/jobs/{LOOKUP_1}", headers=admin)
    assert response.status_code == 200
    assert response.json == job_record(jobs.get(LOOKUP_1))
    assert response.json["idempotency_key"] == "impact.lookup/1/checkout-failures/0"


@SQLITE_ONLY
@pytest.mark.parametrize(("method", "action"), [("GET", ""), ("POST", "/retry"), ("POST", "/discard")])
def test_an_unknown_job_is_404(client: FlaskClient, admin: dict[str, str], method: str, action: str) -> None:
    response = client.open(f"/api/v1/jobs/999{action}", method=method, headers=admin)
    assert (response.status_code, error_of(response)["code"]) == (404, "not-found")
    assert error_of(response)["message"] == "job 999 not found"


def test_retrying_a_dead_job_makes_it_due_now_with_fresh_attempts_and_an_audit_entry(
    client: FlaskClient, jobs: Jobs, admin: dict[str, str]
) -> None:
    jobs.clock.now = jobs.clock.now.replace(hour=19)
    response = client.post(f"/api/v1/jobs/{DEAD}/retry", headers=admin)
    assert response.status_code == 200, response.json
    assert response.json is not None
    assert (response.json["state"], response.json["attempts"]) == ("pending", 0)
    assert response.json["due_at"] == jobs.clock().isoformat()
    (entry,) = audit_rows(jobs.store, "job_retried")
    assert (entry["actor"], entry["source"], entry["recovery_id"]) == ("admin-on-call", "operator", None)
    assert entry["details"] == {
        "job_id": DEAD,
        "job_kind": ECHO,
        "last_error": "400 Bad Request [not retryable (bad_request)]",
    }
    assert DEAD in [job.id for job in jobs.claim()], "due now, and claimable"


def test_retrying_a_done_job_is_409_naming_the_states_a_retry_is_allowed_in(
    client: FlaskClient, jobs: Jobs, admin: dict[str, str]
) -> None:
    response = client.post(f"/api/v1/jobs/{DONE}/retry", headers=admin)
    assert response.status_code == 409
    error = error_of(response)
    assert (error["code"], error["current"], error["allowed"]) == (
        "job-state-conflict",
        "done",
        ["dead", "discarded", "pending"],
    )
    assert (
        error["message"]
        == f"job {DONE} is done: only a job that is dead or discarded or pending can be retried"
    )
    assert jobs.get(DONE).state is JobState.DONE
    assert audit_rows(jobs.store, "job_retried") == []


def test_discarding_a_job_keeps_it_marked_discarded_with_an_audit_entry_on_its_recovery(
    client: FlaskClient, jobs: Jobs, admin: dict[str, str]
) -> None:
    response = client.post(f"/api/v1/jobs/{LOOKUP_1}/discard", headers=admin)
    assert response.status_code == 200, response.json
    assert response.json is not None
    assert (response.json["state"], response.json["finished_at"]) == ("discarded", jobs.clock().isoformat())
    (entry,) = audit_rows(jobs.store, "job_discarded")
    assert (entry["recovery_id"], entry["details"]["job_id"]) == (1, LOOKUP_1)
    again = client.post(f"/api/v1/jobs/{LOOKUP_1}/discard", headers=admin)
    assert (again.status_code, error_of(again)["allowed"]) == (409, ["pending", "running", "dead"])


# --- the CLI (SQLite) --------------------------------------------------------------------------


@pytest.fixture
def sqlite_jobs(sqlite_store: Store, clock: FakeClock) -> Jobs:
    jobs = Jobs(sqlite_store, clock)
    jobs.dead("echo-dead")
    jobs.done("echo-done")
    jobs.add("other-pending", kind=OTHER)
    return jobs


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "recoverlink.yaml"
    path.write_text("webhook:\n  auth:\n    bearer: {env: RL_TEST_TOKEN}\n")
    return path


def cli(jobs: Jobs, config_file: Path, *args: str) -> tuple[int, str, str]:
    url = jobs.store.engine.url.render_as_string(hide_password=False)
    argv = ["jobs", args[0], "--config", str(config_file), *args[1:]]
    result = CliRunner().invoke(main, argv, env={"RECOVERLINK_DATABASE_URL": url})
    return result.exit_code, result.stdout, result.stderr


def test_cli_list_prints_a_table_of_jobs_newest_first(sqlite_jobs: Jobs, config_file: Path) -> None:
    code, out, err = cli(sqlite_jobs, config_file, "list")
    assert code == 0, err
    header, *rows = [line.split() for line in out.splitlines()]
    assert header == ["ID", "KIND", "STATE", "RECOVERY", "ATTEMPTS", "DUE", "(UTC)", "LAST", "ERROR"]
    assert [row[:5] for row in rows] == [
        ["3", OTHER, "pending", "-", "0/3"],
        ["2", ECHO, "done", "-", "1/3"],
        ["1", ECHO, "dead", "-", "1/3"],
    ]
    assert rows[0][5:7] == ["2026-11-22", "18:10:00Z"]
    assert rows[2][5] == "-", "a finished job is due nowhere"
    assert " ".join(rows[2][6:]) == "400 Bad Request [not retryable (bad_request)]"


def test_cli_list_filters_and_prints_json_as_the_api_does(sqlite_jobs: Jobs, config_file: Path) -> None:
    code, out, err = cli(sqlite_jobs, config_file, "list", "--state", "dead", "--state", "done", "--json")
    assert code == 0, err
    items = json.loads(out)["items"]
    assert items == [job_record(sqlite_jobs.get(DONE)), job_record(sqlite_jobs.get(DEAD))]
    _, out, _ = cli(sqlite_jobs, config_file, "list", "--kind", "impact.verify")
    assert out.strip() == "no jobs match"


def test_cli_show_prints_one_job_as_json(sqlite_jobs: Jobs, config_file: Path) -> None:
    code, out, err = cli(sqlite_jobs, config_file, "show", str(PENDING))
    assert code == 0, err
    assert json.loads(out) == job_record(sqlite_jobs.get(PENDING))


def test_cli_retry_makes_a_dead_job_due_and_discard_gives_up_on_one(
    sqlite_jobs: Jobs, config_file: Path
) -> None:
    code, out, err = cli(sqlite_jobs, config_file, "retry", str(DEAD))
    assert (code, out.strip()) == (0, f"job {DEAD} ({ECHO}) is due now"), err
    retried = sqlite_jobs.get(DEAD)
    assert (retried.state, retried.attempts) == (JobState.PENDING, 0)
    code, out, err = cli(sqlite_jobs, config_file, "discard", str(PENDING))
    assert (code, out.strip()) == (0, f"job {PENDING} ({OTHER}) discarded"), err
    assert sqlite_jobs.get(PENDING).state is JobState.DISCARDED
    actors = {row["actor"] for row in audit_rows(sqlite_jobs.store, "job_retried")}
    actors |= {row["actor"] for row in audit_rows(sqlite_jobs.store, "job_discarded")}
    assert len(actors) == 1
    assert actors.pop().startswith("cli")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "999"), "error: job 999 not found"),
        (("retry", "999"), "error: job 999 not found"),
        (("discard", "999"), "error: job 999 not found"),
        (("retry", str(DONE)), f"error: job {DONE} is done: only a job that is dead or discarded or pending"),
        (("discard", str(DONE)), f"error: job {DONE} is done: only a job that is pending or running or dead"),
    ],
)
def test_cli_fails_with_an_error_line_for_an_unknown_job_or_a_refused_change(
    sqlite_jobs: Jobs, config_file: Path, args: tuple[str, ...], message: str
) -> None:
    code, out, err = cli(sqlite_jobs, config_file, *args)
    assert (code, out) == (1, "")
    (line,) = err.splitlines()
    assert line.startswith(message)
    assert sqlite_jobs.get(DONE).state is JobState.DONE
