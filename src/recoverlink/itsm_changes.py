"""Incident changes reported by an ITSM (callbacks and the reconciliation poll) moving recoveries.

Each change applies once (`itsm_changes` remembers its dedup key), only if it is newer than what
was seen (ServiceNow's sys_mod_count: callbacks arrive out of order), and only through the state
machine: in progress -> fix_in_progress, resolved/closed -> the incident flags (and fix_deployed),
canceled -> canceled, a new assignee team -> the owner (an escalation bounce when it changed). An
echo of recoverlink's own update is recorded and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from recoverlink.config.itsm import ItsmConfig
from recoverlink.domain.errors import ItsmError
from recoverlink.domain.itsm import (
    IncidentChange,
    IncidentLink,
    ItsmAdapter,
    events_for_change,
    recovery_id_of,
)
from recoverlink.domain.recovery_state import Transition, apply_event, refusal
from recoverlink.itsm_jobs import metered_call
from recoverlink.recovery_jobs import JobPlan, commit_transition, finish_facts
from recoverlink.reload import LiveEnrichment
from recoverlink.store import incidents
from recoverlink.store import recoveries as store
from recoverlink.store.engine import Store
from recoverlink.telemetry import FinishFacts, Metrics

log = logging.getLogger(__name__)


@dataclass
class ChangeOutcome:
    """What one change did: `applied`, `duplicate`, `stale`, `echo` or `unknown_incident`."""

    outcome: str
    recovery_id: int | None = None
    transitions: list[tuple[Transition, str | None, str, str | None, FinishFacts | None]] = field(
        default_factory=list
    )

    def observe(self, metrics: Metrics) -> None:
        for transition, team, priority, service, finish in self.transitions:
            metrics.transition_observed(transition, team, priority, service, finish)


@dataclass(frozen=True)
class ChangeRules:
    """What deciding needs besides the change: the catalog's teams and the won't-fix resolutions."""

    known_teams: Sequence[str] = ()
    wont_fix: Sequence[str] = ()


def change_rules(config: ItsmConfig, live: LiveEnrichment) -> Callable[[], ChangeRules]:
    """What ITSM changes are judged by, with the catalog in force at the time."""
    wont_fix = tuple(config.jira.wont_fix_resolutions) if config.jira is not None else ()

    def rules() -> ChangeRules:
        return ChangeRules(known_teams=tuple(live.current.enricher.catalog.teams), wont_fix=wont_fix)

    return rules


def apply_change(
    conn: Connection, change: IncidentChange, rules: ChangeRules, plan: JobPlan, now: datetime
) -> ChangeOutcome:
    """Apply one change inside the caller's transaction."""
    row = _recovery_of(conn, change)
    if row is None:
        incidents.record_change(
            conn, change.system, change.dedup_key, recovery_id=None, outcome="unknown_incident", now=now
        )
        return ChangeOutcome("unknown_incident")
    stale = (
        change.sequence is not None
        and row.incident_sequence is not None
        and change.sequence <= row.incident_sequence
    )
    outcome = "stale" if stale else ("echo" if change.by_us else "applied")
    if not incidents.record_change(
        conn, change.system, change.dedup_key, recovery_id=row.id, outcome=outcome, now=now
    ):
        return ChangeOutcome("duplicate", row.id)
    if stale:
        return ChangeOutcome("stale", row.id)
    if row.incident_id is None:
        # The callback of an incident we created but have not linked yet (its job is recording).
        link = IncidentLink(change.system, change.incident_id, change.incident_id)
        incidents.link_incident(conn, row.id, link, None, now)
    status = change.status.value if change.status is not None else row.incident_status
    incidents.set_incident_status(conn, row.id, status, change.sequence, now)
    result = ChangeOutcome(outcome, row.id)
    actor = f"{change.system}:{change.actor}" if change.actor else change.system
    for event in events_for_change(change, rules.known_teams, rules.wont_fix):
        current = store.load_row(conn, row.id)
        recovery_status = store.status_of(current)
        if refusal(recovery_status, event) is not None:
            continue
        transition = apply_event(recovery_status, event, now)
        if transition.changed:
            commit_transition(conn, current, transition, actor, plan)
            finish = finish_facts(current, transition)
            result.transitions.append((transition, current.team, current.priority, current.service, finish))
    return result


def _recovery_of(conn: Connection, change: IncidentChange) -> Any:
    row = incidents.recovery_of_incident(conn, change.system, change.incident_id, for_update=True)
    if row is not None:
        return row
    recovery_id = recovery_id_of(change.correlation_id)
    if recovery_id is None:
        return None
    row = store.load_row(conn, recovery_id, for_update=True)
    return row if row is not None and row.itsm_system == change.system else None


class Reconciler:
    """The worker's poll of every ITSM for changes a lost callback would have carried."""

    def __init__(
        self,
        store: Store,
        adapters: dict[str, ItsmAdapter],
        rules: Callable[[], ChangeRules],
        plan: JobPlan,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime],
        every: timedelta,
    ) -> None:
        self.store, self.adapters, self.rules, self.plan, self.metrics = store, adapters, rules, plan, metrics
        self.clock = clock
        # Overlap each poll with the previous one: ITSM clocks and our own drift apart.
        self.overlap = every
        self._since = {name: clock() - 2 * every for name in adapters}

    def poll(self) -> None:
        for name, adapter in self.adapters.items():
            self._poll(name, adapter)

    def _poll(self, name: str, adapter: ItsmAdapter) -> None:
        started = self.clock()
        since = self._since[name] - self.overlap
        try:
            changes = metered_call(self.metrics, adapter, "poll", lambda: adapter.changed_since(since))
        except ItsmError as exc:  # an ITSM that is down must not stop the worker's other work
            log.warning("ITSM reconciliation poll failed", extra={"itsm": name, "error": str(exc)})
            return
        for change in changes:
            self._apply(change)
        self._since[name] = started

    def _apply(self, change: IncidentChange) -> None:
        with self.store.write() as conn:
            outcome = apply_change(conn, change, self.rules(), self.plan, self.clock())
        outcome.observe(self.metrics)
