"""The webhook flow: parse, then store the notification and its alert episodes in one transaction.

Only a committed transaction is acknowledged (DESIGN.md, "Ack only what is durable").
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection

from recoverlink.adapters.alertmanager import decode_body, parse_payload, to_notification
from recoverlink.domain.alerts import (
    Alert,
    AlertPolicy,
    AlertStatus,
    DeliveryResult,
    EpisodeChange,
    EpisodeDecision,
    Notification,
    decide_episodes,
    notification_dedup_key,
)
from recoverlink.domain.enrichment import AlertFacts, Enricher, Enrichment, MissReason, enrichment_record
from recoverlink.recovery_jobs import DEFAULT_PLAN, JobPlan
from recoverlink.recovery_tracking import TrackingOutcome, track_recoveries
from recoverlink.store import alerts as alert_store
from recoverlink.store.engine import Store

TOUCH_EVERY = timedelta(seconds=30)
EpisodeKey = tuple[str, datetime]


class RecentEpisodes:
    """The episode keys this process stored or found stored lately, at most `capacity` of them.

    Only a guess of which alerts of the next delivery are new, so that those are enriched before
    the write lock is taken (on SQLite every delivery waits for that lock, so whatever runs while it
    is held runs for every queued writer). The transaction still decides from the store: a wrong
    guess costs one enrichment too many, or one done inside the lock as before.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[EpisodeKey, None] = OrderedDict()
        self._lock = threading.Lock()

    def unknown(self, alerts: Iterable[Alert]) -> list[Alert]:
        """The alerts whose episode this process has not seen stored lately."""
        with self._lock:
            return [a for a in alerts if a.episode_key not in self._keys]

    def remember(self, keys: Iterable[EpisodeKey]) -> None:
        """Note episodes a committed transaction holds; the oldest are forgotten past `capacity`."""
        with self._lock:
            for key in keys:
                self._keys[key] = None
                self._keys.move_to_end(key)
            while len(self._keys) > self.capacity:
                self._keys.popitem(last=False)


@dataclass(frozen=True)
class IngestOutcome:
    notification_id: int
    duplicate: bool
    # (status, result) -> count, the labels of recoverlink_alerts_received_total
    alert_results: Counter[tuple[AlertStatus, DeliveryResult]]
    flagged_alerts: int
    # Enrichment misses of the episodes this delivery created.
    misses: Counter[MissReason]
    recoveries: TrackingOutcome


def ingest_webhook(
    store: Store,
    body: bytes,
    policy: AlertPolicy,
    enricher: Enricher,
    now: datetime,
    *,
    plan: JobPlan = DEFAULT_PLAN,
    recent: RecentEpisodes | None = None,
) -> IngestOutcome:
    """Validate one Alertmanager delivery, enrich its new episodes and store it durably.

    With `recent`, the episodes it does not know are enriched before the transaction (outside
    SQLite's write lock); the transaction enriches whatever else turns out to be new.
    Raises PayloadInvalid (nothing stored) or StoreUnavailable (nothing stored; the sender retries).
    """
    document = decode_body(body)
    notification = to_notification(parse_payload(document), policy)
    dedup_key = notification_dedup_key(document)
    enrichments: dict[tuple[str, datetime], Enrichment] = {}
    cache = _Enrichments(enricher, enrichments, store.backend, now)
    unknown = recent.unknown(notification.alerts) if recent is not None else []
    for alert in unknown:
        cache.row(alert)
    all_unknown = recent is not None and len(unknown) == len(notification.alerts)

    def store_delivery(conn: Connection) -> _Stored:
        recorded = alert_store.record_notification(conn, notification, dedup_key, body, now)
        likely_new = all_unknown and not recorded.is_duplicate
        decisions, ids = _apply_episodes(conn, notification, recorded, now, cache, likely_new=likely_new)
        tracked = track_recoveries(
            conn,
            decisions,
            ids,
            enrichment_of=cache.of,
            group_key=notification.group_key,
            now=now,
            plan=plan,
        )
        return _Stored(recorded, decisions, tracked)

    recorded, decisions, tracked = store.write_grouped(store_delivery)
    if recent is not None:
        recent.remember(a.episode_key for a in notification.alerts)
    created = {d.alert.episode_key for d in decisions if d.change is EpisodeChange.INSERT}
    return IngestOutcome(
        notification_id=recorded.id,
        duplicate=recorded.is_duplicate,
        alert_results=Counter((d.alert.status, d.result) for d in decisions),
        flagged_alerts=sum(1 for a in notification.alerts if a.flags),
        misses=Counter(miss for key in created for miss in enrichments[key].misses),
        recoveries=tracked,
    )


class _Stored(NamedTuple):
    recorded: alert_store.RecordedNotification
    decisions: list[EpisodeDecision]
    tracked: TrackingOutcome


@dataclass
class _Enrichments:
    """Enrich only the episodes that turn out to be new (a repeat delivery costs no enrichment)."""

    enricher: Enricher
    done: dict[tuple[str, datetime], Enrichment]
    backend: str
    now: datetime
    rows: dict[tuple[str, datetime], dict[str, Any]] = field(default_factory=dict)

    def of(self, alert: Alert) -> Enrichment:
        key = alert.episode_key
        if key not in self.done:
            facts = AlertFacts(alert.labels, alert.annotations, alert.fingerprint, alert.status.value)
            self.done[key] = self.enricher.enrich(facts)
        return self.done[key]

    def row(self, alert: Alert) -> dict[str, Any]:
        """The episode's row, should it be new (alert_store.episode_row), with its enrichment."""
        key = alert.episode_key
        if key not in self.rows:
            record = enrichment_record(self.of(alert))
            self.rows[key] = alert_store.episode_row(self.backend, alert, self.now, record)
        return self.rows[key]


def _apply_episodes(
    conn: Connection,
    notification: Notification,
    recorded: alert_store.RecordedNotification,
    now: datetime,
    enrichments: _Enrichments,
    *,
    likely_new: bool = False,
) -> tuple[list[EpisodeDecision], dict[tuple[str, datetime], int]]:
    """Decide each alert against the stored episode and write the change; re-decide lost races.

    `likely_new`: a first delivery whose episodes this process has not seen. They are inserted
    without reading first (one statement fewer in the write lock); any the store already held
    come back as a lost race and are decided again. Returns the final decisions and the row id
    of every episode in the notification."""
    notification_id = recorded.id
    keys = [a.episode_key for a in notification.alerts]
    stored = alert_store.StoredEpisodes({}, {}) if likely_new else alert_store.load_episodes(conn, keys)
    decisions = decide_episodes(notification.alerts, stored.states)
    inserts = [d.alert for d in decisions if d.change is EpisodeChange.INSERT]
    rows = {a.episode_key: enrichments.row(a) for a in inserts}
    inserted = alert_store.insert_episodes(conn, rows, notification_id)
    ids = {**stored.ids, **inserted}
    if len(inserted) < len(inserts):
        # Stored before (a concurrent delivery, or a wrong guess): decide those again, now they exist.
        stored = alert_store.load_episodes(conn, keys)
        decisions = [_as_ours(d, inserted) for d in decide_episodes(notification.alerts, stored.states)]
        ids = {**stored.ids, **inserted}
    final: list[EpisodeDecision] = []
    touches = []
    # A copy of a notification stored moments ago (the HA pair's second member, a retry) carries
    # exactly what is stored: only last_seen_at would move, and stale detection works in hours.
    fresh = {
        key for key, seen in stored.last_seen.items() if recorded.is_duplicate and now - seen < TOUCH_EVERY
    }
    for decided in decisions:
        decision = decided
        if decision.change is EpisodeChange.RESOLVE and not alert_store.resolve_episode(
            conn, decision.alert, now
        ):
            # Another delivery resolved it between our read and our write.
            decision = EpisodeDecision(decision.alert, EpisodeChange.TOUCH, DeliveryResult.DUPLICATE)
        if decision.change is EpisodeChange.TOUCH and decision.alert.episode_key not in fresh:
            touches.append(decision.alert)
        final.append(decision)
    alert_store.touch_episodes(conn, touches, now)
    return final, ids


def _as_ours(decision: EpisodeDecision, inserted: Mapping[tuple[str, datetime], int]) -> EpisodeDecision:
    """After a re-read, an episode this call inserted itself is still new to it."""
    if decision.alert.episode_key in inserted:
        return EpisodeDecision(decision.alert, EpisodeChange.INSERT, DeliveryResult.NEW)
    return decision
