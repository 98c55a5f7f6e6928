"""Which `action.send` jobs a recovery's opening and transitions cause.

A recovery keeps its actions' triggers from its opening (`recoveries.actions`); every committed
transition fires the actions whose `on` names the state it entered or a milestone it stamped.
Actions fire whoever made the transition: ingest, the worker, an operator and the ITSM alike (an
action goes to a system of action, never back to the ITSM, so an ITSM's change cannot echo).

One job per action, trigger and cycle: the idempotency key
`action.send/<recovery>/<rule/action>/<cycle>/<trigger>` makes a duplicate delivery, a retried
transaction or the same milestone seen twice one job; a reopen (a new cycle) fires them again.
The key is also the `Idempotency-Key` header the receiver sees, the same on every retry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from recoverlink.domain.actions import firing, triggers_of
from recoverlink.domain.recovery_state import Milestone, RecoveryState, Transition
from recoverlink.store.outbox import NewJob

ACTION_SEND = "action.send"
OPENING_TRIGGERS = (RecoveryState.OPENED.value,)


def action_job(
    recovery_id: int, *, action: str, kind: str, trigger: str, cycle: int, due_at: datetime
) -> NewJob:
    payload = {"recovery_id": recovery_id, "action": action, "kind": kind, "trigger": trigger, "cycle": cycle}
    key = f"{ACTION_SEND}/{recovery_id}/{action}/{cycle}/{trigger}"
    return NewJob(ACTION_SEND, key, payload, due_at, recovery_id)


def jobs_for(
    recovery_id: int,
    planned: Sequence[Mapping[str, Any]],
    triggers: Sequence[str],
    cycle: int,
    at: datetime,
) -> list[NewJob]:
    """One job per planned action whose `on` names one of `triggers`."""
    return [
        action_job(recovery_id, action=action, kind=kind, trigger=trigger, cycle=cycle, due_at=at)
        for action, kind, trigger in firing(planned, triggers)
    ]


def jobs_at_opening(
    recovery_id: int, planned: Sequence[Mapping[str, Any]], stamped: Sequence[Milestone], at: datetime
) -> list[NewJob]:
    """A new recovery entered `opened`; `stamped` are the milestones its opening stamped too
    (`owner_known` when the catalog or a rule names the owner)."""
    triggers = tuple(dict.fromkeys([*OPENING_TRIGGERS, *(m.value for m in stamped)]))
    return jobs_for(recovery_id, planned, triggers, 0, at)


def jobs_after_transition(row: Any, transition: Transition) -> list[NewJob]:
    """The action jobs of one committed transition of `row`."""
    planned = row.actions or []
    if not planned:
        return []
    return jobs_for(row.id, planned, triggers_of(transition), transition.status.reopen_count, transition.at)
