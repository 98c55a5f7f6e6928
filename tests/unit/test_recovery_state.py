"""The recovery state machine (DESIGN.md "Recovery state model"): every state x event kind x source,
the rules by name, and properties over random event sequences."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recoverlink.domain.errors import InputError, PayloadInvalid, TransitionNotAllowed
from recoverlink.domain.recovery_state import (
    STAGES,
    Milestone,
    RecoveryEvent,
    RecoveryEventKind,
    RecoveryState,
    RecoveryStatus,
    Transition,
    TransitionSource,
    allowed_operator_targets,
    apply_event,
    is_ready_to_close,
    is_within_reopen_window,
    new_recovery_status,
    refusal,
)

K, S, M, Src = RecoveryEventKind, RecoveryState, Milestone, TransitionSource
OPN, IC, WA, FIP, FD, CL, PM, CA = (
    S.OPENED, S.IMPACT_CONFIRMED, S.WORKAROUND_AVAILABLE, S.FIX_IN_PROGRESS, S.FIX_DEPLOYED, S.CLOSED,
    S.POSTMORTEM_COMPLETE, S.CANCELED,
)  # fmt: skip
X = None  # refused
T0 = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=3)

# The specification, written out rather than derived from the module under test.
STAGE_ORDER = (OPN, IC, WA, FIP, FD, CL, PM)
STAGE_MILESTONE = {OPN: M.OPENED, IC: M.IMPACT_IDENTIFIED, WA: M.WORKAROUND_PUBLISHED, FD: M.FIX_DEPLOYED,
                   CL: M.CLOSED, PM: M.POSTMORTEM_COMPLETE}  # fmt: skip
CYCLE_MILESTONES = {M.FIX_DEPLOYED, M.CX_UPDATED, M.IMPACT_VERIFIED, M.CLOSED}
SENDERS: Mapping[RecoveryEventKind, set[TransitionSource]] = {
    K.IMPACT_CONFIRMED: {Src.WORKER, Src.OPERATOR},
    K.WORKAROUND_PUBLISHED: {Src.ITSM, Src.OPERATOR},
    K.FIX_STARTED: {Src.ITSM, Src.OPERATOR},
    K.ALERTS_RESOLVED: {Src.ALERTMANAGER, Src.WORKER},
    K.INCIDENT_RESOLVED: {Src.ITSM},
    K.INCIDENT_CLOSED: {Src.ITSM},
    K.IMPACT_VERIFIED: {Src.WORKER, Src.OPERATOR},
    K.OWNER_KNOWN: {Src.ALERTMANAGER, Src.WORKER, Src.OPERATOR, Src.ITSM},
    K.INCIDENT_LINKED: {Src.WORKER, Src.ITSM},
    K.CX_UPDATED: {Src.WORKER, Src.OPERATOR},
    K.POSTMORTEM_COMPLETED: {Src.OPERATOR, Src.ITSM},
    K.CANCELED: {Src.ITSM, Src.OPERATOR},
    K.ALERT_REFIRED: {Src.ALERTMANAGER},
    K.MOVED_BY_OPERATOR: {Src.OPERATOR},
}
# The state after the event, from a recovery in each state (see `status_in`); X = refused.
COLUMNS = (OPN, IC, WA, FIP, FD, CL, PM, CA)
OUTCOME: Mapping[RecoveryEventKind, tuple[RecoveryState | None, ...]] = {
    #                          OPN  IC   WA   FIP  FD   CL   PM   CA
    K.IMPACT_CONFIRMED:       (IC,  IC,  WA,  FIP, FD,  CL,  X,   X),
    K.WORKAROUND_PUBLISHED:   (WA,  WA,  WA,  FIP, FD,  CL,  X,   X),
    K.FIX_STARTED:            (FIP, FIP, FIP, FIP, FD,  CL,  X,   X),
    K.ALERTS_RESOLVED:        (FD,  FD,  FD,  FD,  FD,  CL,  X,   X),
    K.INCIDENT_RESOLVED:      (FD,  FD,  FD,  FD,  FD,  CL,  PM,  X),
    K.INCIDENT_CLOSED:        (FD,  FD,  FD,  FD,  FD,  CL,  PM,  X),
    K.IMPACT_VERIFIED:        (OPN, IC,  WA,  FIP, FD,  CL,  PM,  X),
    K.OWNER_KNOWN:            (OPN, IC,  WA,  FIP, FD,  CL,  PM,  X),
    K.INCIDENT_LINKED:        (OPN, IC,  WA,  FIP, FD,  CL,  PM,  X),
    K.CX_UPDATED:             (OPN, IC,  WA,  FIP, FD,  CL,  PM,  X),
    K.POSTMORTEM_COMPLETED:   (X,   X,   X,   X,   X,   PM,  X,   X),
    K.CANCELED:               (CA,  CA,  CA,  CA,  CA,  CA,  X,   X),
    K.ALERT_REFIRED:          (X,   X,   X,   X,   OPN, OPN, X,   X),
    K.MOVED_BY_OPERATOR:      (CL,  CL,  CL,  CL,  CL,  X,   X,   X),  # target: closed
}  # fmt: skip


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def status_in(state: RecoveryState, **changes: Any) -> RecoveryStatus:
    """A recovery that reached `state` the ordinary way, with an ITSM that closes incidents.

    Impact is verified and the incident resolved only from closed on; canceled was canceled while the
    fix was in progress.
    """
    reached = STAGE_ORDER[: STAGE_ORDER.index(state if state is not CA else FIP) + 1]
    milestones = {STAGE_MILESTONE[s]: at(i) for i, s in enumerate(reached) if s in STAGE_MILESTONE}
    if CL in reached:
        milestones[M.IMPACT_VERIFIED] = milestones[M.CLOSED]
    status = RecoveryStatus(
        state=state,
        milestones=milestones,
        itsm_configured=True,
        resolution_closes_incident=True,
        incident_resolved=CL in reached,
        recovery_id="rec-1",
    )
    return replace(status, **changes)


def event(kind: RecoveryEventKind, source: TransitionSource, **fields: Any) -> RecoveryEvent:
    defaults: Mapping[str, Any] = {
        K.OWNER_KNOWN: {"owner": "payments"},
        K.MOVED_BY_OPERATOR: {"target": CL, "reason": "verified by hand"},
    }.get(kind, {})
    return RecoveryEvent(kind, source, **{**defaults, **fields})


def send(
    status: RecoveryStatus, kind: RecoveryEventKind, source: TransitionSource, minutes: int, **fields: Any
) -> Transition:
    return apply_event(status, event(kind, source, **fields), at(minutes))


def rank(state: RecoveryState) -> int:
    return STAGE_ORDER.index(state)


# --- the whole table -------------------------------------------------------------------------------------


def test_the_table_covers_every_event_kind_and_the_module_agrees_on_stage_order() -> None:
    assert set(OUTCOME) == set(SENDERS) == set(RecoveryEventKind)
    assert all(len(row) == len(RecoveryState) for row in OUTCOME.values())
    assert set(COLUMNS) == set(RecoveryState)
    assert STAGE_ORDER == STAGES


@pytest.mark.parametrize(
    ("state", "kind", "source"),
    list(itertools.product(RecoveryState, RecoveryEventKind, TransitionSource)),
    ids=str,
)
def test_every_state_event_and_source(
    state: RecoveryState, kind: RecoveryEventKind, source: TransitionSource
) -> None:
    status = status_in(state)
    expected = OUTCOME[kind][COLUMNS.index(state)] if source in SENDERS[kind] else X
    if expected is X:
        assert refusal(status, event(kind, source)) is not None
        with pytest.raises(TransitionNotAllowed) as refused:
            apply_event(status, event(kind, source), NOW)
        assert refused.value.current == state
        return
    assert refusal(status, event(kind, source)) is None
    transition = apply_event(status, event(kind, source), NOW)
    assert (transition.from_state, transition.to_state) == (state, expected)
    assert transition.moved is (state is not expected)
    assert all(transition.status.milestones[m] == NOW for m in transition.stamped)
    assert all(
        transition.status.milestones[m] == t
        for m, t in status.milestones.items()
        if m not in CYCLE_MILESTONES
    )


@pytest.mark.parametrize(("state", "target"), list(itertools.product(RecoveryState, RecoveryState)), ids=str)
def test_operator_moves_forward_to_any_later_stage_or_cancels(
    state: RecoveryState, target: RecoveryState
) -> None:
    status = status_in(state)
    still_running = state in STAGE_ORDER[: rank(CL) + 1]
    forward = target is CA or (target in STAGE_ORDER and state in STAGE_ORDER and rank(target) > rank(state))
    allowed = still_running and forward
    assert (target in allowed_operator_targets(status)) is allowed
    move = event(K.MOVED_BY_OPERATOR, Src.OPERATOR, target=target, reason="bridge call decided")
    if not allowed:
        with pytest.raises(TransitionNotAllowed):
            apply_event(status, move, NOW)
        return
    transition = apply_event(status, move, NOW)
    assert transition.to_state is target
    assert transition.reason == "bridge call decided"
    if target in STAGE_MILESTONE and STAGE_MILESTONE[target] not in status.milestones:
        assert transition.stamped == (STAGE_MILESTONE[target],)


# --- named rules -----------------------------------------------------------------------------------------


def test_workaround_after_fix_started_stamps_milestone_without_moving_back() -> None:
    status = send(status_in(OPN), K.FIX_STARTED, Src.ITSM, 10).status

    transition = send(status, K.WORKAROUND_PUBLISHED, Src.ITSM, 20, evidence={"kb": "KB0042"})

    assert transition.to_state is FIP and not transition.moved
    assert transition.stamped == (M.WORKAROUND_PUBLISHED,)
    assert transition.status.milestones[M.WORKAROUND_PUBLISHED] == at(20)
    assert transition.evidence == {"kb": "KB0042"}


def test_a_short_blip_skips_from_opened_to_fix_deployed() -> None:
    transition = send(status_in(OPN), K.ALERTS_RESOLVED, Src.ALERTMANAGER, 3)

    assert (transition.from_state, transition.to_state) == (OPN, FD)
    assert transition.stamped == (M.FIX_DEPLOYED,)


def test_a_recovery_walks_every_stage_and_stamps_each_milestone_once() -> None:
    status = new_recovery_status(T0, itsm_configured=True, resolution_closes_incident=True)
    steps = [
        (K.OWNER_KNOWN, Src.ALERTMANAGER, OPN, (M.OWNER_KNOWN,)),
        (K.INCIDENT_LINKED, Src.WORKER, OPN, (M.INCIDENT_LINKED,)),
        (K.IMPACT_CONFIRMED, Src.WORKER, IC, (M.IMPACT_IDENTIFIED,)),
        (K.WORKAROUND_PUBLISHED, Src.OPERATOR, WA, (M.WORKAROUND_PUBLISHED,)),
        (K.FIX_STARTED, Src.ITSM, FIP, ()),
        (K.ALERTS_RESOLVED, Src.ALERTMANAGER, FD, (M.FIX_DEPLOYED,)),
        (K.CX_UPDATED, Src.WORKER, FD, (M.CX_UPDATED,)),
        (K.IMPACT_VERIFIED, Src.WORKER, FD, (M.IMPACT_VERIFIED,)),
        (K.INCIDENT_RESOLVED, Src.ITSM, CL, (M.CLOSED,)),
        (K.INCIDENT_CLOSED, Src.ITSM, CL, ()),
        (K.POSTMORTEM_COMPLETED, Src.OPERATOR, PM, (M.POSTMORTEM_COMPLETE,)),
    ]
    for minutes, (kind, source, state, stamped) in enumerate(steps, start=1):
        transition = send(status, kind, source, minutes)
        assert (transition.to_state, transition.stamped) == (state, stamped), kind
        status = transition.status
    assert set(status.milestones) == set(Milestone)
    assert status.incident_resolved and status.incident_closed


def test_reopen_is_the_only_backward_move() -> None:
    deployed = status_in(FD)
    later_stage_events = [K.IMPACT_CONFIRMED, K.WORKAROUND_PUBLISHED, K.FIX_STARTED, K.ALERTS_RESOLVED]
    for kind in later_stage_events:
        assert send(deployed, kind, next(iter(SENDERS[kind])), 30).to_state is FD
    with pytest.raises(TransitionNotAllowed):
        send(deployed, K.MOVED_BY_OPERATOR, Src.OPERATOR, 30, target=FIP, reason="not really fixed")

    reopened = send(deployed, K.ALERT_REFIRED, Src.ALERTMANAGER, 30)

    assert (reopened.from_state, reopened.to_state) == (FD, OPN)
    assert reopened.status.reopen_count == 1


def test_reopen_clears_the_cycle_and_keeps_what_it_cleared_as_evidence() -> None:
    closed = status_in(CL, incident_closed=True)
    closed = replace(closed, milestones={**closed.milestones, M.CX_UPDATED: at(40)})

    transition = send(
        closed, K.ALERT_REFIRED, Src.ALERTMANAGER, 50, evidence={"fingerprint": "a1d644f09ee6a3f0"}
    )

    assert set(transition.status.milestones) == {M.OPENED, M.IMPACT_IDENTIFIED, M.WORKAROUND_PUBLISHED}
    assert transition.status.milestones[M.OPENED] == T0
    assert not transition.status.incident_resolved and not transition.status.incident_closed
    assert transition.stamped == ()
    assert transition.evidence == {
        "fingerprint": "a1d644f09ee6a3f0",
        "cleared.fix_deployed": closed.milestones[M.FIX_DEPLOYED].isoformat(),
        "cleared.cx_updated": at(40).isoformat(),
        "cleared.impact_verified": closed.milestones[M.IMPACT_VERIFIED].isoformat(),
        "cleared.closed": closed.milestones[M.CLOSED].isoformat(),
        "cleared.incident_resolved": "true",
        "cleared.incident_closed": "true",
    }


def test_reopened_recovery_keeps_its_incident_and_waits_for_it_to_be_resolved_again() -> None:
    closed = status_in(CL, milestones={**status_in(CL).milestones, M.INCIDENT_LINKED: at(1)})
    status = send(closed, K.ALERT_REFIRED, Src.ALERTMANAGER, 60).status
    assert status.milestones[M.INCIDENT_LINKED] == at(1)

    status = send(status, K.ALERTS_RESOLVED, Src.ALERTMANAGER, 70).status
    status = send(status, K.IMPACT_VERIFIED, Src.WORKER, 80).status
    assert status.state is FD

    transition = send(status, K.INCIDENT_RESOLVED, Src.ITSM, 90)
    assert transition.to_state is CL
    assert transition.status.milestones[M.CLOSED] == at(90)
    assert transition.status.milestones[M.FIX_DEPLOYED] == at(70)


def test_refire_before_the_fix_is_not_a_reopen() -> None:
    with pytest.raises(TransitionNotAllowed, match="alert_refired is not accepted in state fix_in_progress"):
        send(status_in(FIP), K.ALERT_REFIRED, Src.ALERTMANAGER, 10)


def test_close_waits_for_incident_resolution_when_itsm_closes_incidents() -> None:
    verified = send(status_in(FD), K.IMPACT_VERIFIED, Src.WORKER, 30)
    assert verified.to_state is FD
    assert verified.stamped == (M.IMPACT_VERIFIED,)
    assert not is_ready_to_close(verified.status)

    resolved = send(verified.status, K.INCIDENT_RESOLVED, Src.ITSM, 45)

    assert resolved.to_state is CL
    assert resolved.stamped == (M.CLOSED,)
    assert resolved.status.milestones[M.CLOSED] == at(45)


def test_close_follows_impact_verification_when_the_incident_was_resolved_first() -> None:
    status = send(status_in(FIP), K.INCIDENT_RESOLVED, Src.ITSM, 20).status
    assert status.state is FD and status.incident_resolved

    transition = send(status, K.IMPACT_VERIFIED, Src.OPERATOR, 25)

    assert transition.to_state is CL
    assert transition.stamped == (M.IMPACT_VERIFIED, M.CLOSED)


def test_a_closed_incident_also_lets_the_recovery_close() -> None:
    status = send(status_in(FD), K.IMPACT_VERIFIED, Src.WORKER, 30).status
    transition = send(status, K.INCIDENT_CLOSED, Src.ITSM, 40)
    assert transition.to_state is CL
    assert transition.status.incident_closed and not transition.status.incident_resolved


@pytest.mark.parametrize("itsm_configured", [True, False])
def test_close_needs_no_incident_when_policy_is_comment_only(itsm_configured: bool) -> None:
    """`comment` and `monitor` leave the incident to people, so the recovery closes on verification."""
    status = status_in(FD, itsm_configured=itsm_configured, resolution_closes_incident=False)

    transition = send(status, K.IMPACT_VERIFIED, Src.WORKER, 30)

    assert transition.to_state is CL
    assert not transition.status.incident_resolved


def test_close_needs_no_incident_without_itsm() -> None:
    status = status_in(FD, itsm_configured=False)
    assert send(status, K.IMPACT_VERIFIED, Src.WORKER, 30).to_state is CL


def test_impact_verified_before_the_fix_changes_nothing() -> None:
    """A verification that was under way when an alert re-fired must not count for the new cycle."""
    status = status_in(FIP, itsm_configured=False)

    early = send(status, K.IMPACT_VERIFIED, Src.WORKER, 10)
    assert (early.to_state, early.stamped, early.changed) == (FIP, (), False)

    deployed = send(early.status, K.ALERTS_RESOLVED, Src.WORKER, 20, evidence={"stale_as_resolved": "true"})
    assert deployed.to_state is FD


def test_cx_update_counts_only_after_the_fix() -> None:
    before = send(status_in(WA), K.CX_UPDATED, Src.WORKER, 10)
    assert (before.stamped, before.changed) == ((), False)

    after = send(status_in(FD), K.CX_UPDATED, Src.OPERATOR, 40)
    assert after.stamped == (M.CX_UPDATED,)
    assert after.status.milestones[M.CX_UPDATED] == at(40)


def test_operator_can_close_without_the_guard_and_with_a_reason() -> None:
    status = status_in(FIP)
    assert not is_ready_to_close(status)

    transition = send(
        status, K.MOVED_BY_OPERATOR, Src.OPERATOR, 15, target=CL, reason="false positive, verified"
    )

    assert transition.to_state is CL
    assert transition.stamped == (M.CLOSED,)
    assert transition.reason == "false positive, verified"


def test_operator_cannot_move_backward_and_is_told_the_allowed_targets() -> None:
    status = status_in(FD)

    with pytest.raises(TransitionNotAllowed) as refused:
        send(status, K.MOVED_BY_OPERATOR, Src.OPERATOR, 30, target=WA, reason="wrong button")

    error = refused.value
    assert isinstance(error, InputError)
    assert (error.status, error.code) == (409, "transition-not-allowed")
    assert (error.recovery_id, error.current, error.requested) == (
        "rec-1",
        "fix_deployed",
        "workaround_available",
    )
    assert error.allowed == ("closed", "postmortem_complete", "canceled")
    assert error.allowed == allowed_operator_targets(status)
    assert str(error) == (
        "workaround_available is not allowed for recovery rec-1 in state fix_deployed: an operator may only "
        "move a recovery forward or cancel it; allowed targets: closed, postmortem_complete, canceled"
    )


def test_a_finished_recovery_offers_no_targets() -> None:
    assert allowed_operator_targets(status_in(PM)) == ()
    assert allowed_operator_targets(status_in(CA)) == ()
    with pytest.raises(TransitionNotAllowed, match="allowed targets: none"):
        send(status_in(CA), K.MOVED_BY_OPERATOR, Src.OPERATOR, 5, target=CL, reason="oops")


def test_owner_change_counts_an_escalation_bounce() -> None:
    status = status_in(OPN)
    first = send(status, K.OWNER_KNOWN, Src.ALERTMANAGER, 1, owner="payments")
    again = send(first.status, K.OWNER_KNOWN, Src.WORKER, 2, owner="payments")
    moved = send(again.status, K.OWNER_KNOWN, Src.ITSM, 3, owner="checkout")
    back = send(moved.status, K.OWNER_KNOWN, Src.OPERATOR, 4, owner="payments")

    assert first.stamped == (M.OWNER_KNOWN,)
    assert [t.status.escalation_bounces for t in (first, again, moved, back)] == [0, 0, 1, 2]
    assert [t.changed for t in (first, again, moved, back)] == [True, False, True, True]
    assert back.status.owner == "payments"
    assert back.status.milestones[M.OWNER_KNOWN] == at(1)


def test_postmortem_completes_only_a_closed_recovery() -> None:
    with pytest.raises(TransitionNotAllowed, match="not accepted in state fix_deployed"):
        send(status_in(FD), K.POSTMORTEM_COMPLETED, Src.ITSM, 60)
    assert send(status_in(CL), K.POSTMORTEM_COMPLETED, Src.ITSM, 60).stamped == (M.POSTMORTEM_COMPLETE,)


def test_after_the_postmortem_only_facts_are_recorded() -> None:
    status = status_in(PM)
    with pytest.raises(TransitionNotAllowed):
        send(status, K.WORKAROUND_PUBLISHED, Src.OPERATOR, 90)

    linked = send(status, K.INCIDENT_LINKED, Src.ITSM, 90)
    closed = send(linked.status, K.INCIDENT_CLOSED, Src.ITSM, 95)

    assert linked.stamped == (M.INCIDENT_LINKED,)
    assert (closed.to_state, closed.status.incident_closed) == (PM, True)


def test_canceled_refuses_everything_and_says_so() -> None:
    status = status_in(CA)
    for kind, sources in SENDERS.items():
        for source in sources:
            assert refusal(status, event(kind, source)) == "the recovery is canceled"


def test_a_source_may_only_send_its_own_events() -> None:
    assert (
        refusal(status_in(OPN), event(K.INCIDENT_RESOLVED, Src.OPERATOR))
        == "operator may not send incident_resolved"
    )
    assert refusal(status_in(FD), event(K.ALERT_REFIRED, Src.ITSM)) == "itsm may not send alert_refired"


def test_milestones_keep_the_first_time() -> None:
    status = send(status_in(OPN), K.IMPACT_CONFIRMED, Src.WORKER, 5).status
    again = send(status, K.IMPACT_CONFIRMED, Src.OPERATOR, 9)
    assert again.status.milestones[M.IMPACT_IDENTIFIED] == at(5)
    assert (again.stamped, again.changed) == ((), False)


def test_the_transition_carries_what_the_audit_trail_records() -> None:
    transition = send(
        status_in(IC), K.CANCELED, Src.OPERATOR, 7, evidence={"ticket": "INC0012"}, reason="drill"
    )

    assert transition.kind is K.CANCELED
    assert transition.source is Src.OPERATOR
    assert (transition.from_state, transition.to_state, transition.moved) == (IC, CA, True)
    assert transition.at == at(7)
    assert transition.evidence == {"ticket": "INC0012"}
    assert transition.reason == "drill"
    assert transition.status.state is CA


def test_a_new_recovery_is_opened_with_its_first_milestone() -> None:
    status = new_recovery_status(
        T0, itsm_configured=False, resolution_closes_incident=True, recovery_id="r-9"
    )
    assert (status.state, dict(status.milestones), status.recovery_id) == (OPN, {M.OPENED: T0}, "r-9")
    assert (status.reopen_count, status.escalation_bounces, status.owner) == (0, 0, None)


@pytest.mark.parametrize(
    ("kind", "fields", "field"),
    [
        (K.OWNER_KNOWN, {}, "owner"),
        (K.OWNER_KNOWN, {"owner": ""}, "owner"),
        (K.IMPACT_CONFIRMED, {"owner": "payments"}, "owner"),
        (K.MOVED_BY_OPERATOR, {"reason": "why"}, "target"),
        (K.CANCELED, {"target": CL}, "target"),
        (K.MOVED_BY_OPERATOR, {"target": CL}, "reason"),
        (K.MOVED_BY_OPERATOR, {"target": CL, "reason": "  "}, "reason"),
    ],
)
def test_an_event_carries_what_its_kind_needs(
    kind: RecoveryEventKind, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(PayloadInvalid) as invalid:
        RecoveryEvent(kind, Src.OPERATOR, **fields)
    assert invalid.value.field == field


@pytest.mark.parametrize(
    ("fired_after_fix", "inside"),
    [
        (timedelta(minutes=-5), True),
        (timedelta(0), True),
        (timedelta(minutes=59), True),
        (timedelta(hours=1), True),
        (timedelta(hours=1, seconds=1), False),
        (timedelta(days=1), False),
    ],
)
def test_reopen_window_counts_from_fix_deployed(fired_after_fix: timedelta, inside: bool) -> None:
    assert is_within_reopen_window(T0, T0 + fired_after_fix, timedelta(hours=1)) is inside


# --- properties over random event sequences --------------------------------------------------------------


@st.composite
def events(draw: st.DrawFn) -> RecoveryEvent:
    kind = draw(st.sampled_from(RecoveryEventKind))
    # Mostly a source that may send the kind, so that sequences get somewhere.
    source = draw(st.sampled_from(sorted(SENDERS[kind])) | st.sampled_from(TransitionSource))
    owner = draw(st.sampled_from(["payments", "checkout", "sre"])) if kind is K.OWNER_KNOWN else None
    target = draw(st.sampled_from(RecoveryState)) if kind is K.MOVED_BY_OPERATOR else None
    reason = "operator says so" if kind is K.MOVED_BY_OPERATOR else None
    return RecoveryEvent(kind, source, {"step": "x"}, owner=owner, target=target, reason=reason)


@settings(max_examples=400, deadline=None)
@given(itsm=st.booleans(), closes=st.booleans(), sequence=st.lists(events(), max_size=60))
def test_random_sequences_never_move_back_overwrite_milestones_or_leave_canceled(
    itsm: bool, closes: bool, sequence: list[RecoveryEvent]
) -> None:
    status = new_recovery_status(T0, itsm_configured=itsm, resolution_closes_incident=closes)
    for step, recovery_event in enumerate(sequence, start=1):
        now = at(step)
        try:
            transition = apply_event(status, recovery_event, now)
        except TransitionNotAllowed:
            assert refusal(status, recovery_event) is not None
            continue
        old, new = status, transition.status
        assert old.state is not CA, "canceled is absorbing"
        refired = recovery_event.kind is K.ALERT_REFIRED
        if refired:
            assert (new.state, new.reopen_count) == (OPN, old.reopen_count + 1)
        elif new.state is not CA:
            assert rank(new.state) >= rank(old.state)
        kept = {m: t for m, t in old.milestones.items() if not (refired and m in CYCLE_MILESTONES)}
        assert {m: new.milestones[m] for m in kept} == kept, "a milestone was overwritten"
        assert set(transition.stamped) == set(new.milestones) - set(old.milestones)
        assert all(new.milestones[m] == now for m in transition.stamped)
        if new.state is CL and old.state is not CL and recovery_event.kind is not K.MOVED_BY_OPERATOR:
            assert is_ready_to_close(new)
        status = new
