"""Notifications and alert episodes: idempotent writes through unique keys and upserts."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, select, update

from recoverlink.domain.alerts import (
    Alert,
    AlertStatus,
    Notification,
    StoredEpisode,
)
from recoverlink.store.common import (
    DriverStatement,
    backend_time,
    driver_json,
    driver_time,
    from_db_time,
    from_driver_time,
    in_list,
    to_db_time,
    values_params,
    values_sql,
)
from recoverlink.store.schema import Json, alerts, notifications

EpisodeKey = tuple[str, datetime]


@dataclass(frozen=True)
class RecordedNotification:
    id: int
    delivery_count: int

    @property
    def is_duplicate(self) -> bool:
        return self.delivery_count > 1


_NOTIFICATION_COLUMNS = [
    "dedup_key", "received_at", "last_received_at", "delivery_count", "receiver", "status",
    "group_key", "external_url", "truncated_alerts", "alert_count", "raw_body",
]  # fmt: skip
_RECORD_NOTIFICATION = DriverStatement(
    values_sql(notifications, _NOTIFICATION_COLUMNS, 1) + " ON CONFLICT (dedup_key) DO UPDATE SET "
    "delivery_count = notifications.delivery_count + 1, last_received_at = excluded.last_received_at "
    "RETURNING id, delivery_count"
)


def record_notification(
    conn: Connection, notification: Notification, dedup_key: str, raw_body: bytes, now: datetime
) -> RecordedNotification:
    """Store a delivery once; a copy of it (HA pair, retry) only counts one more delivery."""
    at = driver_time(conn, now)
    params = {
        "dedup_key": dedup_key,
        "received_at": at,
        "last_received_at": at,
        "delivery_count": 1,
        "receiver": notification.receiver,
        "status": notification.status.value,
        "group_key": notification.group_key,
        "external_url": notification.external_url,
        "truncated_alerts": notification.truncated_alerts,
        "alert_count": len(notification.alerts),
        "raw_body": raw_body,
    }
    row = _RECORD_NOTIFICATION.run(conn, values_params(_NOTIFICATION_COLUMNS, [params])).one()
    return RecordedNotification(id=int(row.id), delivery_count=int(row.delivery_count))


@dataclass(frozen=True)
class StoredEpisodes:
    """What the store holds for some episodes: their state (for deciding) and their row ids."""

    states: dict[EpisodeKey, StoredEpisode]
    ids: dict[EpisodeKey, int]
    last_seen: dict[EpisodeKey, datetime] = field(default_factory=dict)


@functools.lru_cache(maxsize=256)
def _load_episodes(count: int) -> DriverStatement:
    """The episodes of `count` fingerprints (one statement per count, built once)."""
    return DriverStatement(
        f"SELECT id, fingerprint, starts_at, status, last_seen_at FROM {alerts.name} "  # noqa: S608
        f"WHERE fingerprint IN ({in_list('fp', count)})"
    )


def load_episodes(conn: Connection, keys: Iterable[EpisodeKey]) -> StoredEpisodes:
    """The stored state and id of the given episodes (absent ones are missing from the result)."""
    wanted = {(fp, to_db_time(at)) for fp, at in keys}
    found = StoredEpisodes({}, {})
    if not wanted:
        return found
    fingerprints = sorted({fp for fp, _ in wanted})
    rows = _load_episodes(len(fingerprints)).run(conn, {f"fp_{i}": fp for i, fp in enumerate(fingerprints)})
    for row in rows:
        starts_at = from_driver_time(row.starts_at)
        if (row.fingerprint, to_db_time(starts_at)) in wanted:
            key = (row.fingerprint, starts_at)
            found.states[key] = StoredEpisode(row.fingerprint, starts_at, AlertStatus(row.status))
            found.ids[key] = int(row.id)
            found.last_seen[key] = from_driver_time(row.last_seen_at)
    return found


_EPISODE_COLUMNS = (
    "fingerprint", "starts_at", "status", "ends_at", "labels", "annotations", "generator_url", "flags",
    "first_seen_at", "last_seen_at", "resolved_at", "first_notification_id", "enrichment", "ruleset_version",
)  # fmt: skip
# Deliveries of more alerts than this insert in several statements (SQLite allows 32,766 binds).
_ROWS_PER_INSERT = 100


def insert_episodes(
    conn: Connection, new: Mapping[EpisodeKey, Mapping[str, Any]], notification_id: int
) -> dict[EpisodeKey, int]:
    """Insert new episodes (their `episode_row`s); returns the keys this call inserted (a concurrent
    writer may win a race for the others)."""
    rows = [{**row, "first_notification_id": notification_id} for row in new.values()]
    inserted: dict[EpisodeKey, int] = {}
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start : start + _ROWS_PER_INSERT]
        params = values_params(_EPISODE_COLUMNS, chunk)
        for returned in _insert_episodes(len(chunk)).run(conn, params):
            inserted[(returned.fingerprint, from_driver_time(returned.starts_at))] = int(returned.id)
    return inserted


def episode_row(
    backend: str, alert: Alert, now: datetime, enrichment: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A new episode's row as driver binds, all but its notification: built before the write lock
    (on SQLite every writer waits while it is held). JSON columns are encoded as SQLAlchemy's JSON
    type does (`driver_json`; None is JSON null), times as `driver_time`."""
    at = backend_time(backend, now)
    return {
        "fingerprint": alert.fingerprint,
        "starts_at": backend_time(backend, alert.starts_at),
        "status": alert.status.value,
        "ends_at": backend_time(backend, alert.ends_at) if alert.ends_at else None,
        "labels": driver_json(dict(alert.labels)),
        "annotations": driver_json(dict(alert.annotations)),
        "generator_url": alert.generator_url,
        "flags": driver_json([f.value for f in alert.flags]),
        "first_seen_at": at,
        "last_seen_at": at,
        "resolved_at": at if alert.status is AlertStatus.RESOLVED else None,
        "enrichment": driver_json(dict(enrichment) if enrichment is not None else None),
        "ruleset_version": (enrichment or {}).get("ruleset_version"),
    }


@functools.lru_cache(maxsize=_ROWS_PER_INSERT)
def _insert_episodes(count: int) -> DriverStatement:
    """`count` new episodes in one statement, DO NOTHING for those a concurrent writer inserted
    first; returns the keys this statement inserted. Binds are `<column>_<row>`."""
    return DriverStatement(
        values_sql(alerts, _EPISODE_COLUMNS, count)
        + " ON CONFLICT (fingerprint, starts_at) DO NOTHING RETURNING id, fingerprint, starts_at"
    )


def resolve_episode(conn: Connection, alert: Alert, now: datetime) -> bool:
    """Mark a firing episode resolved; False when it was not firing any more (another writer won)."""
    result = conn.execute(
        update(alerts)
        .where(
            and_(
                alerts.c.fingerprint == alert.fingerprint,
                alerts.c.starts_at == to_db_time(alert.starts_at),
                alerts.c.status == AlertStatus.FIRING.value,
            )
        )
        .values(
            status=AlertStatus.RESOLVED.value,
            ends_at=to_db_time(alert.ends_at) if alert.ends_at else None,
            annotations=dict(alert.annotations),
            resolved_at=to_db_time(now),
            last_seen_at=to_db_time(now),
        )
    )
    return result.rowcount == 1


_touch = (
    update(alerts)
    .where(
        and_(
            alerts.c.fingerprint == bindparam("fp"),
            alerts.c.starts_at == bindparam("sa"),
        )
    )
    .values(
        last_seen_at=bindparam("now"),
        stale_at=None,  # re-sent: whatever was stale about it is not any more
        # A firing re-send carries current annotations; a stale one must not overwrite a resolve.
        annotations=case(
            (
                and_(alerts.c.status == AlertStatus.FIRING.value, bindparam("firing")),
                bindparam("ann", type_=Json),
            ),
            else_=alerts.c.annotations,
        ),
    )
)


def touch_episodes(conn: Connection, seen: Sequence[Alert], now: datetime) -> None:
    """Remember that these episodes were delivered again (the input of stale detection)."""
    if not seen:
        return
    at = to_db_time(now)
    conn.execute(
        _touch,
        [
            {
                "fp": a.fingerprint,
                "sa": to_db_time(a.starts_at),
                "now": at,
                "firing": a.status is AlertStatus.FIRING,
                "ann": dict(a.annotations),
            }
            for a in seen
        ],
    )


@dataclass(frozen=True)
class EpisodeRow:
    id: int
    fingerprint: str
    starts_at: datetime
    status: AlertStatus
    ends_at: datetime | None
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    flags: list[str]
    first_seen_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    enrichment: dict[str, Any] | None


def list_episodes(
    conn: Connection,
    *,
    limit: int,
    before_id: int | None = None,
    status: AlertStatus | None = None,
    fingerprint: str | None = None,
) -> list[EpisodeRow]:
    """Newest first, keyset-paginated by id."""
    query = select(alerts).order_by(alerts.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(alerts.c.id < before_id)
    if status is not None:
        query = query.where(alerts.c.status == status.value)
    if fingerprint is not None:
        query = query.where(alerts.c.fingerprint == fingerprint)
    return [_episode_row(row) for row in conn.execute(query)]


def _episode_row(row: Any) -> EpisodeRow:
    def maybe(value: datetime | None) -> datetime | None:
        return from_db_time(value) if value is not None else None

    return EpisodeRow(
        id=row.id,
        fingerprint=row.fingerprint,
        starts_at=from_db_time(row.starts_at),
        status=AlertStatus(row.status),
        ends_at=maybe(row.ends_at),
        labels=row.labels,
        annotations=row.annotations,
        generator_url=row.generator_url,
        flags=row.flags,
        first_seen_at=from_db_time(row.first_seen_at),
        last_seen_at=from_db_time(row.last_seen_at),
        resolved_at=maybe(row.resolved_at),
        enrichment=row.enrichment,
    )


@dataclass(frozen=True)
class StaleEpisode:
    alert_id: int
    fingerprint: str
    last_seen_at: datetime


def mark_stale(
    conn: Connection, now: datetime, default_stale_after: timedelta, shortest_stale_after: timedelta
) -> list[StaleEpisode]:
    """Mark firing episodes not re-sent for their enrichment's `stale_after` as stale, once each.

    `shortest_stale_after` (the smallest value any rule or default sets) bounds the rows looked at.
    """
    stale_after = alerts.c.enrichment["stale_after_seconds"].as_float()
    candidates = conn.execute(
        select(alerts.c.id, alerts.c.fingerprint, alerts.c.last_seen_at, stale_after.label("after"))
        .where(
            alerts.c.status == AlertStatus.FIRING.value,
            alerts.c.stale_at.is_(None),
            alerts.c.last_seen_at < to_db_time(now - shortest_stale_after),
        )
        .with_for_update()
    ).all()
    at = to_db_time(now)
    stale = []
    for row in candidates:
        window = timedelta(seconds=row.after) if row.after is not None else default_stale_after
        if at - row.last_seen_at > window:
            stale.append(StaleEpisode(row.id, row.fingerprint, from_db_time(row.last_seen_at)))
    if stale:
        conn.execute(update(alerts).where(alerts.c.id.in_([e.alert_id for e in stale])).values(stale_at=at))
    return stale
