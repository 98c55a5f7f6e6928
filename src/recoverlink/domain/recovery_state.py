"""The recovery state machine: which events a recovery accepts, where they move it, what they stamp.

`apply_event(status, event, now)` returns a `Transition` (the new status and what the audit trail
records) or raises `TransitionNotAllowed`, which the JSON API answers with 409 naming the allowed
targets. Callers for whom a refusal is an expected outcome (ITSM webhook, worker) ask `refusal()` first.

Rules (DESIGN.md "Recovery state model"): the state is the furthest stage reached, so events only move
it forward, skipping stages as needed; an event whose stage is already reached still stamps its
milestone. Every milestone is stamped once per cycle. `alert_refired` is the one backward move: it
starts a new cycle. `closed` is entered as soon as `is_ready_to_close` holds, whichever event comes
last; an operator may move there regardless, with a reason. `canceled` is absorbing.

kind                  sent by              accepted in          reaches / stamps
impact_confirmed      worker operator      opened..closed       impact_confirmed / impact_identified
workaround_published  itsm operator        opened..closed       workaround_available / workaround_published
fix_started           itsm operator        opened..closed       fix_in_progress
alerts_resolved       alertmanager worker  opened..closed       fix_deployed / fix_deployed
incident_resolved     itsm                 not canceled         fix_deployed / fix_deployed; incident resolved
incident_closed       itsm                 not canceled         fix_deployed / fix_deployed; incident closed
impact_verified       worker operator      not canceled         - / impact_verified [1]
owner_known           any source           not canceled         - / owner_known; the owner team [2]
incident_linked       worker itsm          not canceled         - / incident_linked
cx_updated            worker operator      not canceled         - / cx_updated [1]
postmortem_completed  operator itsm        closed               postmortem_complete / postmortem_complete
canceled              itsm operator        opened..closed       canceled
alert_refired         alertmanager         fix_deployed closed  opened, backward; clears the cycle [3]
moved_by_operator     operator             opened..closed       event.target / the target's milestone [4]

`opened..closed` is every stage but postmortem_complete; `not canceled` includes it.
[1] only once fix_deployed is reached in this cycle; earlier it is accepted and changes nothing (a
    verification or CX update for a cycle that a reopen ended must not count for the next one).
[2] carries the owner team; a later, different team counts an escalation bounce.
[3] fix_deployed, cx_updated, impact_verified, closed and the incident resolved/closed flags; the old
    values go into the transition's evidence. The incident link stays.
[4] any later stage, or canceled (`allowed_operator_targets`); needs a reason; bypasses the closing guard.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from recoverlink.domain.errors import PayloadInvalid, TransitionNotAllowed


class RecoveryState(StrEnum):
    """The furthest stage a recovery reached (`canceled` aside, the members are in stage order)."""

    OPENED = "opened"
    IMPACT_CONFIRMED = "impact_confirmed"
    WORKAROUND_AVAILABLE = "workaround_available"
    FIX_IN_PROGRESS = "fix_in_progress"
    FIX_DEPLOYED = "fix_deployed"
    CLOSED = "closed"
    POSTMORTEM_COMPLETE = "postmortem_complete"
    CANCELED = "canceled"


STAGES: tuple[RecoveryState, ...] = tuple(s for s in RecoveryState if s is not RecoveryState.CANCELED)
_RANK: Mapping[RecoveryState, int] = {stage: rank for rank, stage in enumerate(STAGES)}


class Milestone(StrEnum):
    """A CX step with its own timestamp; the recovery-latency metrics are differences between them."""

    OPENED = "opened"
    OWNER_KNOWN = "owner_known"
    IMPACT_IDENTIFIED = "impact_identified"
    INCIDENT_LINKED = "incident_linked"
    WORKAROUND_PUBLISHED = "workaround_published"
    FIX_DEPLOYED = "fix_deployed"
    CX_UPDATED = "cx_updated"
    IMPACT_VERIFIED = "impact_verified"
    CLOSED = "closed"
    POSTMORTEM_COMPLETE = "postmortem_complete"


class TransitionSource(StrEnum):
    ALERTMANAGER = "alertmanager"
    ITSM = "itsm"
    OPERATOR = "operator"
    WORKER = "worker"


class RecoveryEventKind(StrEnum):
    """Something that happened to a recovery; the table in the module docstring says what each does."""

    IMPACT_CONFIRMED = "impact_confirmed"
    WORKAROUND_PUBLISHED = "workaround_published"
    FIX_STARTED = "fix_started"
    ALERTS_RESOLVED = "alerts_resolved"  # every alert resolved (the worker may count stale as resolved)
    INCIDENT_RESOLVED = "incident_resolved"
    INCIDENT_CLOSED = "incident_closed"
    IMPACT_VERIFIED = "impact_verified"
    OWNER_KNOWN = "owner_known"
    INCIDENT_LINKED = "incident_linked"
    CX_UPDATED = "cx_updated"
    POSTMORTEM_COMPLETED = "postmortem_completed"
    CANCELED = "canceled"
    ALERT_REFIRED = "alert_refired"  # inside the reopen window; correlation decides that
    MOVED_BY_OPERATOR = "moved_by_operator"


@dataclass(frozen=True)
class RecoveryStatus:
    """What the state machine knows about one recovery; the store converts its row to and from this."""

    state: RecoveryState
    milestones: Mapping[Milestone, datetime]
    itsm_configured: bool
    resolution_closes_incident: bool  # the rule's resolution policy is `close`, not `comment`/`monitor`
    owner: str | None = None
    escalation_bounces: int = 0
    reopen_count: int = 0
    incident_resolved: bool = False
    incident_closed: bool = False
    recovery_id: str | None = None  # only to name the recovery in errors

    def has_reached(self, stage: RecoveryState) -> bool:
        """Whether the recovery got to `stage` (a member of STAGES) or further; never once canceled."""
        return _RANK.get(self.state, -1) >= _RANK[stage]


def new_recovery_status(
    opened_at: datetime,
    *,
    itsm_configured: bool,
    resolution_closes_incident: bool,
    recovery_id: str | None = None,
) -> RecoveryStatus:
    """The status of a recovery its first alert just opened."""
    return RecoveryStatus(
        state=RecoveryState.OPENED,
        milestones={Milestone.OPENED: opened_at},
        itsm_configured=itsm_configured,
        resolution_closes_incident=resolution_closes_incident,
        recovery_id=recovery_id,
    )


@dataclass(frozen=True)
class RecoveryEvent:
    """One event for a recovery, with its source and the evidence the audit trail keeps.

    Raises `PayloadInvalid` when the event lacks what its kind needs: `owner` for owner_known, `target`
    and `reason` for moved_by_operator (and only those kinds carry an owner or a target).
    """

    kind: RecoveryEventKind
    source: TransitionSource
    evidence: Mapping[str, str] = field(default_factory=dict)
    owner: str | None = None
    target: RecoveryState | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        owner_kind = self.kind is RecoveryEventKind.OWNER_KNOWN
        move_kind = self.kind is RecoveryEventKind.MOVED_BY_OPERATOR
        checks = [
            ("owner", owner_kind != bool(self.owner), "owner_known, and only it, carries the owner team"),
            (
                "target",
                move_kind != (self.target is not None),
                "moved_by_operator, and only it, has a target",
            ),
            ("reason", move_kind and not (self.reason or "").strip(), "a move by hand needs a reason"),
        ]
        for name, wrong, message in checks:
            if wrong:
                raise PayloadInvalid(f"{self.kind}: {message}", field=name)


@dataclass(frozen=True)
class Transition:
    """One accepted event: the new status, and what an audit entry records about it."""

    status: RecoveryStatus
    kind: RecoveryEventKind
    source: TransitionSource
    from_state: RecoveryState
    to_state: RecoveryState
    stamped: tuple[Milestone, ...]  # milestones first reached now, in Milestone order
    at: datetime
    evidence: Mapping[str, str]  # the event's, plus what a reopen cleared (`cleared.<name>`)
    reason: str | None
    changed: bool  # False when the event told nothing new (a duplicate, a milestone before the fix)

    @property
    def moved(self) -> bool:
        return self.from_state is not self.to_state


_Record = Callable[[RecoveryStatus, RecoveryEvent], RecoveryStatus]


@dataclass(frozen=True)
class _Rule:
    """One row of the decision table."""

    sources: frozenset[TransitionSource]
    accepted_in: frozenset[RecoveryState]
    stage: RecoveryState | None = None  # reached if later than the current state (or canceled)
    milestone: Milestone | None = None  # defaults to the stage's own milestone
    after_fix: bool = False  # the milestone counts only once fix_deployed is reached
    record: _Record | None = None  # a fact to keep besides state and milestones


def _owner(status: RecoveryStatus, event: RecoveryEvent) -> RecoveryStatus:
    bounced = status.owner is not None and event.owner != status.owner
    return replace(status, owner=event.owner, escalation_bounces=status.escalation_bounces + int(bounced))


def _incident_resolved(status: RecoveryStatus, event: RecoveryEvent) -> RecoveryStatus:
    return replace(status, incident_resolved=True)


def _incident_closed(status: RecoveryStatus, event: RecoveryEvent) -> RecoveryStatus:
    return replace(status, incident_closed=True)


def _by(*sources: TransitionSource) -> frozenset[TransitionSource]:
    return frozenset(sources)


def _in(*states: RecoveryState) -> frozenset[RecoveryState]:
    return frozenset(states)


# The decision table (the module docstring's table, in code). Short names keep each row on one line.
_S, _M, _K = RecoveryState, Milestone, RecoveryEventKind
_AM, _ITSM = TransitionSource.ALERTMANAGER, TransitionSource.ITSM
_OP, _WORKER = TransitionSource.OPERATOR, TransitionSource.WORKER
_ACTIVE = frozenset(STAGES) - {_S.POSTMORTEM_COMPLETE}
_ALL_STAGES = frozenset(STAGES)
_RULES: Mapping[RecoveryEventKind, _Rule] = {
    _K.IMPACT_CONFIRMED: _Rule(_by(_WORKER, _OP), _ACTIVE, _S.IMPACT_CONFIRMED),
    _K.WORKAROUND_PUBLISHED: _Rule(_by(_ITSM, _OP), _ACTIVE, _S.WORKAROUND_AVAILABLE),
    _K.FIX_STARTED: _Rule(_by(_ITSM, _OP), _ACTIVE, _S.FIX_IN_PROGRESS),
    _K.ALERTS_RESOLVED: _Rule(_by(_AM, _WORKER), _ACTIVE, _S.FIX_DEPLOYED),
    # ITSM tools often close an incident after the postmortem: a fact to keep, not a conflict.
    _K.INCIDENT_RESOLVED: _Rule(_by(_ITSM), _ALL_STAGES, _S.FIX_DEPLOYED, record=_incident_resolved),
    _K.INCIDENT_CLOSED: _Rule(_by(_ITSM), _ALL_STAGES, _S.FIX_DEPLOYED, record=_incident_closed),
    _K.IMPACT_VERIFIED: _Rule(_by(_WORKER, _OP), _ALL_STAGES, None, _M.IMPACT_VERIFIED, after_fix=True),
    _K.OWNER_KNOWN: _Rule(_by(*TransitionSource), _ALL_STAGES, None, _M.OWNER_KNOWN, record=_owner),
    _K.INCIDENT_LINKED: _Rule(_by(_WORKER, _ITSM), _ALL_STAGES, None, _M.INCIDENT_LINKED),
    _K.CX_UPDATED: _Rule(_by(_WORKER, _OP), _ALL_STAGES, None, _M.CX_UPDATED, after_fix=True),
    _K.POSTMORTEM_COMPLETED: _Rule(_by(_OP, _ITSM), _in(_S.CLOSED), _S.POSTMORTEM_COMPLETE),
    _K.CANCELED: _Rule(_by(_ITSM, _OP), _ACTIVE, _S.CANCELED),
    _K.ALERT_REFIRED: _Rule(_by(_AM), _in(_S.FIX_DEPLOYED, _S.CLOSED)),
    _K.MOVED_BY_OPERATOR: _Rule(_by(_OP), _ACTIVE),  # the stage is the event's target
}
_STAGE_MILESTONE: Mapping[RecoveryState, Milestone] = {
    _S.OPENED: _M.OPENED,
    _S.IMPACT_CONFIRMED: _M.IMPACT_IDENTIFIED,
    _S.WORKAROUND_AVAILABLE: _M.WORKAROUND_PUBLISHED,
    _S.FIX_DEPLOYED: _M.FIX_DEPLOYED,
    _S.CLOSED: _M.CLOSED,
    _S.POSTMORTEM_COMPLETE: _M.POSTMORTEM_COMPLETE,
}
_CYCLE_MILESTONES = frozenset({_M.FIX_DEPLOYED, _M.CX_UPDATED, _M.IMPACT_VERIFIED, _M.CLOSED})


def allowed_operator_targets(status: RecoveryStatus) -> tuple[RecoveryState, ...]:
    """Where an operator may move the recovery: any later stage, or canceled; nowhere once it is over."""
    if status.state not in _ACTIVE:
        return ()
    return (*STAGES[_RANK[status.state] + 1 :], RecoveryState.CANCELED)


def is_ready_to_close(status: RecoveryStatus) -> bool:
    """The closing guard: the fix is deployed, impact is verified, and the incident needs no resolving
    first (it is resolved or closed, there is no ITSM, or the resolution policy does not close it)."""
    incident_done = status.incident_resolved or status.incident_closed
    incident_needed = status.itsm_configured and status.resolution_closes_incident
    verified = Milestone.IMPACT_VERIFIED in status.milestones
    return (
        status.has_reached(RecoveryState.FIX_DEPLOYED) and verified and (incident_done or not incident_needed)
    )


def is_within_reopen_window(fix_deployed_at: datetime, fired_at: datetime, window: timedelta) -> bool:
    """Whether a re-fire reopens the recovery (True) or starts a new, linked one (False).

    The window counts from fix_deployed and includes its end; a fire from before the fix is inside it.
    """
    return fired_at - fix_deployed_at <= window


def refusal(status: RecoveryStatus, event: RecoveryEvent) -> str | None:
    """Why the recovery cannot take `event` now, or None when `apply_event` will accept it."""
    rule = _RULES[event.kind]
    checks = [
        (status.state is RecoveryState.CANCELED, "the recovery is canceled"),
        (event.source not in rule.sources, f"{event.source} may not send {event.kind}"),
        (status.state not in rule.accepted_in, f"{event.kind} is not accepted in state {status.state}"),
        (
            event.target is not None and event.target not in allowed_operator_targets(status),
            "an operator may only move a recovery forward or cancel it",
        ),
    ]
    return next((why for refused, why in checks if refused), None)


def apply_event(status: RecoveryStatus, event: RecoveryEvent, now: datetime) -> Transition:
    """Apply one event at `now`; raise `TransitionNotAllowed` (409) when `refusal` names a reason."""
    why = refusal(status, event)
    if why is not None:
        requested = event.target or event.kind
        allowed = allowed_operator_targets(status)
        raise TransitionNotAllowed(status.recovery_id, status.state, requested, allowed, reason=why)
    if event.kind is RecoveryEventKind.ALERT_REFIRED:
        applied, cleared = _reopen(status)
    else:
        applied, cleared = _advance(status, event, now), {}
    new = _close_if_ready(applied, now)
    return Transition(
        status=new,
        kind=event.kind,
        source=event.source,
        from_state=status.state,
        to_state=new.state,
        stamped=tuple(m for m in Milestone if m in new.milestones and m not in status.milestones),
        at=now,
        evidence={**event.evidence, **cleared},
        reason=event.reason,
        changed=new != status,
    )


def _advance(status: RecoveryStatus, event: RecoveryEvent, now: datetime) -> RecoveryStatus:
    """Record the event's fact, reach its stage if that is forward, and stamp its milestone."""
    rule = _RULES[event.kind]
    stage = event.target or rule.stage
    new = rule.record(status, event) if rule.record else status
    if stage is not None and (stage is RecoveryState.CANCELED or not new.has_reached(stage)):
        new = replace(new, state=stage)
    milestone = rule.milestone or (_STAGE_MILESTONE.get(stage) if stage else None)
    if milestone is not None and (not rule.after_fix or new.has_reached(RecoveryState.FIX_DEPLOYED)):
        new = _stamp(new, milestone, now)
    return new


def _close_if_ready(status: RecoveryStatus, now: datetime) -> RecoveryStatus:
    if status.has_reached(RecoveryState.CLOSED) or not is_ready_to_close(status):
        return status
    return _stamp(replace(status, state=RecoveryState.CLOSED), Milestone.CLOSED, now)


def _stamp(status: RecoveryStatus, milestone: Milestone, now: datetime) -> RecoveryStatus:
    """Stamp a milestone the first time only: a later time must not hide how long the first one took."""
    if milestone in status.milestones:
        return status
    return replace(status, milestones={**status.milestones, milestone: now})


def _reopen(status: RecoveryStatus) -> tuple[RecoveryStatus, dict[str, str]]:
    """Start a new cycle at opened, keeping what the cycle cleared as evidence so nothing is lost."""
    cleared = {
        f"cleared.{m}": status.milestones[m].isoformat() for m in _CYCLE_MILESTONES if m in status.milestones
    }
    flags = {"incident_resolved": status.incident_resolved, "incident_closed": status.incident_closed}
    cleared.update({f"cleared.{name}": "true" for name, was_set in flags.items() if was_set})
    new = replace(
        status,
        state=RecoveryState.OPENED,
        milestones={m: t for m, t in status.milestones.items() if m not in _CYCLE_MILESTONES},
        reopen_count=status.reopen_count + 1,
        incident_resolved=False,
        incident_closed=False,
    )
    return new, cleared
