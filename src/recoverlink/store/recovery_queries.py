"""The read side of recoveries: filtered, keyset-paginated lists, one recovery with its alerts and
audit timeline, and the JSON-ready records the API and the CLI both print.

Lists page on `id` descending (`id < before_id ORDER BY id DESC LIMIT n + 1`), so each page is one
index range scan whatever the depth, and a recovery opened meanwhile never shifts a later page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select, update

from recoverlink.domain.alerts import AlertStatus
from recoverlink.domain.impact import impact_summary
from recoverlink.store.common import from_db_time, to_db_time
from recoverlink.store.schema import alerts, audit_events, outbox_jobs, recoveries, recovery_alerts

# The columns of the recoveries table a list item shows; the row itself stays in the store.
_SUMMARY_COLUMNS = (
    "id", "title", "state", "service", "team", "owner", "priority", "correlation_key", "opened_at",
    "state_changed_at", "milestones", "reopen_count", "escalation_bounces", "storm", "storm_episodes",
    "symptoms", "linked_to", "workaround", "public_message", "impact_sources", "impact", "itsm_system",
    "incident_id", "incident_number", "incident_url", "incident_status",
)  # fmt: skip


@dataclass(frozen=True)
class RecoveryFilter:
    """What a list asks for; every field narrows it (empty `states` means any state)."""

    states: tuple[str, ...] = ()
    service: str | None = None
    team: str | None = None  # the team it was opened for (metric labels keep it)
    owner: str | None = None  # the team that owns it now
    priority: str | None = None
    opened_after: datetime | None = None  # inclusive
    opened_before: datetime | None = None  # exclusive


@dataclass(frozen=True)
class RecoverySummary:
    """One recovery as a list shows it."""

    id: int
    title: str
    state: str
    service: str | None
    team: str | None
    owner: str | None
    priority: str
    correlation_key: str
    opened_at: datetime
    state_changed_at: datetime
    milestones: Mapping[str, datetime]
    reopen_count: int
    escalation_bounces: int
    storm: bool
    storm_episodes: int
    symptoms: int
    linked_to: int | None
    workaround: str | None
    public_message: str | None
    impact: Mapping[str, Any] = field(default_factory=dict)  # impact_summary() of its sources
    incident: Mapping[str, Any] | None = None  # the linked ITSM incident; status "pending" until created
    alerts_firing: int = 0
    alerts_resolved: int = 0


@dataclass(frozen=True)
class RecoveryPage:
    items: list[RecoverySummary]
    next_before_id: int | None  # pass as `before_id` for the next page; None on the last one


@dataclass(frozen=True)
class RecoveryAlert:
    """An alert episode attached to a recovery."""

    id: int
    fingerprint: str
    status: str
    labels: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None
    last_seen_at: datetime
    role: str  # member | symptom | storm
    stale: bool  # firing, and not re-sent for longer than its enrichment's stale_after


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    source: str
    actor: str
    kind: str
    from_state: str | None
    to_state: str | None
    details: Mapping[str, Any]


@dataclass(frozen=True)
class RecoveryDetail:
    summary: RecoverySummary
    alerts: list[RecoveryAlert] = field(default_factory=list)
    enrichment: Mapping[str, Any] | None = None  # of its first alert
    timeline: list[AuditEntry] = field(default_factory=list)


def list_recoveries(
    conn: Connection, filters: RecoveryFilter, *, limit: int, before_id: int | None = None
) -> RecoveryPage:
    """Newest first; one query for the page and one for its alert counts."""
    query = _filtered(select(*(recoveries.c[name] for name in _SUMMARY_COLUMNS)), filters)
    if before_id is not None:
        query = query.where(recoveries.c.id < before_id)
    rows = conn.execute(query.order_by(recoveries.c.id.desc()).limit(limit + 1)).all()
    page, more = rows[:limit], len(rows) > limit
    counts = _alert_counts(conn, [int(r.id) for r in page])
    items = [_summary(row, counts.get(int(row.id), {})) for row in page]
    return RecoveryPage(items, items[-1].id if more and items else None)


def _filtered(query: Any, filters: RecoveryFilter) -> Any:
    if filters.states:
        query = query.where(recoveries.c.state.in_(filters.states))
    for column, value in (
        ("service", filters.service),
        ("team", filters.team),
        ("owner", filters.owner),
        ("priority", filters.priority),
    ):
        if value is not None:
            query = query.where(recoveries.c[column] == value)
    if filters.opened_after is not None:
        query = query.where(recoveries.c.opened_at >= to_db_time(filters.opened_after))
    if filters.opened_before is not None:
        query = query.where(recoveries.c.opened_at < to_db_time(filters.opened_before))
    return query


def _alert_counts(conn: Connection, ids: Sequence[int]) -> dict[int, dict[str, int]]:
    if not ids:
        return {}
    query = (
        select(recovery_alerts.c.recovery_id, alerts.c.status, func.count())
        .select_from(recovery_alerts.join(alerts, alerts.c.id == recovery_alerts.c.alert_id))
        .where(recovery_alerts.c.recovery_id.in_(ids))
        .group_by(recovery_alerts.c.recovery_id, alerts.c.status)
    )
    counts: dict[int, dict[str, int]] = {}
    for recovery_id, status, count in conn.execute(query):
        counts.setdefault(int(recovery_id), {})[status] = int(count)
    return counts


def _summary(row: Any, counts: Mapping[str, int]) -> RecoverySummary:
    return RecoverySummary(
        id=int(row.id),
        title=row.title,
        state=row.state,
        service=row.service,
        team=row.team,
        owner=row.owner,
        priority=row.priority,
        correlation_key=row.correlation_key,
        opened_at=from_db_time(row.opened_at),
        state_changed_at=from_db_time(row.state_changed_at),
        milestones={name: datetime.fromisoformat(at) for name, at in row.milestones.items()},
        reopen_count=row.reopen_count,
        escalation_bounces=row.escalation_bounces,
        storm=bool(row.storm),
        storm_episodes=row.storm_episodes,
        symptoms=row.symptoms,
        linked_to=row.linked_to,
        workaround=row.workaround,
        public_message=row.public_message,
        impact=impact_summary(row.impact_sources or [], row.impact or {}),
        incident=_incident(row),
        alerts_firing=counts.get(AlertStatus.FIRING.value, 0),
        alerts_resolved=counts.get(AlertStatus.RESOLVED.value, 0),
    )


def _incident(row: Any) -> dict[str, Any] | None:
    if not row.itsm_system:
        return None
    if row.incident_id is None:
        return {"system": row.itsm_system, "status": "pending"}
    return {
        "system": row.itsm_system,
        "id": row.incident_id,
        "number": row.incident_number,
        "url": row.incident_url,
        "status": row.incident_status or "unknown",
    }


def _pending_incident(conn: Connection, recovery_id: int, incident: Mapping[str, Any]) -> dict[str, Any]:
    """A pending incident, with why its creation has not succeeded yet (the open job's last error)."""
    query = select(outbox_jobs.c.state, outbox_jobs.c.last_error, outbox_jobs.c.attempts).where(
        outbox_jobs.c.recovery_id == recovery_id, outbox_jobs.c.kind == "itsm.open_incident"
    )
    job = conn.execute(query).first()
    if job is None:
        return dict(incident)
    return {**incident, "job_state": job.state, "attempts": job.attempts, "last_error": job.last_error}


def load_recovery(
    conn: Connection, recovery_id: int, *, now: datetime, default_stale_after: timedelta
) -> RecoveryDetail | None:
    """One recovery with its alerts (stale ones marked as of `now`), first enrichment and timeline.

    `default_stale_after` applies to an episode stored without an enrichment record.
    """
    query = select(*(recoveries.c[name] for name in _SUMMARY_COLUMNS)).where(recoveries.c.id == recovery_id)
    row = conn.execute(query).one_or_none()
    if row is None:
        return None
    attached = _attached_alerts(conn, recovery_id, now, default_stale_after)
    counts = {
        status.value: sum(1 for a in attached if a.status == status.value)
        for status in (AlertStatus.FIRING, AlertStatus.RESOLVED)
    }
    enrichment = None
    if attached:
        first = select(alerts.c.enrichment).where(alerts.c.id == attached[0].id)
        enrichment = conn.execute(first).scalar_one_or_none()
    summary = _summary(row, counts)
    if summary.incident is not None and summary.incident["status"] == "pending":
        summary = replace(summary, incident=_pending_incident(conn, recovery_id, summary.incident))
    return RecoveryDetail(
        summary=summary,
        alerts=attached,
        enrichment=enrichment,
        timeline=audit_timeline(conn, recovery_id),
    )


def _attached_alerts(
    conn: Connection, recovery_id: int, now: datetime, default_stale_after: timedelta
) -> list[RecoveryAlert]:
    """In the order they were attached. Only `stale_after_seconds` is read from each enrichment."""
    stale_after = alerts.c.enrichment["stale_after_seconds"].as_float()
    query = (
        select(
            alerts.c.id,
            alerts.c.fingerprint,
            alerts.c.status,
            alerts.c.labels,
            alerts.c.starts_at,
            alerts.c.ends_at,
            alerts.c.last_seen_at,
            recovery_alerts.c.role,
            stale_after.label("stale_after"),
        )
        .select_from(recovery_alerts.join(alerts, alerts.c.id == recovery_alerts.c.alert_id))
        .where(recovery_alerts.c.recovery_id == recovery_id)
        .order_by(recovery_alerts.c.id)
    )
    result = []
    for r in conn.execute(query):
        last_seen = from_db_time(r.last_seen_at)
        window = timedelta(seconds=r.stale_after) if r.stale_after is not None else default_stale_after
        result.append(
            RecoveryAlert(
                id=int(r.id),
                fingerprint=r.fingerprint,
                status=r.status,
                labels=r.labels,
                starts_at=from_db_time(r.starts_at),
                ends_at=from_db_time(r.ends_at) if r.ends_at is not None else None,
                last_seen_at=last_seen,
                role=r.role,
                stale=r.status == AlertStatus.FIRING.value and now - last_seen > window,
            )
        )
    return result


def audit_timeline(conn: Connection, recovery_id: int) -> list[AuditEntry]:
    """The recovery's audit trail in the order it was written."""
    query = select(audit_events).where(audit_events.c.recovery_id == recovery_id).order_by(audit_events.c.id)
    return [
        AuditEntry(
            at=from_db_time(r.at),
            source=r.source,
            actor=r.actor,
            kind=r.kind,
            from_state=r.from_state,
            to_state=r.to_state,
            details=r.details,
        )
        for r in conn.execute(query)
    ]


def set_operator_texts(
    conn: Connection, recovery_id: int, texts: Mapping[str, str | None], now: datetime
) -> None:
    """Store the workaround and/or public message an operator wrote (None clears one).

    The one write here: the texts are not part of the state machine's status, so `save_transition`
    does not carry them; callers append the audit entries.
    """
    values = {name: texts[name] for name in ("workaround", "public_message") if name in texts}
    if values:
        conn.execute(
            update(recoveries)
            .where(recoveries.c.id == recovery_id)
            .values(**values, updated_at=to_db_time(now))
        )


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def summary_record(summary: RecoverySummary) -> dict[str, Any]:
    """The JSON form of a list item (`GET /api/v1/recoveries`, `recoverlink recoveries list --json`)."""
    return {
        "id": summary.id,
        "title": summary.title,
        "state": summary.state,
        "service": summary.service,
        "team": summary.team,
        "owner": summary.owner,
        "priority": summary.priority,
        "correlation_key": summary.correlation_key,
        "opened_at": _time(summary.opened_at),
        "state_changed_at": _time(summary.state_changed_at),
        "milestones": {name: _time(at) for name, at in summary.milestones.items()},
        "reopen_count": summary.reopen_count,
        "escalation_bounces": summary.escalation_bounces,
        "storm": summary.storm,
        "storm_episodes": summary.storm_episodes,
        "symptoms": summary.symptoms,
        "linked_to": summary.linked_to,
        "workaround": summary.workaround,
        "public_message": summary.public_message,
        "impact": dict(summary.impact),
        "incident": dict(summary.incident) if summary.incident is not None else None,
        "alert_counts": {"firing": summary.alerts_firing, "resolved": summary.alerts_resolved},
    }


def detail_record(detail: RecoveryDetail) -> dict[str, Any]:
    """The JSON form of one recovery (`GET /api/v1/recoveries/<id>`, `recoverlink recoveries show --json`).

    `incident` is null for a recovery without an ITSM, `{"system", "status": "pending", ...}` until
    the incident exists.
    """
    alert_items = [
        {
            "id": a.id,
            "fingerprint": a.fingerprint,
            "status": a.status,
            "labels": dict(a.labels),
            "starts_at": _time(a.starts_at),
            "ends_at": _time(a.ends_at),
            "last_seen_at": _time(a.last_seen_at),
            "role": a.role,
            "stale": a.stale,
        }
        for a in detail.alerts
    ]
    timeline = [
        {
            "at": _time(e.at),
            "source": e.source,
            "actor": e.actor,
            "kind": e.kind,
            "from_state": e.from_state,
            "to_state": e.to_state,
            "details": dict(e.details),
        }
        for e in detail.timeline
    ]
    enrichment = dict(detail.enrichment) if detail.enrichment is not None else None
    return {
        **summary_record(detail.summary),
        "alerts": alert_items,
        "enrichment": enrichment,
        "timeline": timeline,
    }
