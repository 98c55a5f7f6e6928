"""Which `action.send` jobs a transition causes: one per action whose `on` names the state entered or
a milestone stamped, keyed by recovery, action, cycle and trigger, from every source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from recoverlink.action_plan import ACTION_SEND, jobs_after_transition, jobs_at_opening
from recoverlink.domain.actions import CX_UPDATE_KINDS, TRIGGERS, ActionKind, counts_as_cx_update, triggers_of
from recoverlink.domain.recovery_state import (
    Milestone,
    RecoveryEvent,
    RecoveryEventKind,
    RecoveryState,
    RecoveryStatus,
    Transition,
    TransitionSource,
    apply_event,
    new_recovery_status,
)

T0 = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
PLANNED = [
    {"name": "outage/banner", "kind": "agent_desktop", "on": ["workaround_available", "fix_deployed"]},
    {"name": "outage/chat", "kind": "chat", "on": ["opened", "owner_known", "fix_deployed", "closed"]},
    {"name": "outage/kb", "kind": "knowledge_base", "on": ["workaround_published"]},
]


def status() -> RecoveryStatus:
    return new_recovery_status(T0, itsm_configured=False, resolution_closes_incident=True)


def event(
    kind: RecoveryEventKind, source: TransitionSource = TransitionSource.OPERATOR, **more: Any
) -> RecoveryEvent:
    return RecoveryEvent(kind, source, **more)


def row(planned: list[dict[str, Any]] | None = None) -> SimpleNamespace:
    return SimpleNamespace(id=7, actions=PLANNED if planned is None else planned)


def keys(transition: Transition, planned: list[dict[str, Any]] | None = None) -> list[str]:
    return [job.idempotency_key for job in jobs_after_transition(row(planned), transition)]


def test_every_state_and_milestone_is_a_trigger_once() -> None:
    assert set(TRIGGERS) == {s.value for s in RecoveryState} | {m.value for m in Milestone}
    assert len(TRIGGERS) == len(set(TRIGGERS))


def test_only_agent_desktop_knowledge_base_chatbot_and_customer_messaging_count_as_cx_updates() -> None:
    assert (
        {k for k in ActionKind if counts_as_cx_update(k)}
        == set(CX_UPDATE_KINDS)
        == {
            ActionKind.AGENT_DESKTOP,
            ActionKind.KNOWLEDGE_BASE,
            ActionKind.CHATBOT,
            ActionKind.CUSTOMER_MESSAGING,
        }
    )


def test_a_state_entered_and_the_milestone_of_the_same_name_fire_one_job() -> None:
    fixed = apply_event(status(), event(RecoveryEventKind.ALERTS_RESOLVED, TransitionSource.ALERTMANAGER), T0)
    assert triggers_of(fixed) == ("fix_deployed",)
    assert keys(fixed) == [
        f"{ACTION_SEND}/7/outage/banner/0/fix_deployed",
        f"{ACTION_SEND}/7/outage/chat/0/fix_deployed",
    ]


def test_a_milestone_stamped_after_a_later_state_fires_without_moving_the_state() -> None:
    started = apply_event(status(), event(RecoveryEventKind.FIX_STARTED), T0).status
    published = apply_event(started, event(RecoveryEventKind.WORKAROUND_PUBLISHED, TransitionSource.ITSM), T0)
    assert not published.moved
    assert keys(published) == [f"{ACTION_SEND}/7/outage/kb/0/workaround_published"]


def test_a_skipped_state_is_not_entered() -> None:
    fixed = apply_event(status(), event(RecoveryEventKind.ALERTS_RESOLVED, TransitionSource.WORKER), T0)
    assert "workaround_available" not in triggers_of(fixed)


def test_a_reopen_fires_opened_again_in_the_next_cycle() -> None:
    fixed = apply_event(status(), event(RecoveryEventKind.ALERTS_RESOLVED, TransitionSource.ALERTMANAGER), T0)
    reopened = apply_event(
        fixed.status, event(RecoveryEventKind.ALERT_REFIRED, TransitionSource.ALERTMANAGER), T0 + timedelta(1)
    )
    assert keys(reopened) == [f"{ACTION_SEND}/7/outage/chat/1/opened"]


def test_actions_fire_whoever_made_the_transition() -> None:
    for source in (TransitionSource.ITSM, TransitionSource.OPERATOR):
        published = apply_event(status(), event(RecoveryEventKind.WORKAROUND_PUBLISHED, source), T0)
        assert f"{ACTION_SEND}/7/outage/banner/0/workaround_available" in keys(published)


def test_a_transition_that_changed_nothing_fires_nothing() -> None:
    fixed = apply_event(status(), event(RecoveryEventKind.ALERTS_RESOLVED, TransitionSource.ALERTMANAGER), T0)
    again = apply_event(fixed.status, event(RecoveryEventKind.ALERTS_RESOLVED, TransitionSource.WORKER), T0)
    assert keys(again) == []


def test_a_recovery_without_actions_gets_no_jobs() -> None:
    fixed = apply_event(status(), event(RecoveryEventKind.ALERTS_RESOLVED, TransitionSource.ALERTMANAGER), T0)
    assert keys(fixed, planned=[]) == []


def test_an_opening_fires_opened_and_the_milestones_it_stamped() -> None:
    jobs = jobs_at_opening(7, PLANNED, [Milestone.OWNER_KNOWN], T0)
    assert [j.idempotency_key for j in jobs] == [
        f"{ACTION_SEND}/7/outage/chat/0/opened",
        f"{ACTION_SEND}/7/outage/chat/0/owner_known",
    ]
    assert jobs[0].payload == {
        "recovery_id": 7,
        "action": "outage/chat",
        "kind": "chat",
        "trigger": "opened",
        "cycle": 0,
    }
    assert (jobs[0].kind, jobs[0].due_at, jobs[0].recovery_id) == (ACTION_SEND, T0, 7)
