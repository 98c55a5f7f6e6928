"""Alerts and notifications as Alertmanager delivers them, and what a delivery means for a stored episode.

Identity (REFERENCE.md 1.2): an alert is its fingerprint; an episode is (fingerprint, startsAt).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from recoverlink.domain.json_text import compact_json


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class AlertFlag(StrEnum):
    """Something odd about one alert. It is stored and shown, never a reason to reject the delivery."""

    MISSING_ALERTNAME = "missing-alertname"
    MISSING_SERVICE = "missing-service"
    UNKNOWN_SEVERITY = "unknown-severity"
    INVALID_LABEL_NAME = "invalid-label-name"
    EMPTY_LABEL_VALUE = "empty-label-value"
    BAD_FINGERPRINT = "bad-fingerprint"
    ENDS_BEFORE_START = "ends-before-start"
    RESOLVED_WITHOUT_END = "resolved-without-end"


class DeliveryResult(StrEnum):
    """What one alert inside a delivery told us (the `result` label of recoverlink_alerts_received_total)."""

    NEW = "new"  # a new episode, or the first resolve of a firing one
    DUPLICATE = "duplicate"  # nothing we did not know
    STALE = "stale"  # an older snapshot: firing for an episode already resolved


class EpisodeChange(StrEnum):
    """What the store must do with the episode row."""

    INSERT = "insert"
    RESOLVE = "resolve"
    TOUCH = "touch"  # only remember that it was seen again


@dataclass(frozen=True)
class Alert:
    """One alert inside a notification, parsed and flagged."""

    fingerprint: str
    status: AlertStatus
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str
    flags: tuple[AlertFlag, ...] = ()

    @functools.cached_property
    def episode_key(self) -> tuple[str, datetime]:
        # Asked for a dozen times per alert on the webhook path. A cached_property writes the
        # instance's __dict__ directly, which a frozen dataclass allows; it is no field.
        return (self.fingerprint, self.starts_at)


@dataclass(frozen=True)
class Notification:
    """One webhook delivery: a snapshot of an aggregation group, possibly older than one already seen."""

    receiver: str
    status: AlertStatus
    group_key: str
    group_labels: Mapping[str, str]
    common_labels: Mapping[str, str]
    common_annotations: Mapping[str, str]
    external_url: str
    truncated_alerts: int
    alerts: tuple[Alert, ...] = field(default_factory=tuple)

    @property
    def is_truncated(self) -> bool:
        """A truncated notification says nothing about the alerts it left out (never "resolved")."""
        return self.truncated_alerts > 0


@dataclass(frozen=True)
class AlertPolicy:
    """What counts as odd in an alert; from config."""

    known_severities: frozenset[str] = frozenset({"critical", "major", "warning", "minor", "info"})
    service_label: str = "service"
    severity_label: str = "severity"


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_FINGERPRINT = re.compile(r"[0-9a-f]{16}")


def flag_alert(alert: Alert, policy: AlertPolicy) -> tuple[AlertFlag, ...]:
    """Return what is odd about an alert, in a stable order."""
    labels = alert.labels
    checks = [
        (AlertFlag.MISSING_ALERTNAME, not labels.get("alertname")),
        (AlertFlag.MISSING_SERVICE, not labels.get(policy.service_label)),
        (
            AlertFlag.UNKNOWN_SEVERITY,
            labels.get(policy.severity_label, "") not in policy.known_severities,
        ),
        (AlertFlag.INVALID_LABEL_NAME, not all(map(_LABEL_NAME.fullmatch, labels))),
        (AlertFlag.EMPTY_LABEL_VALUE, "" in labels.values()),
        (AlertFlag.BAD_FINGERPRINT, not _FINGERPRINT.fullmatch(alert.fingerprint)),
        (
            AlertFlag.ENDS_BEFORE_START,
            alert.ends_at is not None and alert.ends_at < alert.starts_at,
        ),
        (
            AlertFlag.RESOLVED_WITHOUT_END,
            alert.status is AlertStatus.RESOLVED and alert.ends_at is None,
        ),
    ]
    return tuple(flag for flag, odd in checks if odd)


@dataclass(frozen=True)
class StoredEpisode:
    """The part of a stored episode that decides what a new delivery changes."""

    fingerprint: str
    starts_at: datetime
    status: AlertStatus


@dataclass(frozen=True)
class EpisodeDecision:
    alert: Alert
    change: EpisodeChange
    result: DeliveryResult


def decide_episode(alert: Alert, stored: StoredEpisode | None) -> EpisodeDecision:
    """Decide what one delivered alert changes, given what is stored for its episode.

    A resolved episode stays resolved: Alertmanager HA members re-send older group states, so a
    `firing` after a `resolved` for the same (fingerprint, startsAt) is a stale snapshot.
    """
    if stored is None:
        return EpisodeDecision(alert, EpisodeChange.INSERT, DeliveryResult.NEW)
    if stored.status is AlertStatus.RESOLVED:
        result = DeliveryResult.STALE if alert.status is AlertStatus.FIRING else DeliveryResult.DUPLICATE
        return EpisodeDecision(alert, EpisodeChange.TOUCH, result)
    if alert.status is AlertStatus.RESOLVED:
        return EpisodeDecision(alert, EpisodeChange.RESOLVE, DeliveryResult.NEW)
    return EpisodeDecision(alert, EpisodeChange.TOUCH, DeliveryResult.DUPLICATE)


def decide_episodes(
    alerts: Iterable[Alert], stored: Mapping[tuple[str, datetime], StoredEpisode]
) -> list[EpisodeDecision]:
    """Decide every alert of a notification; an episode twice in one body counts once."""
    decisions: list[EpisodeDecision] = []
    seen: dict[tuple[str, datetime], StoredEpisode] = dict(stored)
    for alert in alerts:
        decision = decide_episode(alert, seen.get(alert.episode_key))
        decisions.append(decision)
        status = AlertStatus.RESOLVED if decision.change is EpisodeChange.RESOLVE else alert.status
        if decision.change is not EpisodeChange.TOUCH:
            seen[alert.episode_key] = StoredEpisode(alert.fingerprint, alert.starts_at, status)
    return decisions


def notification_dedup_key(payload: Mapping[str, Any]) -> str:
    """A key equal for every copy of one notification: HA members differ only in `externalURL`."""
    content = {k: v for k, v in payload.items() if k != "externalURL"}
    canonical = compact_json(content, sort_keys=True)
    digest = hashlib.sha256()
    # hashlib lets go of the GIL for a chunk over 2 KiB; in a busy worker, taking it back costs more
    # than the hashing (up to a switch interval). Smaller chunks give the same digest.
    for start in range(0, len(canonical), _HASH_CHUNK):
        digest.update(canonical[start : start + _HASH_CHUNK])
    return digest.hexdigest()


_HASH_CHUNK = 2000
