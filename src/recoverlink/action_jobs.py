"""`action.send`: send one CX handoff action, audit it, and mark the recovery's CX update.

The job names its action (`rule/action`); what it sends comes from the rules the worker runs now
(a reload that fixes a template fixes the retries too), rendered over the recovery as it is now,
read when the job runs. A sent action gets an `action_sent` audit entry; one that finally fails
(dead-lettered) gets `action_failed`. Both count in `recoverlink_actions_total` once, with
`audited` saying whether the entry was written. The first successful agent desktop, knowledge
base, chatbot or customer messaging action of a cycle after its fix is the CX update: the worker's
`cx_updated` event (DESIGN.md), observed in `recoverlink_recovery_fix_to_cx_update_seconds`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from recoverlink.adapters.actions import ActionSender, SentAction
from recoverlink.domain.action_context import RecoveryView, action_context
from recoverlink.domain.actions import Action, ActionKind, counts_as_cx_update
from recoverlink.domain.errors import ActionError
from recoverlink.domain.impact import impact_summary
from recoverlink.domain.outbox import JobFailure
from recoverlink.domain.recovery_state import (
    RecoveryEvent,
    RecoveryEventKind,
    TransitionSource,
)
from recoverlink.domain.rules import RuleSet
from recoverlink.recovery_jobs import JobPlan, apply_and_commit
from recoverlink.store import recoveries as store
from recoverlink.store.common import from_db_time
from recoverlink.store.engine import Store
from recoverlink.store.outbox import ClaimedJob
from recoverlink.telemetry import Metrics
from recoverlink.worker import Recorded, Recorder

ACTOR = "worker"
SOURCE = TransitionSource.WORKER


class LiveActions:
    """The actions of the rule set running now, by `rule/action`; re-indexed when it reloads."""

    def __init__(self, ruleset: Callable[[], RuleSet]) -> None:
        self._ruleset = ruleset
        self._lock = threading.Lock()
        self._version: str | None = None
        self._index: dict[str, Action] = {}

    def get(self, ref: str) -> Action | None:
        ruleset = self._ruleset()
        with self._lock:
            if ruleset.version != self._version:
                self._index = {a.ref: a for rule in ruleset.rules for a in rule.actions}
                self._version = ruleset.version
            return self._index.get(ref)


def recovery_view(row: Any) -> RecoveryView:
    """The recovery row as an action's templates see it."""
    context = row.impact_context or {}
    service = context.get("service") or {}
    incident = None
    if row.incident_id is not None:
        incident = {
            "system": row.itsm_system,
            "number": row.incident_number,
            "url": row.incident_url,
            "status": row.incident_status,
        }
    return RecoveryView(
        id=int(row.id),
        title=row.title,
        state=row.state,
        priority=row.priority,
        service=row.service,
        team=row.team,
        owner=row.owner,
        opened_at=from_db_time(row.opened_at).isoformat(),
        state_changed_at=from_db_time(row.state_changed_at).isoformat(),
        cycle=row.reopen_count,
        milestones=dict(row.milestones),
        journeys=tuple(service.get("journeys") or ()),
        segments=tuple(service.get("segments") or ()),
        impact=impact_summary(row.impact_sources or [], row.impact or {}),
        workaround=row.workaround,
        public_message=row.public_message,
        incident=incident,
        labels=context.get("labels") or {},
        annotations=context.get("annotations") or {},
        fields=context.get("fields") or {},
    )


@dataclass
class SendAction:
    """The `action.send` handler: the sender, the live actions, the store (to read the recovery),
    the plan (for the jobs a CX update causes) and the metrics."""

    sender: ActionSender
    actions: LiveActions
    store: Store
    plan: JobPlan
    metrics: Metrics

    def target(self, job: ClaimedJob) -> str | None:
        action = self.actions.get(str(job.payload["action"]))
        return self.sender.target(action) if action is not None else None

    def perform(self, job: ClaimedJob, now: datetime) -> Recorder:
        action = self._action(job)
        with self.store.read() as conn:
            row = store.load_row(conn, job.payload["recovery_id"])
        if row is None:
            return lambda conn, at: Recorded({"skipped": "recovery not found"})
        context = action_context(
            recovery_view(row),
            trigger=str(job.payload["trigger"]),
            rule=action.rule,
            name=action.name,
            kind=action.kind.value,
            now=now,
        )
        sent = self.sender.send(action, context, job.idempotency_key)
        return lambda conn, at: self._record(conn, job, action, sent, at)

    def _action(self, job: ClaimedJob) -> Action:
        ref = str(job.payload["action"])
        action = self.actions.get(ref)
        if action is None:
            raise ActionError(
                f"action {ref}: no rule defines it any more (removed by a reload?)",
                retryable=False,
                reason="unknown_action",
            )
        return action

    def _record(
        self, conn: Connection, job: ClaimedJob, action: Action, sent: SentAction, now: datetime
    ) -> Recorded:
        result = {"host": sent.host, "status": sent.status}
        row = store.load_row(conn, job.payload["recovery_id"], for_update=True)
        observe: list[Callable[[], None]] = []
        if row is not None:
            details = {**_described(job, action.kind), **result, "attempt": job.attempts}
            _audit(conn, row.id, "action_sent", details, now)
            observe = self._cx_updated(conn, row, job, action, now)
        audited = row is not None
        counted = [lambda: self.metrics.action_finished(action.kind, "success", audited)]
        return Recorded({**result, "audited": audited}, [*counted, *observe])

    def _cx_updated(
        self, conn: Connection, row: Any, job: ClaimedJob, action: Action, now: datetime
    ) -> list[Callable[[], None]]:
        """A CX-kind action of the recovery's current cycle stamps `cx_updated` (once the fix is
        deployed; before, the event is accepted and changes nothing)."""
        if not counts_as_cx_update(action.kind) or job.payload.get("cycle") != row.reopen_count:
            return []
        evidence = {"action": action.ref, "kind": action.kind.value, "trigger": str(job.payload["trigger"])}
        event = RecoveryEvent(RecoveryEventKind.CX_UPDATED, SOURCE, evidence)
        return apply_and_commit(conn, row, event, now, actor=ACTOR, plan=self.plan, metrics=self.metrics)

    def record_failure(
        self, conn: Connection, job: ClaimedJob, failure: JobFailure, final: bool, now: datetime
    ) -> None:
        """A dead-lettered action is audited and counted; attempts before it are the job's own."""
        if not final:
            return
        kind = self._kind(job)
        row = store.load_row(conn, job.payload["recovery_id"])
        if row is not None:
            details = {**_described(job, kind), "reason": failure.reason, "error": failure.message}
            _audit(conn, row.id, "action_failed", {**details, "attempt": job.attempts}, now)
        # Counted before the worker commits: a store failure right now would count it twice, once
        # here and once when the job, not buried, fails for good again. Rare, and never lost.
        self.metrics.action_finished(kind, failure.reason, row is not None)

    def _kind(self, job: ClaimedJob) -> ActionKind:
        action = self.actions.get(str(job.payload["action"]))
        return action.kind if action is not None else ActionKind(job.payload["kind"])


def _described(job: ClaimedJob, kind: ActionKind) -> dict[str, Any]:
    payload: Mapping[str, Any] = job.payload
    return {
        "action": payload["action"],
        "kind": kind.value,
        "trigger": payload["trigger"],
        "cycle": payload["cycle"],
        "idempotency_key": job.idempotency_key,
    }


def _audit(conn: Connection, recovery_id: int, kind: str, details: Mapping[str, Any], now: datetime) -> None:
    store.append_audit(
        conn, recovery_id, at=now, source=SOURCE.value, actor=ACTOR, kind=kind, details=details
    )
