"""What a delivered alert changes, given the stored episode: the idempotency rules of REFERENCE.md 1.6."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from recoverlink.domain.alerts import (
    Alert,
    AlertFlag,
    AlertPolicy,
    AlertStatus,
    DeliveryResult,
    EpisodeChange,
    StoredEpisode,
    decide_episode,
    decide_episodes,
    flag_alert,
    notification_dedup_key,
)
from tests.conftest import fixture_body

START = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)


def alert(status: AlertStatus = AlertStatus.FIRING, **labels: str) -> Alert:
    return Alert(
        fingerprint="a1d644f09ee6a3f0",
        status=status,
        labels=labels or {"alertname": "PaymentsApiDown", "service": "payments-api", "severity": "critical"},
        annotations={},
        starts_at=START,
        ends_at=START + timedelta(minutes=5) if status is AlertStatus.RESOLVED else None,
        generator_url="",
    )


def stored(status: AlertStatus) -> StoredEpisode:
    return StoredEpisode("a1d644f09ee6a3f0", START, status)


@pytest.mark.parametrize(
    ("stored_status", "incoming", "change", "result"),
    [
        (None, AlertStatus.FIRING, EpisodeChange.INSERT, DeliveryResult.NEW),
        (None, AlertStatus.RESOLVED, EpisodeChange.INSERT, DeliveryResult.NEW),
        (AlertStatus.FIRING, AlertStatus.FIRING, EpisodeChange.TOUCH, DeliveryResult.DUPLICATE),
        (AlertStatus.FIRING, AlertStatus.RESOLVED, EpisodeChange.RESOLVE, DeliveryResult.NEW),
        (AlertStatus.RESOLVED, AlertStatus.RESOLVED, EpisodeChange.TOUCH, DeliveryResult.DUPLICATE),
        (AlertStatus.RESOLVED, AlertStatus.FIRING, EpisodeChange.TOUCH, DeliveryResult.STALE),
    ],
)
def test_every_stored_state_and_incoming_status(
    stored_status: AlertStatus | None,
    incoming: AlertStatus,
    change: EpisodeChange,
    result: DeliveryResult,
) -> None:
    decision = decide_episode(alert(incoming), stored(stored_status) if stored_status else None)
    assert (decision.change, decision.result) == (change, result)


def test_late_firing_for_a_resolved_episode_never_reopens_it() -> None:
    decision = decide_episode(alert(AlertStatus.FIRING), stored(AlertStatus.RESOLVED))
    assert decision.change is EpisodeChange.TOUCH
    assert decision.result is DeliveryResult.STALE


def test_new_episode_of_the_same_fingerprint_is_a_new_row() -> None:
    later = replace(alert(), starts_at=START + timedelta(hours=2))
    decision = decide_episode(later, None)
    assert decision.change is EpisodeChange.INSERT


def test_same_episode_twice_in_one_body_is_inserted_once() -> None:
    decisions = decide_episodes([alert(), alert()], {})
    assert [d.change for d in decisions] == [EpisodeChange.INSERT, EpisodeChange.TOUCH]


def test_firing_then_resolved_in_one_body_inserts_then_resolves() -> None:
    decisions = decide_episodes([alert(), alert(AlertStatus.RESOLVED)], {})
    assert [d.change for d in decisions] == [EpisodeChange.INSERT, EpisodeChange.RESOLVE]


def _document(name: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(fixture_body(name))
    return value


def test_ha_copies_share_one_dedup_key() -> None:
    a, b = _document("ha_duplicate_a.json"), _document("ha_duplicate_b.json")
    assert a["externalURL"] != b["externalURL"]
    assert notification_dedup_key(a) == notification_dedup_key(b)


def test_dedup_key_of_a_large_notification_is_the_sha256_of_its_canonical_json() -> None:
    """Keys stored by earlier versions must still match: hashing in chunks changes nothing."""
    document = _document("firing_group.json")
    document["commonAnnotations"]["description"] = "x" * 10_000
    content = {k: v for k, v in document.items() if k != "externalURL"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert notification_dedup_key(document) == hashlib.sha256(canonical.encode()).hexdigest()


def test_stale_firing_and_resolve_have_different_dedup_keys() -> None:
    firing, resolved = _document("ha_stale_firing_after_resolved.json"), _document("resolved_single.json")
    assert notification_dedup_key(firing) != notification_dedup_key(resolved)


def test_dedup_key_ignores_key_order() -> None:
    document = _document("firing_group.json")
    reordered = dict(reversed(list(document.items())))
    assert notification_dedup_key(document) == notification_dedup_key(reordered)


@pytest.mark.parametrize(
    ("labels", "flag"),
    [
        ({"service": "x", "severity": "critical"}, AlertFlag.MISSING_ALERTNAME),
        ({"alertname": "A", "severity": "critical"}, AlertFlag.MISSING_SERVICE),
        ({"alertname": "A", "service": "x"}, AlertFlag.UNKNOWN_SEVERITY),
        ({"alertname": "A", "service": "x", "severity": "sev0"}, AlertFlag.UNKNOWN_SEVERITY),
        ({"alertname": "A", "service": "x", "severity": "info", "1bad": "v"}, AlertFlag.INVALID_LABEL_NAME),
        ({"alertname": "A", "service": "x", "severity": "info", "env": ""}, AlertFlag.EMPTY_LABEL_VALUE),
    ],
)
def test_odd_labels_are_flagged(labels: dict[str, str], flag: AlertFlag) -> None:
    assert flag in flag_alert(alert(**labels), AlertPolicy())


def test_a_well_formed_alert_has_no_flags() -> None:
    assert flag_alert(alert(), AlertPolicy()) == ()


def test_resolved_alert_ending_before_it_started_is_flagged() -> None:
    odd = replace(alert(AlertStatus.RESOLVED), ends_at=START - timedelta(seconds=1))
    assert AlertFlag.ENDS_BEFORE_START in flag_alert(odd, AlertPolicy())


def test_bad_fingerprint_is_flagged() -> None:
    assert AlertFlag.BAD_FINGERPRINT in flag_alert(replace(alert(), fingerprint="XYZ"), AlertPolicy())


def test_custom_severities_come_from_policy() -> None:
    policy = AlertPolicy(known_severities=frozenset({"sev1"}))
    assert AlertFlag.UNKNOWN_SEVERITY in flag_alert(alert(), policy)
