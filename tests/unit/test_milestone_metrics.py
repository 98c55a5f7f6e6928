"""Each milestone observes its latency histogram once, with team and priority, at the moment it is
stamped (DESIGN.md's metric table); a repeat of the same event observes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from recoverlink.domain.recovery_state import (
    RecoveryEvent,
    RecoveryEventKind,
    RecoveryStatus,
    TransitionSource,
    apply_event,
    new_recovery_status,
)
from recoverlink.telemetry import FinishFacts, Metrics

OPENED = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
LABELS = {"team": "payments", "priority": "P1"}
K, S = RecoveryEventKind, TransitionSource


def event(kind: RecoveryEventKind, source: TransitionSource = S.WORKER, **extra: str) -> RecoveryEvent:
    owner = extra.pop("owner", None)
    return RecoveryEvent(kind, source, extra, owner=owner)


def observe(metrics: Metrics, status: RecoveryStatus, ev: RecoveryEvent, minutes: float) -> RecoveryStatus:
    transition = apply_event(status, ev, OPENED + timedelta(minutes=minutes))
    finish = FinishFacts(True, True, True, False)
    metrics.transition_observed(transition, "payments", "P1", "payments-api", finish)
    return transition.status


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {**LABELS, **labels})


@pytest.mark.parametrize(
    ("kind", "source", "histogram", "extra"),
    [
        (
            K.OWNER_KNOWN,
            S.ALERTMANAGER,
            "recoverlink_recovery_time_to_ownership_seconds",
            {"owner": "payments"},
        ),
        (K.IMPACT_CONFIRMED, S.WORKER, "recoverlink_recovery_time_to_impact_seconds", {}),
        (K.INCIDENT_LINKED, S.WORKER, "recoverlink_recovery_time_to_incident_seconds", {"system": "rt"}),
    ],
)
def test_a_milestone_since_opening_is_observed_once_with_its_labels(
    kind: RecoveryEventKind, source: TransitionSource, histogram: str, extra: dict[str, str]
) -> None:
    metrics = Metrics(CollectorRegistry())
    status = new_recovery_status(OPENED, itsm_configured=True, resolution_closes_incident=True)
    status = observe(metrics, status, event(kind, source, **extra), minutes=3)
    observe(metrics, status, event(kind, source, **extra), minutes=9)
    more = {"itsm": "rt"} if kind is K.INCIDENT_LINKED else {}
    assert sample(metrics, f"{histogram}_count", **more) == 1
    assert sample(metrics, f"{histogram}_sum", **more) == 180


def test_milestones_after_the_fix_are_measured_from_the_fix() -> None:
    metrics = Metrics(CollectorRegistry())
    status = new_recovery_status(OPENED, itsm_configured=False, resolution_closes_incident=True)
    status = observe(metrics, status, event(K.ALERTS_RESOLVED, S.ALERTMANAGER), minutes=10)
    status = observe(metrics, status, event(K.CX_UPDATED), minutes=12)
    status = observe(metrics, status, event(K.CX_UPDATED), minutes=13)
    status = observe(metrics, status, event(K.IMPACT_VERIFIED), minutes=15)
    assert sample(metrics, "recoverlink_recovery_fix_to_cx_update_seconds_sum") == 120
    assert sample(metrics, "recoverlink_recovery_fix_to_cx_update_seconds_count") == 1
    assert sample(metrics, "recoverlink_recovery_fix_to_verification_seconds_sum") == 300
    # Verification closed it (no ITSM): resolution time and the finished counter, once.
    assert sample(metrics, "recoverlink_recovery_resolution_seconds_sum") == 900
    finished = {
        "linked_customers": "true",
        "full_context": "true",
        "single_owner": "true",
        "manual_lookup": "false",
    }
    labels = {"team": "payments", **finished}
    assert metrics.registry.get_sample_value("recoverlink_recoveries_finished_total", labels) == 1
    assert (
        metrics.registry.get_sample_value(
            "recoverlink_recoveries_closed_total", {**LABELS, "service": "payments-api"}
        )
        == 1
    )


def test_a_cx_update_before_the_fix_measures_nothing() -> None:
    metrics = Metrics(CollectorRegistry())
    status = new_recovery_status(OPENED, itsm_configured=False, resolution_closes_incident=True)
    observe(metrics, status, event(K.CX_UPDATED), minutes=2)
    assert sample(metrics, "recoverlink_recovery_fix_to_cx_update_seconds_count") in (None, 0)


def test_a_reassignment_counts_a_bounce_for_the_new_team_and_no_second_ownership_time() -> None:
    metrics = Metrics(CollectorRegistry())
    status = new_recovery_status(OPENED, itsm_configured=False, resolution_closes_incident=True)
    status = observe(metrics, status, event(K.OWNER_KNOWN, S.ALERTMANAGER, owner="payments"), minutes=1)
    observe(metrics, status, event(K.OWNER_KNOWN, S.OPERATOR, owner="sre"), minutes=5)
    assert (
        metrics.registry.get_sample_value("recoverlink_recovery_escalation_bounces_total", {"team": "sre"})
        == 1
    )
    assert sample(metrics, "recoverlink_recovery_time_to_ownership_seconds_count") == 1
