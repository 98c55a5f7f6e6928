"""The read side of the board and the status page: open recoveries with what a card shows beyond the
API's list item (journeys and segments, stale alerts, the last audit entry).

Three queries whatever the number of recoveries: the list (`list_recoveries`), then one each for the
context columns, the stale counts and the latest audit entries of the listed ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from recoverlink.domain.alerts import AlertStatus
from recoverlink.domain.recovery_state import RecoveryState
from recoverlink.store.common import from_db_time
from recoverlink.store.recovery_queries import (
    AuditEntry,
    RecoveryDetail,
    RecoveryFilter,
    RecoverySummary,
    list_recoveries,
    load_recovery,
)
from recoverlink.store.schema import alerts, audit_events, recoveries, recovery_alerts

# Until closed the board shows a recovery: after fix_deployed, verification is still pending.
OPEN_STATES = (
    RecoveryState.OPENED,
    RecoveryState.IMPACT_CONFIRMED,
    RecoveryState.WORKAROUND_AVAILABLE,
    RecoveryState.FIX_IN_PROGRESS,
    RecoveryState.FIX_DEPLOYED,
)
MAX_OPEN = 500  # a board with more cards than this is a storm; the page says some are left off


@dataclass(frozen=True)
class RecoveryContext:
    """What a card shows beyond the summary."""

    service_ref: str | None = None
    journeys: tuple[str, ...] = ()  # the catalog's for its service, then those impact sources found
    segments: tuple[str, ...] = ()
    stale_alerts: int = 0  # firing episodes Alertmanager stopped re-sending
    last_update: AuditEntry | None = None


@dataclass(frozen=True)
class BoardRecovery:
    summary: RecoverySummary
    context: RecoveryContext


@dataclass(frozen=True)
class OpenRecoveries:
    items: list[BoardRecovery]
    truncated: bool  # more than MAX_OPEN are open


@dataclass(frozen=True)
class BoardDetail:
    """One recovery as its board page and its postmortem draft read it."""

    detail: RecoveryDetail
    context: RecoveryContext


def open_recoveries(conn: Connection, limit: int = MAX_OPEN) -> OpenRecoveries:
    """The recoveries not yet closed, newest first (the board orders them by severity)."""
    page = list_recoveries(conn, RecoveryFilter(states=tuple(s.value for s in OPEN_STATES)), limit=limit)
    contexts = recovery_contexts(conn, page.items)
    items = [BoardRecovery(summary, contexts[summary.id]) for summary in page.items]
    return OpenRecoveries(items, page.next_before_id is not None)


def load_board_recovery(
    conn: Connection, recovery_id: int, *, now: datetime, default_stale_after: timedelta
) -> BoardDetail | None:
    """One recovery with its alerts and timeline (`load_recovery`) and its card's context."""
    detail = load_recovery(conn, recovery_id, now=now, default_stale_after=default_stale_after)
    if detail is None:
        return None
    return BoardDetail(detail, recovery_contexts(conn, [detail.summary])[detail.summary.id])


def recovery_contexts(conn: Connection, summaries: Sequence[RecoverySummary]) -> dict[int, RecoveryContext]:
    """The context of each summary, by id."""
    ids = [s.id for s in summaries]
    if not ids:
        return {}
    query = select(recoveries.c.id, recoveries.c.service_ref, recoveries.c.impact_context).where(
        recoveries.c.id.in_(ids)
    )
    rows = {int(r.id): r for r in conn.execute(query)}
    stale = _stale_counts(conn, ids)
    latest = _latest_entries(conn, ids)
    contexts = {}
    for summary in summaries:
        row = rows[summary.id]
        service = (row.impact_context or {}).get("service") or {}
        facts = summary.impact.get("facts") or {}
        contexts[summary.id] = RecoveryContext(
            service_ref=row.service_ref,
            journeys=merged_names(service.get("journeys"), facts.get("journeys")),
            segments=merged_names(service.get("segments"), facts.get("segments")),
            stale_alerts=stale.get(summary.id, 0),
            last_update=latest.get(summary.id),
        )
    return contexts


def merged_names(*lists: Any) -> tuple[str, ...]:
    """Distinct names in first-seen order from JSON lists; anything but a list counts as none."""
    merged: dict[str, None] = {}
    for values in lists:
        if isinstance(values, list):
            merged.update((str(v), None) for v in values)
    return tuple(merged)


def _stale_counts(conn: Connection, ids: Sequence[int]) -> Mapping[int, int]:
    query = (
        select(recovery_alerts.c.recovery_id, func.count())
        .select_from(recovery_alerts.join(alerts, alerts.c.id == recovery_alerts.c.alert_id))
        .where(
            recovery_alerts.c.recovery_id.in_(ids),
            alerts.c.status == AlertStatus.FIRING.value,
            alerts.c.stale_at.is_not(None),
        )
        .group_by(recovery_alerts.c.recovery_id)
    )
    return {int(recovery_id): int(count) for recovery_id, count in conn.execute(query)}


def _latest_entries(conn: Connection, ids: Sequence[int]) -> Mapping[int, AuditEntry]:
    """The last audit entry of each recovery (its newest id; one index range per recovery)."""
    newest = (
        select(func.max(audit_events.c.id))
        .where(audit_events.c.recovery_id.in_(ids))
        .group_by(audit_events.c.recovery_id)
    )
    query = select(audit_events).where(audit_events.c.id.in_(newest))
    return {
        int(r.recovery_id): AuditEntry(
            at=from_db_time(r.at),
            source=r.source,
            actor=r.actor,
            kind=r.kind,
            from_state=r.from_state,
            to_state=r.to_state,
            details=r.details,
        )
        for r in conn.execute(query)
    }
