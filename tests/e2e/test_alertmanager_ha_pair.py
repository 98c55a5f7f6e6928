"""The ingest path with real processes: Prometheus -> an Alertmanager HA pair -> recoverlink (gunicorn).

What DESIGN.md promises about ingest, checked end to end: each episode (fingerprint, startsAt) is
one row however many copies the HA pair sends, the resolve arrives, and a delivery answered 503
while the store is locked is retried by Alertmanager and stored exactly once after the lock goes.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    ALERT_NAME,
    BUSY_TIMEOUT_MS,
    RULE_LABELS,
    AlertmanagerPair,
    AlertRow,
    Exporter,
    Recoverlink,
    parse_time,
)
from tests.support.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120), pytest.mark.usefixtures("prometheus")]

# Gauge set -> scrape (1 s) -> rule evaluation (1 s) -> group_wait (1 s) -> delivery; resolves
# wait for the next group_interval (2 s) tick. Generous deadlines, but polls return at once.
DELIVERY_DEADLINE = 20.0
# Duplicates come from the second member within peer_timeout, or as a stale snapshot ~10 s later.
DUPLICATE_DEADLINE = 15.0
LOCK_HOLD_SECONDS = 5.0
# The shard's aggregation group, as it appears in the stored notifications' group key.
GROUP_A, GROUP_B = 'shard="a"', 'shard="b"'


@dataclass(frozen=True)
class AlertmanagerEpisode:
    fingerprint: str
    starts_at: datetime


def episode_in_alertmanagers(pair: AlertmanagerPair, shard: str) -> AlertmanagerEpisode:
    """The episode both members hold for `shard`; they must agree on fingerprint and startsAt."""

    def both() -> list[AlertmanagerEpisode] | None:
        seen = []
        for url in pair.urls:
            alerts = pair.active_alerts(url, alertname=ALERT_NAME, shard=shard)
            if len(alerts) != 1:
                return None
            seen.append(AlertmanagerEpisode(alerts[0]["fingerprint"], parse_time(alerts[0]["startsAt"])))
        return seen

    seen = wait_until(
        both, timeout=DELIVERY_DEADLINE, what=f"both Alertmanagers to hold the alert of shard {shard}"
    )
    assert seen[0] == seen[1], f"the HA members disagree about the episode: {seen}"
    return seen[0]


@pytest.fixture(scope="module")
def fired() -> list[AlertmanagerEpisode]:
    """Every episode the tests of this module made Prometheus fire, whatever ran before."""
    return []


def assert_one_row_per_fired_episode(rl: Recoverlink, fired: list[AlertmanagerEpisode]) -> None:
    stored = [(e.fingerprint, e.starts_at) for e in rl.episodes(alertname=ALERT_NAME)]
    assert sorted(stored) == sorted((e.fingerprint, e.starts_at) for e in fired)


def stored_episode(rl: Recoverlink, shard: str, status: str) -> AlertRow:
    """Wait until shard's episode is stored with `status`; there must never be two rows."""

    def check() -> AlertRow | None:
        rows = rl.episodes(shard=shard)
        assert len(rows) <= 1, f"shard {shard} has {len(rows)} stored episodes: {rows}"
        return rows[0] if rows and rows[0].status == status else None

    return wait_until(
        check,
        timeout=DELIVERY_DEADLINE,
        what=f"the {status} episode of shard {shard} in the store",
        details=lambda: f"stored: {rl.episodes(shard=shard)}\n{rl.process.log_tail(20)}",
    )


@dataclass(frozen=True)
class Ledger:
    """Deliveries as each side counts them: they agree whenever no request is in flight."""

    rows: int  # notifications table: distinct notifications
    deliveries: int  # notifications table: sum of delivery_count
    accepted: float  # recoverlink /metrics, outcome="accepted"
    duplicate: float  # recoverlink /metrics, outcome="duplicate"
    acked: float  # Alertmanager /metrics, both members: webhook requests answered 2xx

    @property
    def balanced(self) -> bool:
        return (self.accepted, self.duplicate, self.acked) == (
            self.rows,
            self.deliveries - self.rows,
            self.deliveries,
        )


def balanced_ledger(rl: Recoverlink, pair: AlertmanagerPair) -> Ledger:
    """Every 2xx the pair got is a stored delivery, and /metrics counts each one once."""
    last: list[Ledger] = []

    def check() -> Ledger | None:
        rows = rl.notifications()
        ledger = Ledger(
            rows=len(rows),
            deliveries=sum(n.delivery_count for n in rows),
            accepted=rl.notifications_total("accepted"),
            duplicate=rl.notifications_total("duplicate"),
            acked=pair.webhook_successes(),
        )
        last[:] = [ledger]
        return ledger if ledger.balanced else None

    return wait_until(
        check,
        timeout=10,
        what="the store, recoverlink's /metrics and Alertmanager's /metrics to count the same deliveries",
        details=lambda: f"last seen: {last}\nnotifications: {rl.notifications()}",
    )


@contextmanager
def exclusive_lock(db_path: Path) -> Iterator[sqlite3.Connection]:
    """Hold SQLite's write lock from outside recoverlink, as a stuck writer or a backup would."""
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=10)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield conn
    finally:
        conn.close()  # rolls back and releases the lock, also when the test fails


def test_ha_pair_duplicates_are_absorbed_and_each_episode_is_stored_once_until_resolved(
    recoverlink: Recoverlink,
    alertmanagers: AlertmanagerPair,
    exporter: Exporter,
    fired: list[AlertmanagerEpisode],
) -> None:
    duplicates_before = recoverlink.notifications_total("duplicate")

    exporter.set_errors("a", 1)
    episode = episode_in_alertmanagers(alertmanagers, "a")
    fired.append(episode)
    firing = stored_episode(recoverlink, "a", "firing")
    assert (firing.fingerprint, firing.starts_at) == (episode.fingerprint, episode.starts_at)
    assert firing.labels["alertname"] == ALERT_NAME
    assert RULE_LABELS.items() <= firing.labels.items()

    exporter.set_errors("a", 0)
    resolved = stored_episode(recoverlink, "a", "resolved")
    assert resolved.id == firing.id
    assert resolved.resolved_at is not None

    # Both members deliver: copies of one notification only raise its delivery count.
    wait_until(
        lambda: recoverlink.notifications_total("duplicate") > duplicates_before,
        timeout=DUPLICATE_DEADLINE,
        what="a duplicate delivery from the HA pair (outcome=duplicate)",
        details=lambda: f"notifications: {recoverlink.notifications(GROUP_A)}\n{alertmanagers.logs()}",
    )
    group = recoverlink.notifications(GROUP_A)
    assert {n.status for n in group} >= {"firing", "resolved"}
    assert sum(n.delivery_count for n in group) > len(group)
    ledger = balanced_ledger(recoverlink, alertmanagers)

    # Still one episode, resolved, however many copies and stale snapshots came after.
    assert recoverlink.episodes(shard="a") == [resolved]
    assert_one_row_per_fired_episode(recoverlink, fired)
    items = recoverlink.api(f"/api/v1/alerts?fingerprint={episode.fingerprint}")["items"]
    assert [(i["id"], i["status"], parse_time(i["starts_at"])) for i in items] == [
        (resolved.id, "resolved", episode.starts_at)
    ]
    deliveries = [(n.status, n.delivery_count) for n in recoverlink.notifications(GROUP_A)]
    print(f"shard a: (status, deliveries) per notification {deliveries}; overall {ledger}")


def test_alert_fired_while_the_store_is_locked_arrives_once_after_the_lock_is_released(
    recoverlink: Recoverlink,
    alertmanagers: AlertmanagerPair,
    exporter: Exporter,
    fired: list[AlertmanagerEpisode],
) -> None:
    unavailable_before = recoverlink.notifications_total("unavailable")

    with exclusive_lock(recoverlink.db_path) as lock:
        exporter.set_errors("b", 1)
        episode = episode_in_alertmanagers(alertmanagers, "b")
        fired.append(episode)
        wait_until(
            lambda: recoverlink.notifications_total("unavailable") > unavailable_before,
            timeout=DELIVERY_DEADLINE,
            what="recoverlink to answer 503 while the store is locked (outcome=unavailable)",
            details=lambda: f"{recoverlink.process.log_tail(20)}\n{alertmanagers.logs()}",
        )
        # Hold the lock a while: Alertmanager must keep retrying, and every try must get 503.
        hold_until = time.monotonic() + LOCK_HOLD_SECONDS
        wait_until(
            lambda: (
                time.monotonic() >= hold_until
                and recoverlink.notifications_total("unavailable") >= unavailable_before + 2
            ),
            timeout=LOCK_HOLD_SECONDS + DELIVERY_DEADLINE,
            what="Alertmanager to retry the delivery that got 503",
            details=alertmanagers.logs,
        )
        unavailable = recoverlink.notifications_total("unavailable") - unavailable_before
        stored_while_locked = lock.execute(
            "SELECT count(*) FROM alerts WHERE fingerprint = ?", (episode.fingerprint,)
        ).fetchone()[0]
        assert stored_while_locked == 0
        released_at = datetime.now(UTC)

    arrived = stored_episode(recoverlink, "b", "firing")
    assert (arrived.fingerprint, arrived.starts_at) == (episode.fingerprint, episode.starts_at)
    # first_seen_at is when the request came in: a retry near the release, not the first try. The
    # one that got through may have queued behind another retry in its worker (up to busy_timeout,
    # then 503), behind the other worker's turn (one wait of up to busy_timeout), and waited for the
    # lock itself (up to busy_timeout): seen in CI at 280 ms with busy_timeout 200 ms.
    assert arrived.first_seen_at >= released_at - 3 * timedelta(milliseconds=BUSY_TIMEOUT_MS)
    assert RULE_LABELS.items() <= arrived.labels.items()

    # Both members were retrying; the copies that get through after the release add no row.
    ledger = balanced_ledger(recoverlink, alertmanagers)
    assert recoverlink.episodes(shard="b") == [arrived]
    assert_one_row_per_fired_episode(recoverlink, fired)
    items = recoverlink.api(f"/api/v1/alerts?fingerprint={episode.fingerprint}")["items"]
    assert [(i["id"], i["status"]) for i in items] == [(arrived.id, "firing")]
    deliveries = [(n.status, n.delivery_count) for n in recoverlink.notifications(GROUP_B)]
    print(
        f"shard b: {unavailable:.0f} answers 503 while locked; (status, deliveries) per notification "
        f"{deliveries}; overall {ledger}"
    )
