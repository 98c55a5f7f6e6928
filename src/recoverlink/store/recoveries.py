"""Recoveries, the alerts attached to them, and the append-only audit trail."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, insert, select, text, update

from recoverlink.domain.correlation import Candidates, RecoveryCandidate
from recoverlink.domain.recovery_state import Milestone, RecoveryState, RecoveryStatus, Transition
from recoverlink.domain.rules import StormScope
from recoverlink.store.common import from_db_time, to_db_time, upsert
from recoverlink.store.schema import (
    STORM_PARENT_WHERE,
    alerts,
    audit_events,
    recoveries,
    recovery_alerts,
)

# A recovery collects new alerts until its fix is deployed; a later re-fire reopens it (inside the
# reopen window) or opens a new, linked recovery.
COLLECTING_STATES = (
    RecoveryState.OPENED.value,
    RecoveryState.IMPACT_CONFIRMED.value,
    RecoveryState.WORKAROUND_AVAILABLE.value,
    RecoveryState.FIX_IN_PROGRESS.value,
)


def is_collecting(state: RecoveryState) -> bool:
    return state.value in COLLECTING_STATES


@dataclass(frozen=True)
class NewRecovery:
    """What a recovery starts with, from the enrichment of its first episode."""

    correlation_key: str
    title: str
    service: str | None
    service_ref: str | None
    team: str | None
    priority: str
    resolution_policy: str
    reopen_window: timedelta
    linked_to: int | None
    storm: bool
    impact_sources: tuple[str, ...] = ()
    impact_context: Mapping[str, Any] = field(default_factory=dict)
    itsm_system: str | None = None  # the ITSM that gets its incident; None: tracked without one
    # Its CX handoff actions ({"name": "rule/action", "kind", "on"}), from the rules its first alert
    # matched: which fire at each transition is decided from these, without the rules at hand.
    actions: Sequence[Mapping[str, Any]] = ()


def milestones_record(milestones: Mapping[Milestone, datetime]) -> dict[str, str]:
    return {m.value: at.isoformat() for m, at in milestones.items()}


def _milestones(record: Mapping[str, str]) -> dict[Milestone, datetime]:
    return {Milestone(k): datetime.fromisoformat(v) for k, v in record.items()}


def status_of(row: Any) -> RecoveryStatus:
    return RecoveryStatus(
        state=RecoveryState(row.state),
        milestones=_milestones(row.milestones),
        itsm_configured=row.itsm_configured,
        resolution_closes_incident=row.resolution_policy == "close",
        owner=row.owner,
        escalation_bounces=row.escalation_bounces,
        reopen_count=row.reopen_count,
        incident_resolved=row.incident_resolved,
        incident_closed=row.incident_closed,
        recovery_id=str(row.id),
    )


def _status_values(status: RecoveryStatus, key: str, now: datetime) -> dict[str, Any]:
    return {
        "state": status.state.value,
        "open_key": key if is_collecting(status.state) else None,
        "milestones": milestones_record(status.milestones),
        "owner": status.owner,
        "escalation_bounces": status.escalation_bounces,
        "reopen_count": status.reopen_count,
        "incident_resolved": status.incident_resolved,
        "incident_closed": status.incident_closed,
        "updated_at": to_db_time(now),
    }


_OPEN_COLUMNS = [
    "correlation_key", "open_key", "state", "title", "service", "service_ref", "team", "priority",
    "opened_at", "state_changed_at", "updated_at", "milestones", "owner", "escalation_bounces",
    "reopen_count", "incident_resolved", "incident_closed", "itsm_configured", "resolution_policy",
    "reopen_window_seconds", "linked_to", "storm", "storm_episodes", "symptoms", "impact_sources",
    "impact_context", "impact", "itsm_system", "actions",
]  # fmt: skip
_OPEN = upsert(recoveries, _OPEN_COLUMNS, ["open_key"], returning=["id"])


def open_recovery(conn: Connection, new: NewRecovery, status: RecoveryStatus, now: datetime) -> int | None:
    """Insert an open recovery; None when another writer holds an open one with this key."""
    at = to_db_time(now)
    values = {
        **_status_values(status, new.correlation_key, now),
        "correlation_key": new.correlation_key,
        "title": new.title,
        "service": new.service,
        "service_ref": new.service_ref,
        "team": new.team,
        "priority": new.priority,
        "opened_at": at,
        "state_changed_at": at,
        "itsm_configured": status.itsm_configured,
        "resolution_policy": new.resolution_policy,
        "reopen_window_seconds": new.reopen_window.total_seconds(),
        "linked_to": new.linked_to,
        "storm": new.storm,
        "storm_episodes": 0,
        "symptoms": 0,
        "impact_sources": list(new.impact_sources),
        "impact_context": dict(new.impact_context),
        "impact": {},
        "itsm_system": new.itsm_system,
        "actions": [dict(action) for action in new.actions],
    }
    row = conn.execute(_OPEN, values).one_or_none()
    return int(row.id) if row else None


def open_recovery_id(conn: Connection, key: str) -> int | None:
    row = conn.execute(select(recoveries.c.id).where(recoveries.c.open_key == key)).one_or_none()
    return int(row.id) if row else None


def load_row(conn: Connection, recovery_id: int, *, for_update: bool = False) -> Any:
    query = select(recoveries).where(recoveries.c.id == recovery_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).one_or_none()


def save_status(conn: Connection, row: Any, transition: Transition) -> None:
    """Persist the recovery's new status (the caller writes the transition's audit entry)."""
    values = _status_values(transition.status, row.correlation_key, transition.at)
    if transition.moved:
        values["state_changed_at"] = to_db_time(transition.at)
    conn.execute(update(recoveries).where(recoveries.c.id == row.id).values(values))


def mark_manual_lookup(conn: Connection, recovery_id: int) -> None:
    conn.execute(update(recoveries).where(recoveries.c.id == recovery_id).values(manual_lookup=True))


def transition_audit(recovery_id: int, transition: Transition, actor: str) -> dict[str, Any]:
    """The audit row of a transition: from, to, the event, what it stamped, its evidence."""
    return audit_row(
        recovery_id,
        at=transition.at,
        source=transition.source.value,
        actor=actor,
        kind="transition",
        from_state=transition.from_state.value,
        to_state=transition.to_state.value,
        details={
            "event": transition.kind.value,
            "stamped": [m.value for m in transition.stamped],
            "evidence": dict(transition.evidence),
            "reason": transition.reason,
        },
    )


def save_transition(conn: Connection, row: Any, transition: Transition, actor: str) -> None:
    """Persist the new status and append the transition to the audit trail."""
    save_status(conn, row, transition)
    append_audits(conn, [transition_audit(row.id, transition, actor)])


def audit_row(
    recovery_id: int | None,
    *,
    at: datetime,
    source: str,
    actor: str,
    kind: str,
    details: Mapping[str, Any],
    from_state: str | None = None,
    to_state: str | None = None,
) -> dict[str, Any]:
    return {
        "recovery_id": recovery_id,
        "at": to_db_time(at),
        "source": source,
        "actor": actor,
        "kind": kind,
        "from_state": from_state,
        "to_state": to_state,
        "details": dict(details),
    }


_AUDIT = insert(audit_events)


def append_audits(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """The audit trail is append-only: nothing in recoverlink updates or deletes its rows."""
    if rows:
        conn.execute(_AUDIT, list(rows))


def append_audit(
    conn: Connection,
    recovery_id: int | None,
    *,
    at: datetime,
    source: str,
    actor: str,
    kind: str,
    details: Mapping[str, Any],
    from_state: str | None = None,
    to_state: str | None = None,
) -> None:
    """Append one audit entry now (see `append_audits`)."""
    row = audit_row(
        recovery_id,
        at=at,
        source=source,
        actor=actor,
        kind=kind,
        details=details,
        from_state=from_state,
        to_state=to_state,
    )
    append_audits(conn, [row])


_ATTACH = upsert(recovery_alerts, ["recovery_id", "alert_id", "role", "attached_at"], ["alert_id"])
_COUNTERS = {
    role: update(recoveries)
    .where(recoveries.c.id == bindparam("recovery"))
    .values({column: recoveries.c[column] + 1})
    for role, column in (("symptom", "symptoms"), ("storm", "storm_episodes"))
}


@dataclass(frozen=True)
class Attachment:
    recovery_id: int
    alert_id: int
    role: str  # member | symptom | storm


def attach_alerts(conn: Connection, attachments: Sequence[Attachment], now: datetime) -> None:
    """Attach episodes to recoveries in one statement; symptoms and storm episodes are counted."""
    if not attachments:
        return
    at = to_db_time(now)
    rows = [
        {"recovery_id": a.recovery_id, "alert_id": a.alert_id, "role": a.role, "attached_at": at}
        for a in attachments
    ]
    conn.execute(_ATTACH, rows)
    for attachment in attachments:
        if attachment.role in _COUNTERS:
            conn.execute(_COUNTERS[attachment.role], {"recovery": attachment.recovery_id})


def attach_alert(conn: Connection, recovery_id: int, alert_id: int, role: str, now: datetime) -> None:
    attach_alerts(conn, [Attachment(recovery_id, alert_id, role)], now)


def recovery_of_alert(conn: Connection, alert_id: int) -> int | None:
    row = conn.execute(
        select(recovery_alerts.c.recovery_id).where(recovery_alerts.c.alert_id == alert_id)
    ).one_or_none()
    return int(row.recovery_id) if row else None


def firing_alerts(conn: Connection, recovery_id: int) -> int:
    """How many of the recovery's episodes are still firing (a stale one still counts)."""
    query = (
        select(func.count())
        .select_from(recovery_alerts.join(alerts, alerts.c.id == recovery_alerts.c.alert_id))
        .where(and_(recovery_alerts.c.recovery_id == recovery_id, alerts.c.status == "firing"))
    )
    return int(conn.execute(query).scalar_one())


def _candidate(row: Any) -> RecoveryCandidate:
    fixed = row.milestones.get(Milestone.FIX_DEPLOYED.value)
    return RecoveryCandidate(
        id=int(row.id),
        correlation_key=row.correlation_key,
        service_ref=row.service_ref,
        team=row.team,
        is_open=row.state in COLLECTING_STATES,
        opened_at=from_db_time(row.opened_at),
        fix_deployed_at=datetime.fromisoformat(fixed) if fixed else None,
        is_storm_parent=bool(row.storm),
    )


_CANDIDATE_COLUMNS = (
    recoveries.c.id, recoveries.c.correlation_key, recoveries.c.service_ref, recoveries.c.team,
    recoveries.c.state, recoveries.c.opened_at, recoveries.c.milestones, recoveries.c.storm,
)  # fmt: skip
_SAME_KEY = (
    select(*_CANDIDATE_COLUMNS)
    .where(recoveries.c.correlation_key == bindparam("key"))
    .order_by(recoveries.c.id.desc())
    .limit(2)
)
_DEPENDENCIES = (
    select(*_CANDIDATE_COLUMNS)
    .where(
        recoveries.c.service_ref.in_(bindparam("refs", expanding=True)), recoveries.c.open_key.is_not(None)
    )
    .order_by(recoveries.c.id.desc())
    .limit(5)
)
_STORM_COLUMN = {StormScope.TEAM: recoveries.c.team, StormScope.SERVICE: recoveries.c.service}
_STORM = {
    # One round trip for the common case: the scope's recent openings and its open storm parent's id.
    scope: select(
        select(func.count())
        .where(column == bindparam("value"), recoveries.c.opened_at >= bindparam("since"))
        .scalar_subquery()
        .label("recent"),
        select(recoveries.c.id)
        .where(column == bindparam("value"), STORM_PARENT_WHERE)
        .order_by(recoveries.c.id.desc())
        .limit(1)
        .scalar_subquery()
        .label("parent"),
    )
    for scope, column in _STORM_COLUMN.items()
}
_BY_ID = select(*_CANDIDATE_COLUMNS).where(recoveries.c.id == bindparam("id"))


_LOCK_SCOPE = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


def storm_lock_key(scope: tuple[StormScope, str] | None) -> str:
    """The name a storm scope is locked by ("" for none): episodes are placed in this order."""
    return f"storm/{scope[0].value}/{scope[1]}" if scope is not None else ""


def _lock_storm_scope(conn: Connection, scope: tuple[StormScope, str], held: set[str]) -> None:
    """Hold the scope until the transaction ends, so that the recent openings this delivery counts
    include those of a concurrent one (PostgreSQL; SQLite's writers already go one at a time)."""
    key = storm_lock_key(scope)
    if key not in held and conn.dialect.name == "postgresql":
        conn.execute(_LOCK_SCOPE, {"key": key})
        held.add(key)


def candidates_for(
    conn: Connection,
    key: str,
    depends_on: Sequence[str],
    *,
    storm_scope: tuple[StormScope, str] | None,
    storm_since: datetime | None,
    storm_locks: set[str],
) -> Candidates:
    """The recoveries correlation weighs for one episode (newest first).

    An open recovery with the same key wins over everything else (the domain's first rule), so the
    other lookups are skipped when there is one: the common case, an alert joining its recovery,
    costs one query. The storm scope is locked (and added to `storm_locks`) before it is counted.
    """
    same = [_candidate(r) for r in conn.execute(_SAME_KEY, {"key": key})]
    if any(c.is_open for c in same):
        return Candidates(same_key=same)
    dependencies = []
    if depends_on:
        dependencies = [_candidate(r) for r in conn.execute(_DEPENDENCIES, {"refs": list(depends_on)})]
    parent, recent = None, 0
    if storm_scope is not None and storm_since is not None:
        _lock_storm_scope(conn, storm_scope, storm_locks)
        scope, value = storm_scope
        storm = conn.execute(_STORM[scope], {"value": value, "since": to_db_time(storm_since)}).one()
        recent = int(storm.recent)
        if storm.parent is not None:
            parent = _candidate(conn.execute(_BY_ID, {"id": storm.parent}).one())
    return Candidates(same_key=same, dependencies=dependencies, storm_parent=parent, recent_openings=recent)


def unclosed_counts(conn: Connection) -> list[tuple[str, str | None, str, str | None, int]]:
    """(state, team, priority, service, count) of recoveries not yet closed, for the state gauge."""
    done = (RecoveryState.CLOSED.value, RecoveryState.POSTMORTEM_COMPLETE.value, RecoveryState.CANCELED.value)
    query = (
        select(
            recoveries.c.state, recoveries.c.team, recoveries.c.priority, recoveries.c.service, func.count()
        )
        .where(recoveries.c.state.not_in(done))
        .group_by(recoveries.c.state, recoveries.c.team, recoveries.c.priority, recoveries.c.service)
    )
    return [(r[0], r[1], r[2], r[3], int(r[4])) for r in conn.execute(query)]


def set_impact(conn: Connection, recovery_id: int, impact: Mapping[str, Any], now: datetime) -> None:
    """Replace what the impact sources said about the recovery (the caller holds the row lock)."""
    values = {"impact": dict(impact), "updated_at": to_db_time(now)}
    conn.execute(update(recoveries).where(recoveries.c.id == recovery_id).values(values))


def repeat_alerts(conn: Connection, correlation_key: str, after: datetime, until: datetime) -> int:
    """Episodes of the same failure (same correlation key) that started in (after, until]."""
    query = (
        select(func.count())
        .select_from(
            recovery_alerts.join(alerts, alerts.c.id == recovery_alerts.c.alert_id).join(
                recoveries, recoveries.c.id == recovery_alerts.c.recovery_id
            )
        )
        .where(
            recoveries.c.correlation_key == correlation_key,
            alerts.c.starts_at > to_db_time(after),
            alerts.c.starts_at <= to_db_time(until),
        )
    )
    return int(conn.execute(query).scalar_one())
