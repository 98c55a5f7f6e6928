"""The served OpenAPI document is the contract of /api/v1: it names every route, and schemathesis finds
no generated request that gets a 5xx or an answer the document does not describe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from schemathesis import Case, GenerationMode
from schemathesis.checks import negative_data_rejection

from recoverlink.config.enrichment_loader import LoadedEnrichment
from recoverlink.domain.recovery_state import RecoveryEvent, RecoveryEventKind, TransitionSource, apply_event
from recoverlink.domain.tokens import Role
from recoverlink.store import recoveries
from recoverlink.store.engine import Store
from recoverlink.web import create_app
from tests.conftest import FakeClock, bearer, make_settings
from tests.integration.test_recoveries_api import Recoveries, example_enrichment

IGNORED_METHODS = {"HEAD", "OPTIONS"}
SEEDED = (1, 2, 3, 4)


@pytest.fixture(scope="module")
def loaded() -> LoadedEnrichment:
    return example_enrichment()


@pytest.fixture
def app(
    tmp_path: Path, store: Store, registry: CollectorRegistry, clock: FakeClock, loaded: LoadedEnrichment
) -> Flask:
    settings = make_settings(tmp_path, str(store.engine.url))
    return create_app(settings, store=store, registry=registry, clock=clock, environ={}, enrichment=loaded)


@pytest.fixture
def admin(store: Store, loaded: LoadedEnrichment, clock: FakeClock) -> dict[str, str]:
    """Seed recoveries in several states (ids 1..4) and return an admin token's header."""
    rec = Recoveries(store, loaded, clock)
    rec.seed_mix()
    rec.open_unrelated(1, prefix="canceled")
    with store.write() as conn:
        row = recoveries.load_row(conn, 4, for_update=True)
        canceled = RecoveryEvent(RecoveryEventKind.CANCELED, TransitionSource.OPERATOR)
        recoveries.save_transition(
            conn, row, apply_event(recoveries.status_of(row), canceled, clock()), "test"
        )
    return bearer(rec.token(Role.ADMIN))


def test_document_is_served_without_a_token_and_describes_every_api_route(app: Flask) -> None:
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json or {}
    assert document["openapi"].startswith("3.0")
    served = {
        (
            str(rule).replace("<int:recovery_id>", "{recovery_id}").replace("<int:job_id>", "{job_id}"),
            method.lower(),
        )
        for rule in app.url_map.iter_rules()
        if str(rule).startswith("/api/v1/")
        for method in (rule.methods or set()) - IGNORED_METHODS
    }
    described = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert served == described
    assert document["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    owner = document["components"]["schemas"]["RecoveryPatch"]["properties"]["owner"]
    assert {"payments", "crm", "sre"} <= set(owner["enum"]), "owners are the catalog's teams"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_generated_requests_get_no_5xx_and_answers_the_document_describes(
    app: Flask, admin: dict[str, str], mode: GenerationMode
) -> None:
    """Every operation, fuzzed with data the document allows (positive) and data it forbids (negative).

    schemathesis' own pytest plugin (`from_fixture`) breaks on pytest 9, so Hypothesis drives its
    strategies here; `call_and_validate` runs its default checks on each answer.
    """
    api = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    # Unknown query arguments are ignored, as HTTP APIs do; schemathesis counts them as invalid input.
    excluded = [negative_data_rejection] if mode is GenerationMode.NEGATIVE else []
    for result in api.get_all_operations():
        operation = result.ok()
        strategies = [operation.as_strategy(generation_mode=mode)]
        if "{recovery_id}" in operation.path:  # also fuzz the seeded recoveries, not only unknown ids
            seeded = [{"recovery_id": n} for n in SEEDED]
            strategies += [operation.as_strategy(generation_mode=mode, path_parameters=p) for p in seeded]

        @given(case=st.one_of(strategies))
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case: Case) -> None:
            case.call_and_validate(headers=admin, excluded_checks=excluded)

        check()


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/api/v1/recoveries?limit=%C2%B2", None),
        ("GET", "/api/v1/recoveries?service=a%00b&team=%00", None),
        ("GET", "/api/v1/recoveries?opened_after=0001-01-01T00:00:00%2B01:00", None),
        ("PATCH", "/api/v1/recoveries/1", {"workaround": "a\u0000b"}),
        ("GET", "/api/v1/alerts?fingerprint=a%00b", None),
        ("GET", "/api/v1/alerts?cursor=%C2%B2", None),
        (
            "POST",
            "/api/v1/explain",
            {
                "version": "4",
                "status": "firing",
                "alerts": [
                    {
                        "status": "firing",
                        "labels": {},
                        "startsAt": "0001-01-01T00:00:00+01:00",
                        "fingerprint": "f",
                    }
                ],
            },
        ),
    ],
)
def test_odd_input_is_never_a_5xx(
    app: Flask, store: Store, admin: dict[str, str], *, method: str, url: str, body: Any
) -> None:
    """Inputs that Hypothesis rarely draws but that once answered 500 (a non-ASCII digit, NUL for
    PostgreSQL, a time that overflows when converted to UTC)."""
    response = app.test_client().open(url, method=method, json=body, headers=admin)
    assert 200 <= response.status_code < 500, response.json
