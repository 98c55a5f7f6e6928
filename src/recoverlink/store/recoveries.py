"""Recoveries, the alerts attached to them, and the append-only audit trail."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, select, update

from recoverlink.domain.correlation import Candidates, RecoveryCandidate
from recoverlink.domain.recovery_state import Milestone, RecoveryState, RecoveryStatus, Transition
from recoverlink.domain.rules import StormScope
from recoverlink.store.common import (
    DriverStatement,
    WriteBatch,
    driver_json,
    driver_time,
    from_driver_json,
    from_driver_time,
    in_list,
    to_db_time,
    values_params,
    values_sql,
)
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
_OPEN = DriverStatement(
    values_sql(recoveries, _OPEN_COLUMNS, 1) + " ON CONFLICT (open_key) DO NOTHING RETURNING id"
)


def open_recovery(conn: Connection, new: NewRecovery, status: RecoveryStatus, now: datetime) -> int | None:
    """Insert an open recovery; None when another writer holds an open one with this key."""
    at = driver_time(conn, now)
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
        "updated_at": at,
        "itsm_configured": status.itsm_configured,
        "resolution_policy": new.resolution_policy,
        "reopen_window_seconds": new.reopen_window.total_seconds(),
        "linked_to": new.linked_to,
        "storm": new.storm,
        "storm_episodes": 0,
        "symptoms": 0,
        "itsm_system": new.itsm_system,
    }
    json_values = {
        "milestones": values["milestones"],
        "impact_sources": list(new.impact_sources),
        "impact_context": dict(new.impact_context),
        "impact": {},
        "actions": [dict(action) for action in new.actions],
    }
    values.update((name, driver_json(value)) for name, value in json_values.items())
    row = _OPEN.run(conn, values_params(_OPEN_COLUMNS, [values])).one_or_none()
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


_AUDIT_COLUMNS = ("recovery_id", "at", "source", "actor", "kind", "from_state", "to_state", "details")


def audit_writes(batch: WriteBatch, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Add `audit_row`s to a batch (see `append_audits`)."""
    if rows:
        binds = [
            {**row, "at": driver_time(conn, row["at"]), "details": driver_json(row["details"])}
            for row in rows
        ]
        batch.add(values_sql(audit_events, _AUDIT_COLUMNS, len(binds)), values_params(_AUDIT_COLUMNS, binds))


def append_audits(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """The audit trail is append-only: nothing in recoverlink updates or deletes its rows."""
    batch = WriteBatch()
    audit_writes(batch, conn, rows)
    batch.run(conn)


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


_ATTACH_COLUMNS = ("recovery_id", "alert_id", "role", "attached_at")
_COUNTED = {"symptom": "symptoms", "storm": "storm_episodes"}
_COUNT = (
    "UPDATE recoveries SET symptoms = symptoms + :symptoms, storm_episodes = storm_episodes + :storm "
    "WHERE id = :id"
)


@dataclass(frozen=True)
class Attachment:
    recovery_id: int
    alert_id: int
    role: str  # member | symptom | storm


def attachment_writes(
    batch: WriteBatch, conn: Connection, attachments: Sequence[Attachment], now: datetime
) -> None:
    """Add to a batch: the attachments of episodes to recoveries, and the counts of symptoms and
    storm episodes on their recoveries (one statement per recovery counted)."""
    if not attachments:
        return
    at = driver_time(conn, now)
    rows = [
        {"recovery_id": a.recovery_id, "alert_id": a.alert_id, "role": a.role, "attached_at": at}
        for a in attachments
    ]
    sql = values_sql(recovery_alerts, _ATTACH_COLUMNS, len(rows)) + " ON CONFLICT (alert_id) DO NOTHING"
    batch.add(sql, values_params(_ATTACH_COLUMNS, rows))
    counted = Counter((a.recovery_id, _COUNTED[a.role]) for a in attachments if a.role in _COUNTED)
    for recovery_id in sorted({recovery_id for recovery_id, _ in counted}):
        counts = {
            "symptoms": counted[recovery_id, "symptoms"],
            "storm": counted[recovery_id, "storm_episodes"],
        }
        batch.add(_COUNT, {"id": recovery_id, **counts})


def attach_alerts(conn: Connection, attachments: Sequence[Attachment], now: datetime) -> None:
    """Attach episodes to recoveries now; symptoms and storm episodes are counted."""
    batch = WriteBatch()
    attachment_writes(batch, conn, attachments, now)
    batch.run(conn)


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
    """A candidate from a DriverStatement row (JSON as text and times as text on SQLite)."""
    fixed = from_driver_json(row.milestones).get(Milestone.FIX_DEPLOYED.value)
    return RecoveryCandidate(
        id=int(row.id),
        correlation_key=row.correlation_key,
        service_ref=row.service_ref,
        team=row.team,
        is_open=row.state in COLLECTING_STATES,
        opened_at=from_driver_time(row.opened_at),
        fix_deployed_at=datetime.fromisoformat(fixed) if fixed else None,
        is_storm_parent=bool(row.storm),
    )


_CANDIDATE_COLUMNS = "id, correlation_key, service_ref, team, state, opened_at, milestones, storm"
_SAME_KEY = DriverStatement(
    f"SELECT {_CANDIDATE_COLUMNS} FROM recoveries WHERE correlation_key = :key ORDER BY id DESC LIMIT 2"  # noqa: S608
)


@functools.lru_cache(maxsize=64)
def _dependencies(count: int) -> DriverStatement:
    """The newest open recoveries of `count` services (one statement per count, built once)."""
    return DriverStatement(
        f"SELECT {_CANDIDATE_COLUMNS} FROM recoveries "  # noqa: S608
        f"WHERE service_ref IN ({in_list('ref', count)}) AND open_key IS NOT NULL ORDER BY id DESC LIMIT 5"
    )


_PARENT_COLUMNS = ", ".join(f"parent.{c}" for c in _CANDIDATE_COLUMNS.split(", "))
# One round trip: the scope's recent openings, and its open storm parent if there is one.
_STORM = {
    scope: DriverStatement(
        f"SELECT recent.n AS recent, {_PARENT_COLUMNS} FROM "  # noqa: S608
        f"(SELECT count(*) AS n FROM recoveries WHERE {column} = :value AND opened_at >= :since) AS recent "
        f"LEFT JOIN (SELECT {_CANDIDATE_COLUMNS} FROM recoveries WHERE {column} = :value "
        f"AND {STORM_PARENT_WHERE.text} ORDER BY id DESC LIMIT 1) AS parent ON 1 = 1"
    )
    for scope, column in ((StormScope.TEAM, "team"), (StormScope.SERVICE, "service"))
}
_LOCK_SCOPE = DriverStatement("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
# PostgreSQL, for an episode that counts a storm scope: the same-key lookup also takes the scope's
# lock when no recovery holds the key open (the episode may open one). The count comes in the next
# statement, so from a snapshot taken after the lock: it includes a concurrent delivery's openings.
_SAME_KEY_LOCKING = DriverStatement(
    "SELECT taken.locked, same.* FROM (SELECT count(*) AS locked FROM "  # noqa: S608
    "(SELECT pg_advisory_xact_lock(hashtextextended(:lock, 0)) "
    "WHERE NOT EXISTS (SELECT 1 FROM recoveries WHERE open_key = :key)) AS attempt) AS taken "
    f"LEFT JOIN (SELECT {_CANDIDATE_COLUMNS} FROM recoveries WHERE correlation_key = :key "
    "ORDER BY id DESC LIMIT 2) AS same ON 1 = 1"
)


def storm_lock_key(scope: tuple[StormScope, str] | None) -> str:
    """The name a storm scope is locked by ("" for none): episodes are placed in this order."""
    return f"storm/{scope[0].value}/{scope[1]}" if scope is not None else ""


def _lock_storm_scope(conn: Connection, scope: tuple[StormScope, str], held: set[str]) -> None:
    """Hold the scope until the transaction ends, so that the recent openings this delivery counts
    include those of a concurrent one (PostgreSQL; SQLite's writers already go one at a time)."""
    key = storm_lock_key(scope)
    if key not in held and conn.dialect.name == "postgresql":
        _LOCK_SCOPE.run(conn, {"key": key})
        held.add(key)


def _same_key(
    conn: Connection, key: str, scope: tuple[StormScope, str] | None, held: set[str]
) -> list[RecoveryCandidate]:
    """The two newest recoveries of the key; on PostgreSQL, the storm scope's lock too when no
    recovery holds the key open (one round trip for both)."""
    lock = storm_lock_key(scope)
    if scope is None or lock in held or conn.dialect.name != "postgresql":
        return [_candidate(r) for r in _SAME_KEY.run(conn, {"key": key})]
    rows = _SAME_KEY_LOCKING.run(conn, {"key": key, "lock": lock}).all()
    if rows[0].locked:
        held.add(lock)
    return [_candidate(r) for r in rows if r.id is not None]


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
    costs one query. The storm scope is locked (and added to `storm_locks`) before it is counted:
    on PostgreSQL with the same-key lookup, or on its own when that lookup found the key open in
    a recovery that is not among the newest two.
    """
    counts_storm = storm_scope if storm_since is not None else None
    same = _same_key(conn, key, counts_storm, storm_locks)
    if any(c.is_open for c in same):
        return Candidates(same_key=same)
    dependencies = []
    if depends_on:
        refs = {f"ref_{i}": ref for i, ref in enumerate(depends_on)}
        dependencies = [_candidate(r) for r in _dependencies(len(refs)).run(conn, refs)]
    parent, recent = None, 0
    if counts_storm is not None and storm_since is not None:
        _lock_storm_scope(conn, counts_storm, storm_locks)
        scope, value = counts_storm
        storm = _STORM[scope].run(conn, {"value": value, "since": driver_time(conn, storm_since)}).one()
        recent = int(storm.recent)
        parent = _candidate(storm) if storm.id is not None else None
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
