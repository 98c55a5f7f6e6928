"""What operators do to a recovery, shared by the JSON API (`/api/v1/recoveries`) and the board's forms.

Every change runs in one write transaction with the recovery row locked, goes through the state machine
and `commit_transition` (so the jobs a milestone implies are enqueued), and leaves one audit entry per
change with the operator's token name as actor. The metrics of its transitions are observed after the
commit, at the moment each happened. A change is a function of the locked row; the factories below
(`moving`, `patching`, `stepping`, `noting`) build the ones the API and the board offer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from recoverlink.domain.bounds import MAX_BIGINT
from recoverlink.domain.errors import NotFound, PayloadInvalid, TransitionNotAllowed
from recoverlink.domain.recovery_state import (
    RecoveryEvent,
    RecoveryEventKind,
    RecoveryState,
    Transition,
    TransitionSource,
    allowed_operator_targets,
    apply_event,
    refusal,
)
from recoverlink.recovery_jobs import JobPlan, commit_transition, finish_facts
from recoverlink.store import recoveries as store
from recoverlink.store.engine import Store
from recoverlink.store.recovery_queries import set_operator_texts
from recoverlink.telemetry import Metrics

OPERATOR = TransitionSource.OPERATOR
TEXT_FIELDS = ("workaround", "public_message")
# Forward moves that are a step ITSM or the worker also report: applied as that step's event.
STEP_EVENTS: Mapping[RecoveryState, RecoveryEventKind] = {
    RecoveryState.IMPACT_CONFIRMED: RecoveryEventKind.IMPACT_CONFIRMED,
    RecoveryState.WORKAROUND_AVAILABLE: RecoveryEventKind.WORKAROUND_PUBLISHED,
    RecoveryState.FIX_IN_PROGRESS: RecoveryEventKind.FIX_STARTED,
}
# The events an operator may send as a step of their own (the board's buttons).
OPERATOR_STEPS = frozenset(
    {
        RecoveryEventKind.IMPACT_CONFIRMED,
        RecoveryEventKind.WORKAROUND_PUBLISHED,
        RecoveryEventKind.FIX_STARTED,
        RecoveryEventKind.IMPACT_VERIFIED,
        RecoveryEventKind.CX_UPDATED,
    }
)
NOTE_MAX_LENGTH = 2000

Change = Callable[[Connection, Any, str, datetime], list[Transition]]
T = TypeVar("T")


@dataclass(frozen=True)
class Applied(Generic[T]):
    """What a change did (its transitions, changed or not) and what the caller read before the commit."""

    transitions: list[Transition]
    answer: T

    @property
    def changed(self) -> bool:
        return any(t.changed for t in self.transitions)


@dataclass(frozen=True)
class RecoveryOperations:
    """The store, metrics and job plan that an operator's change needs."""

    store: Store
    metrics: Metrics
    plan: JobPlan

    def apply(
        self, recovery_id: int, actor: str, now: datetime, change: Change, read: Callable[[Connection], T]
    ) -> Applied[T]:
        """Lock the row, apply `change`, `read` the result in the same transaction; then observe metrics.

        Raises NotFound for an unknown recovery, and whatever the change refuses (409, 400)."""
        if not 1 <= recovery_id <= MAX_BIGINT:
            raise NotFound(f"recovery {recovery_id} not found")
        with self.store.write() as conn:
            row = store.load_row(conn, recovery_id, for_update=True)
            if row is None:
                raise NotFound(f"recovery {recovery_id} not found")
            transitions = change(conn, row, actor, now)
            answer = read(conn)
        for transition in transitions:
            finish = finish_facts(row, transition)
            self.metrics.transition_observed(transition, row.team, row.priority, row.service, finish)
        return Applied(transitions, answer)


def checked_text(value: str, *, field: str, max_length: int) -> str:
    """Free text an operator typed, as stored: trimmed, not blank, no NUL (PostgreSQL text holds none),
    at most `max_length` characters; PayloadInvalid naming the field otherwise."""
    text = value.replace("\r\n", "\n").strip()
    checks = (
        ("\x00" in text, "must not contain NUL characters"),
        (not text, "must not be blank"),
        (len(text) > max_length, f"must be at most {max_length} characters"),
    )
    problem = next((why for failed, why in checks if failed), None)
    if problem is not None:
        raise PayloadInvalid(f"{field}: {problem}", field=field)
    return text


def moving(plan: JobPlan, target: RecoveryState, reason: str, texts: Mapping[str, str]) -> Change:
    """Move by hand to a later stage or cancel, with a reason; a step ITSM also reports is applied as
    that step's event. `texts` (workaround, public message) are set with it."""

    def change(conn: Connection, row: Any, actor: str, now: datetime) -> list[Transition]:
        status = store.status_of(row)
        evidence = {"target": target.value}
        move = RecoveryEvent(
            RecoveryEventKind.MOVED_BY_OPERATOR, OPERATOR, evidence, target=target, reason=reason
        )
        why = refusal(status, move)
        if why is not None:
            allowed = [s.value for s in allowed_operator_targets(status)]
            raise TransitionNotAllowed(str(row.id), status.state, target, allowed, reason=why)
        kind = STEP_EVENTS.get(target)
        event = RecoveryEvent(kind, OPERATOR, evidence, reason=reason) if kind else move
        transition = apply_event(status, event, now)
        if transition.changed:
            commit_transition(conn, row, transition, actor, plan)
        set_texts(conn, row, texts, actor, now)
        return [transition]

    return change


def patching(plan: JobPlan, owner: str | None, texts: Mapping[str, str | None]) -> Change:
    """Set the owner team (an owner_known event; another team counts an escalation bounce) and/or the
    texts (None clears one)."""

    def change(conn: Connection, row: Any, actor: str, now: datetime) -> list[Transition]:
        transitions = []
        if owner is not None and owner != row.owner:
            status = store.status_of(row)
            evidence = {"owner": owner, "previous_owner": row.owner or ""}
            event = RecoveryEvent(RecoveryEventKind.OWNER_KNOWN, OPERATOR, evidence, owner=owner)
            transition = apply_event(status, event, now)  # 409 once canceled
            commit_transition(conn, row, transition, actor, plan)
            transitions.append(transition)
        set_texts(conn, row, texts, actor, now)
        return transitions

    return change


def stepping(
    plan: JobPlan, kind: RecoveryEventKind, reason: str | None, texts: Mapping[str, str] | None = None
) -> Change:
    """One operator step: confirm impact, publish a workaround, approve customer messaging (fix
    started), mark impact verified, or confirm CX was updated. A step whose stage is already reached
    still stamps its milestone; one that tells nothing new records nothing (`changed` is False)."""
    if kind not in OPERATOR_STEPS:
        raise ValueError(f"{kind} is not an operator step")

    def change(conn: Connection, row: Any, actor: str, now: datetime) -> list[Transition]:
        event = RecoveryEvent(kind, OPERATOR, {}, reason=reason)
        transition = apply_event(store.status_of(row), event, now)  # 409 once over
        if transition.changed:
            commit_transition(conn, row, transition, actor, plan)
        set_texts(conn, row, texts or {}, actor, now)
        return [transition]

    return change


def noting(text: str) -> Change:
    """A note on the recovery's audit trail (kind `note`); it moves nothing."""

    def change(conn: Connection, row: Any, actor: str, now: datetime) -> list[Transition]:
        store.append_audit(
            conn, row.id, at=now, source=OPERATOR.value, actor=actor, kind="note", details={"text": text}
        )
        return []

    return change


def set_texts(conn: Connection, row: Any, texts: Mapping[str, str | None], actor: str, now: datetime) -> None:
    """Store the texts that differ from the row's, with one audit entry each."""
    changed = {name: text for name, text in texts.items() if text != getattr(row, name)}
    set_operator_texts(conn, row.id, changed, now)
    for name, text in changed.items():
        details = {"value": text, "previous": getattr(row, name)}
        store.append_audit(
            conn, row.id, at=now, source=OPERATOR.value, actor=actor, kind=name, details=details
        )
