"""Where the time went, from milestones and the audit trail alone (no store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from recoverlink.domain.recovery_state import Milestone
from recoverlink.store.recovery_queries import AuditEntry
from recoverlink.waterfall import build_waterfall, format_duration

T0 = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def entry(minutes: float, kind: str, actor: str, source: str, **details: Any) -> AuditEntry:
    return AuditEntry(at(minutes), source, actor, kind, None, None, details)


def stamped(minutes: float, actor: str, source: str, *milestones: str) -> AuditEntry:
    return entry(minutes, "transition", actor, source, stamped=list(milestones))


def test_steps_are_in_time_order_with_the_wait_before_each_and_who_moved_it() -> None:
    milestones = {"opened": at(0), "fix_deployed": at(40), "owner_known": at(5), "cx_updated": at(100)}
    timeline = [
        entry(0, "opened", "alertmanager", "alertmanager"),
        stamped(5, "ann", "operator", "owner_known"),
        stamped(40, "alertmanager", "alertmanager", "fix_deployed"),
        stamped(100, "worker", "worker", "cx_updated"),
    ]
    waterfall = build_waterfall(milestones, timeline)
    reached = [(s.milestone, s.wait_seconds, s.since_opened_seconds, s.moved_by) for s in waterfall.reached]
    assert reached == [
        (Milestone.OPENED, None, 0.0, "alertmanager"),
        (Milestone.OWNER_KNOWN, 300.0, 300.0, "ann (operator)"),
        (Milestone.FIX_DEPLOYED, 2100.0, 2400.0, "alertmanager"),
        (Milestone.CX_UPDATED, 3600.0, 6000.0, "worker"),
    ]
    assert [s.milestone for s in waterfall.steps if not s.reached] == [
        Milestone.IMPACT_IDENTIFIED,
        Milestone.INCIDENT_LINKED,
        Milestone.WORKAROUND_PUBLISHED,
        Milestone.IMPACT_VERIFIED,
        Milestone.CLOSED,
    ]
    assert waterfall.total_seconds == 6000
    assert waterfall.slowest_text() == "Fix deployed → CX updated: 1h, moved by worker"


def test_after_a_reopen_the_latest_stamp_of_a_milestone_names_who_moved_it() -> None:
    timeline = [
        stamped(10, "alertmanager", "alertmanager", "fix_deployed"),
        entry(20, "transition", "alertmanager", "alertmanager", stamped=[]),  # the reopen
        stamped(50, "servicenow:jdoe", "itsm", "fix_deployed"),
    ]
    waterfall = build_waterfall({"opened": at(0), "fix_deployed": at(50)}, timeline)
    assert waterfall.reached[-1].moved_by == "servicenow:jdoe (itsm)"


def test_equal_times_keep_the_milestone_order_and_the_first_of_equal_waits_is_slowest() -> None:
    milestones = {"closed": at(10), "impact_verified": at(10), "opened": at(0), "owner_known": at(0)}
    waterfall = build_waterfall(milestones, [])
    assert [s.milestone for s in waterfall.reached] == [
        Milestone.OPENED,
        Milestone.OWNER_KNOWN,
        Milestone.IMPACT_VERIFIED,
        Milestone.CLOSED,
    ]
    assert waterfall.slowest is not None and waterfall.slowest.milestone is Milestone.IMPACT_VERIFIED
    assert waterfall.reached[1].moved_by is None, "no audit entry: nobody to name"


def test_a_recovery_with_only_its_opening_has_no_handoff_yet() -> None:
    waterfall = build_waterfall({"opened": at(0)}, [])
    assert waterfall.slowest is None
    assert waterfall.slowest_text() == "no handoff yet: only the opening is recorded"
    assert waterfall.total_seconds == 0


def test_durations_show_the_two_largest_units() -> None:
    assert [format_duration(s) for s in (0, 45, 425, 3720, 183600, -5)] == [
        "0s",
        "45s",
        "7m 5s",
        "1h 2m",
        "2d 3h",
        "0s",
    ]
