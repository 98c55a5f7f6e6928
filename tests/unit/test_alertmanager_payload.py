"""The payload model against every captured Alertmanager 0.25 delivery, and against bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from recoverlink.adapters.alertmanager import decode_body, parse_payload, to_notification
from recoverlink.domain.alerts import AlertFlag, AlertPolicy, AlertStatus
from recoverlink.domain.errors import PayloadInvalid
from tests.conftest import fixture_body, payload_files


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(fixture_body(name))
    return document


@pytest.mark.parametrize("path", payload_files(), ids=lambda p: p.name)
def test_every_captured_payload_parses_into_a_notification(path: Path) -> None:
    document = json.loads(path.read_bytes())
    notification = to_notification(parse_payload(decode_body(path.read_bytes())), AlertPolicy())
    assert len(notification.alerts) == len(document["alerts"])
    assert notification.group_key == document["groupKey"]
    for alert, raw in zip(notification.alerts, document["alerts"], strict=True):
        assert alert.fingerprint == raw["fingerprint"]
        assert alert.status.value == raw["status"]
        assert alert.starts_at.tzinfo is not None
        assert alert.labels == raw["labels"]


def test_go_zero_end_time_means_no_end_yet() -> None:
    notification = to_notification(parse_payload(load("firing_single.json")), AlertPolicy())
    assert notification.alerts[0].ends_at is None


def test_resolved_alert_keeps_its_end_time() -> None:
    notification = to_notification(parse_payload(load("resolved_single.json")), AlertPolicy())
    alert = notification.alerts[0]
    assert alert.status is AlertStatus.RESOLVED
    assert alert.ends_at is not None and alert.ends_at > alert.starts_at


def test_millisecond_start_times_compare_as_datetimes() -> None:
    notification = to_notification(parse_payload(load("firing_single.json")), AlertPolicy())
    assert notification.alerts[0].starts_at == datetime(2026, 11, 22, 18, 8, 59, 435000, tzinfo=UTC)


def test_nanosecond_start_times_are_truncated_to_microseconds() -> None:
    document = load("firing_single.json")
    document["alerts"][0]["startsAt"] = "2026-11-22T18:08:59.123456789Z"
    alert = to_notification(parse_payload(document), AlertPolicy()).alerts[0]
    assert alert.starts_at == datetime(2026, 11, 22, 18, 8, 59, 123456, tzinfo=UTC)


def test_truncated_notification_says_so() -> None:
    notification = to_notification(parse_payload(load("firing_group_truncated.json")), AlertPolicy())
    assert notification.is_truncated
    assert notification.truncated_alerts == 1


def test_fields_from_newer_alertmanager_releases_are_ignored() -> None:
    document = load("firing_single.json")
    document["notification_reason"] = "first notification"
    document["routeLabels"] = {"team": "payments"}
    document["alerts"][0]["silencedBy"] = []
    notification = to_notification(parse_payload(document), AlertPolicy())
    assert len(notification.alerts) == 1


def test_mixed_group_carries_firing_and_resolved_alerts() -> None:
    notification = to_notification(parse_payload(load("mixed_group.json")), AlertPolicy())
    assert notification.status is AlertStatus.FIRING
    assert {a.status for a in notification.alerts} == {AlertStatus.FIRING, AlertStatus.RESOLVED}


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("version"), "version"),
        (lambda d: d.update(version="3"), "version"),
        (lambda d: d.pop("alerts"), "alerts"),
        (lambda d: d.update(alerts={"a": 1}), "alerts"),
        (lambda d: d.update(status="pending"), "status"),
        (lambda d: d["alerts"][0].pop("fingerprint"), "alerts.0.fingerprint"),
        (lambda d: d["alerts"][0].update(startsAt="yesterday"), "alerts.0.startsAt"),
        (lambda d: d["alerts"][0].update(labels=["a"]), "alerts.0.labels"),
        (lambda d: d["alerts"][0]["labels"].update(severity=1), "alerts.0.labels.severity"),
        (lambda d: d.update(truncatedAlerts=-1), "truncatedAlerts"),
    ],
)
def test_invalid_payload_error_names_the_field_path(mutate: Any, field: str) -> None:
    document = load("firing_single.json")
    mutate(document)
    with pytest.raises(PayloadInvalid) as caught:
        parse_payload(document)
    assert caught.value.field == field
    assert caught.value.message.startswith(field)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "request body is empty"),
        (b"   \n", "request body is empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object at the top level, got list"),
        (b"\xff\xfe{}", "not"),
    ],
)
def test_undecodable_body_is_rejected_with_a_reason(body: bytes, message: str) -> None:
    with pytest.raises(PayloadInvalid, match=message):
        decode_body(body)


def test_odd_alert_is_flagged_not_rejected() -> None:
    document = load("firing_single.json")
    labels = document["alerts"][0]["labels"]
    del labels["service"]
    labels["severity"] = "apocalyptic"
    labels["bad-name"] = "x"
    alert = to_notification(parse_payload(document), AlertPolicy()).alerts[0]
    assert AlertFlag.MISSING_SERVICE in alert.flags
    assert AlertFlag.UNKNOWN_SEVERITY in alert.flags
    assert AlertFlag.INVALID_LABEL_NAME in alert.flags
