"""POST /webhook/alertmanager over HTTP: statuses, JSON errors and metrics for every kind of input."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.conftest import basic, bearer, fixture_body

URL = "/webhook/alertmanager"


def sample(registry: CollectorRegistry, outcome: str) -> float:
    value = registry.get_sample_value("recoverlink_alertmanager_notifications_total", {"outcome": outcome})
    return value or 0.0


def test_valid_delivery_is_acknowledged_after_it_is_stored(
    client: FlaskClient, registry: CollectorRegistry
) -> None:
    response = client.post(URL, data=fixture_body("firing_group.json"), headers=bearer())
    assert response.status_code == 200
    assert response.json == {
        "status": "accepted",
        "notification_id": 1,
        "alerts": {"firing_new": 3},
        "flagged_alerts": 0,
    }
    assert sample(registry, "accepted") == 1
    labels = {"status": "firing", "result": "new"}
    assert registry.get_sample_value("recoverlink_alerts_received_total", labels) == 3


def test_ha_duplicate_is_answered_2xx_and_counted_as_duplicate(
    client: FlaskClient, registry: CollectorRegistry
) -> None:
    client.post(URL, data=fixture_body("ha_duplicate_a.json"), headers=bearer())
    response = client.post(URL, data=fixture_body("ha_duplicate_b.json"), headers=bearer())
    assert response.status_code == 200
    assert response.json is not None and response.json["status"] == "duplicate"
    assert sample(registry, "duplicate") == 1


def test_basic_auth_as_alertmanager_sends_it_is_accepted(client: FlaskClient) -> None:
    response = client.post(URL, data=fixture_body("firing_single.json"), headers=basic())
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong-token"),
        basic("am", "wrong"),
        basic("other", "s3cret"),
        {"Authorization": "Basic !!!notbase64"},
        {"Authorization": "Token test-webhook-token-0123456789"},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "wrong-bearer", "wrong-password", "wrong-user", "garbled-basic", "other-scheme", "empty"],
)
def test_missing_or_wrong_credentials_get_401_with_json(
    client: FlaskClient, registry: CollectorRegistry, headers: dict[str, str]
) -> None:
    response = client.post(URL, data=fixture_body("firing_single.json"), headers=headers)
    assert response.status_code == 401
    assert response.json is not None and response.json["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert sample(registry, "unauthorized") == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", None),
        (b"{invalid", None),
        (b'"a string"', None),
        (b'{"version": "4", "status": "firing"}', "alerts"),
        (b'{"version": 4, "status": "firing", "alerts": []}', "version"),
        (b'{"version": "4", "status": "firing", "alerts": [{"status": "firing"}]}', "alerts.0.labels"),
        (
            b'{"version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": {},'
            b' "startsAt": 5, "fingerprint": "a"}]}',
            "alerts.0.startsAt",
        ),
    ],
    ids=[
        "empty",
        "invalid-json",
        "not-an-object",
        "missing-alerts",
        "wrong-type",
        "missing-labels",
        "bad-time",
    ],
)
def test_bad_payload_gets_400_naming_the_field(
    client: FlaskClient, registry: CollectorRegistry, body: bytes, field: str | None
) -> None:
    response = client.post(URL, data=body, headers=bearer())
    assert response.status_code == 400
    assert response.is_json
    error = (response.json or {})["error"]
    assert error["code"] == "payload-invalid"
    assert error.get("field") == field
    assert sample(registry, "rejected") == 1


def test_body_over_the_limit_gets_413(client: FlaskClient, registry: CollectorRegistry) -> None:
    body = b'{"pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    response = client.post(URL, data=body, headers=bearer())
    assert response.status_code == 413
    assert (response.json or {})["error"]["code"] == "payload-too-large"
    assert sample(registry, "rejected") == 1


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_gets_405_with_allow_header(client: FlaskClient, method: str) -> None:
    response = client.open(URL, method=method, headers=bearer())
    assert response.status_code == 405
    assert response.is_json
    assert "POST" in response.headers["Allow"]


def test_unknown_path_gets_json_404(client: FlaskClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert (response.json or {})["error"]["code"] == "not-found"


def test_request_id_is_echoed_or_generated(client: FlaskClient) -> None:
    given_id = client.get("/-/healthy", headers={"X-Request-Id": "abc-123"})
    assert given_id.headers["X-Request-Id"] == "abc-123"
    generated = client.get("/-/healthy")
    assert len(generated.headers["X-Request-Id"]) == 32


def test_every_request_is_timed_by_route_and_code(client: FlaskClient, registry: CollectorRegistry) -> None:
    client.post(URL, data=b"", headers=bearer())
    labels = {"handler": URL, "code": "400"}
    assert registry.get_sample_value("recoverlink_http_request_duration_seconds_count", labels) == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
alert_like = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["firing", "resolved", "x"]) | json_values,
        "labels": st.dictionaries(st.text(max_size=10), st.text(max_size=10)) | json_values,
        "annotations": st.dictionaries(st.text(max_size=10), st.text(max_size=10)) | json_values,
        "startsAt": st.sampled_from(["2026-11-22T18:08:59.435Z", "0001-01-01T00:00:00Z", "bad"])
        | json_values,
        "endsAt": st.sampled_from(["2026-11-22T18:09:59Z", "0001-01-01T00:00:00Z"]) | json_values,
        "fingerprint": st.text(max_size=20) | json_values,
    },
)
payload_like = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from(["4", "3"]) | json_values,
        "status": st.sampled_from(["firing", "resolved"]) | json_values,
        "alerts": st.lists(alert_like, max_size=4) | json_values,
        "groupKey": st.text(max_size=20) | json_values,
        "truncatedAlerts": st.integers() | json_values,
        "externalURL": json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=payload_like | json_values)
def test_random_payloads_never_produce_a_5xx(client: FlaskClient, document: object) -> None:
    response = client.post(URL, data=json.dumps(document), headers=bearer())
    assert response.status_code in (200, 400)
    assert response.is_json


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300))
def test_random_bytes_never_produce_a_5xx(client: FlaskClient, body: bytes) -> None:
    response = client.post(URL, data=body, headers=bearer())
    assert response.status_code == 400
    assert response.is_json
