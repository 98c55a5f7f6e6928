"""The ingest flow against real SQLite and PostgreSQL: one row per episode whatever arrives."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Connection, func, select

from recoverlink.domain.alerts import Alert, AlertPolicy, AlertStatus, DeliveryResult
from recoverlink.domain.catalog import Catalog
from recoverlink.domain.enrichment import Enricher
from recoverlink.domain.rules import RuleSet
from recoverlink.ingest import RecentEpisodes, ingest_webhook
from recoverlink.store import alerts as alert_store
from recoverlink.store.engine import Store
from recoverlink.store.schema import alerts, notifications
from tests.conftest import FakeClock, fixture_body

POLICY = AlertPolicy()
ENRICHER = Enricher(Catalog(entries={}, teams={}), RuleSet((), "test"))


def ingest(store: Store, name: str, clock: FakeClock) -> object:
    return ingest_webhook(store, fixture_body(name), POLICY, ENRICHER, clock())


def episode_rows(store: Store) -> list[tuple[str, str]]:
    with store.read() as conn:
        return [(r.fingerprint, r.status) for r in conn.execute(select(alerts).order_by(alerts.c.id))]


def count(store: Store, table: object) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_duplicate_notification_from_ha_pair_creates_one_row_per_alert(
    store: Store, clock: FakeClock
) -> None:
    first = ingest_webhook(store, fixture_body("ha_duplicate_a.json"), POLICY, ENRICHER, clock())
    clock.now += timedelta(seconds=2)
    second = ingest_webhook(store, fixture_body("ha_duplicate_b.json"), POLICY, ENRICHER, clock())
    assert not first.duplicate and second.duplicate
    assert second.notification_id == first.notification_id
    assert len(episode_rows(store)) == 1
    assert count(store, notifications) == 1
    assert second.alert_results == {(AlertStatus.FIRING, DeliveryResult.DUPLICATE): 1}


def test_same_delivery_twice_changes_nothing_but_the_delivery_count(store: Store, clock: FakeClock) -> None:
    ingest_webhook(store, fixture_body("firing_group.json"), POLICY, ENRICHER, clock())
    with store.read() as conn:
        before = [dict(r._mapping) for r in conn.execute(select(alerts).order_by(alerts.c.id))]
    ingest_webhook(store, fixture_body("firing_group.json"), POLICY, ENRICHER, clock())
    with store.read() as conn:
        after = [dict(r._mapping) for r in conn.execute(select(alerts).order_by(alerts.c.id))]
        deliveries = conn.execute(select(notifications.c.delivery_count)).scalar_one()
    assert after == before
    assert deliveries == 2


def test_resolve_marks_the_episode_resolved(store: Store, clock: FakeClock) -> None:
    ingest(store, "firing_single.json", clock)
    outcome = ingest_webhook(store, fixture_body("resolved_single.json"), POLICY, ENRICHER, clock())
    assert episode_rows(store) == [("a1d644f09ee6a3f0", "resolved")]
    assert outcome.alert_results == {(AlertStatus.RESOLVED, DeliveryResult.NEW): 1}


def test_late_firing_from_the_other_member_does_not_reopen_a_resolved_episode(
    store: Store, clock: FakeClock
) -> None:
    ingest(store, "firing_single.json", clock)
    ingest(store, "resolved_single.json", clock)
    outcome = ingest_webhook(
        store, fixture_body("ha_stale_firing_after_resolved.json"), POLICY, ENRICHER, clock()
    )
    assert episode_rows(store) == [("a1d644f09ee6a3f0", "resolved")]
    assert outcome.alert_results == {(AlertStatus.FIRING, DeliveryResult.STALE): 1}


def test_truncated_notification_never_resolves_the_alerts_it_left_out(store: Store, clock: FakeClock) -> None:
    ingest(store, "firing_group.json", clock)
    # The same group re-sent with max_alerts: 2, as firing_group_truncated.json was captured.
    document = json.loads(fixture_body("firing_group.json"))
    document["alerts"] = document["alerts"][:2]
    document["truncatedAlerts"] = 1
    ingest_webhook(store, json.dumps(document).encode(), POLICY, ENRICHER, clock())
    assert [status for _, status in episode_rows(store)] == ["firing", "firing", "firing"]


def test_mixed_group_resolves_only_the_resolved_alert(store: Store, clock: FakeClock) -> None:
    ingest(store, "firing_group.json", clock)
    ingest(store, "mixed_group.json", clock)
    statuses = sorted(status for _, status in episode_rows(store))
    assert statuses == ["firing", "firing", "resolved"]


def test_resolved_group_keeps_the_earlier_end_of_an_already_resolved_alert(
    store: Store, clock: FakeClock
) -> None:
    ingest(store, "firing_group.json", clock)
    ingest(store, "mixed_group.json", clock)
    with store.read() as conn:
        ends_before = dict(conn.execute(select(alerts.c.fingerprint, alerts.c.ends_at)).all())
    ingest(store, "resolved_group.json", clock)
    with store.read() as conn:
        ends_after = dict(conn.execute(select(alerts.c.fingerprint, alerts.c.ends_at)).all())
    already = [fp for fp, end in ends_before.items() if end is not None]
    assert len(already) == 1
    assert ends_after[already[0]] == ends_before[already[0]]
    assert all(end is not None for end in ends_after.values())


def test_raw_body_is_kept_as_received(store: Store, clock: FakeClock) -> None:
    body = fixture_body("firing_single.json")
    ingest_webhook(store, body, POLICY, ENRICHER, clock())
    with store.read() as conn:
        assert conn.execute(select(notifications.c.raw_body)).scalar_one() == body


def test_odd_alert_is_stored_with_its_flags(store: Store, clock: FakeClock) -> None:
    document = json.loads(fixture_body("firing_single.json"))
    del document["alerts"][0]["labels"]["service"]
    outcome = ingest_webhook(store, json.dumps(document).encode(), POLICY, ENRICHER, clock())
    assert outcome.flagged_alerts == 1
    with store.read() as conn:
        assert conn.execute(select(alerts.c.flags)).scalar_one() == ["missing-service"]


def test_repeat_delivery_refreshes_last_seen(store: Store, clock: FakeClock) -> None:
    ingest(store, "firing_single.json", clock)
    clock.now += timedelta(hours=4)
    ingest(store, "firing_single.json", clock)
    with store.read() as conn:
        row = conn.execute(select(alerts.c.first_seen_at, alerts.c.last_seen_at)).one()
    assert row.last_seen_at - row.first_seen_at == timedelta(hours=4)


@pytest.mark.parametrize("name", ["firing_group.json", "mixed_group.json"])
def test_concurrent_duplicate_deliveries_create_one_row_per_episode(
    store: Store, clock: FakeClock, name: str
) -> None:
    """Eight threads deliver the same group at once, as two replicas behind an HA pair would."""
    body = fixture_body(name)
    barrier = threading.Barrier(8)
    outcomes: list[object] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        barrier.wait()
        try:
            outcomes.append(ingest_webhook(store, body, POLICY, ENRICHER, clock()))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(episode_rows(store)) == len(json.loads(body)["alerts"])
    assert count(store, notifications) == 1
    new = sum(o.alert_results[(s, DeliveryResult.NEW)] for o in outcomes for s in AlertStatus)  # type: ignore[attr-defined]
    assert new == len(json.loads(body)["alerts"])


class CountingEnricher(Enricher):
    """The test enricher, noting for each call whether a write transaction was open."""

    def __init__(self, store: Store) -> None:
        super().__init__(Catalog(entries={}, teams={}), RuleSet((), "test"))
        self.store = store
        self.calls: list[bool] = []

    def enrich(self, facts: object) -> object:  # type: ignore[override]
        self.calls.append(getattr(self.store, "writing", False))
        return super().enrich(facts)  # type: ignore[arg-type]


def writing_store(store: Store) -> Store:
    """The same store, flagging while its write transaction is open."""
    original = store.write

    @contextlib.contextmanager
    def write() -> Iterator[Connection]:
        with original() as conn:
            store.writing = True  # type: ignore[attr-defined]
            try:
                yield conn
            finally:
                store.writing = False  # type: ignore[attr-defined]

    store.write = write  # type: ignore[method-assign]
    return store


def test_new_episodes_are_enriched_before_the_write_transaction(store: Store, clock: FakeClock) -> None:
    store = writing_store(store)
    enricher = CountingEnricher(store)
    recent = RecentEpisodes()
    first = ingest_webhook(store, fixture_body("firing_group.json"), POLICY, enricher, clock(), recent=recent)
    assert enricher.calls == [False, False, False]  # three new alerts, none enriched inside
    assert first.alert_results == {(AlertStatus.FIRING, DeliveryResult.NEW): 3}
    second = ingest_webhook(
        store, fixture_body("firing_group.json"), POLICY, enricher, clock(), recent=recent
    )
    assert second.duplicate
    assert len(enricher.calls) == 3  # a repeat of known episodes costs no enrichment


def test_episodes_stored_by_another_process_stay_duplicates_when_guessed_new(
    store: Store, clock: FakeClock
) -> None:
    ingest_webhook(store, fixture_body("firing_group.json"), POLICY, ENRICHER, clock())
    with store.read() as conn:
        before = [dict(r._mapping) for r in conn.execute(select(alerts).order_by(alerts.c.id))]
    # A fresh memory (another gunicorn worker) guesses every episode new and enriches it in vain.
    again = ingest_webhook(
        store, fixture_body("firing_group.json"), POLICY, ENRICHER, clock(), recent=RecentEpisodes()
    )
    with store.read() as conn:
        after = [dict(r._mapping) for r in conn.execute(select(alerts).order_by(alerts.c.id))]
    assert again.duplicate and after == before
    assert again.alert_results == {(AlertStatus.FIRING, DeliveryResult.DUPLICATE): 3}
    assert not again.misses


def test_new_notification_of_stored_episodes_guessed_new_still_touches_and_resolves(
    store: Store, clock: FakeClock
) -> None:
    ingest_webhook(store, fixture_body("firing_group.json"), POLICY, ENRICHER, clock())
    document = json.loads(fixture_body("firing_group.json"))
    document["receiver"] = "another-route"  # a new notification, not a copy of the first
    document["alerts"][0]["status"] = "resolved"
    document["alerts"][0]["endsAt"] = "2026-11-22T18:30:00Z"
    # A fresh memory guesses all three new: they are inserted without a read, and all conflict.
    later = ingest_webhook(
        store, json.dumps(document).encode(), POLICY, ENRICHER, clock(), recent=RecentEpisodes()
    )
    assert not later.duplicate
    assert later.alert_results == {
        (AlertStatus.RESOLVED, DeliveryResult.NEW): 1,
        (AlertStatus.FIRING, DeliveryResult.DUPLICATE): 2,
    }
    with store.read() as conn:
        statuses = {
            r.fingerprint: r.status for r in conn.execute(select(alerts.c.fingerprint, alerts.c.status))
        }
    assert len(statuses) == 3
    assert statuses[document["alerts"][0]["fingerprint"]] == "resolved"


def test_episodes_read_before_the_write_lock_still_resolve_and_label_late_firing_stale(
    store: Store, clock: FakeClock
) -> None:
    recent = RecentEpisodes()  # one process's memory: every later delivery reads before the lock
    ingest_webhook(store, fixture_body("firing_group.json"), POLICY, ENRICHER, clock(), recent=recent)
    resolved = ingest_webhook(
        store, fixture_body("resolved_group.json"), POLICY, ENRICHER, clock(), recent=recent
    )
    assert resolved.alert_results == {(AlertStatus.RESOLVED, DeliveryResult.NEW): 3}
    late = ingest_webhook(store, fixture_body("mixed_group.json"), POLICY, ENRICHER, clock(), recent=recent)
    assert late.alert_results == {
        (AlertStatus.FIRING, DeliveryResult.STALE): 2,
        (AlertStatus.RESOLVED, DeliveryResult.DUPLICATE): 1,
    }
    with store.read() as conn:
        assert set(conn.execute(select(alerts.c.status)).scalars()) == {"resolved"}


def test_recent_episodes_forget_the_oldest_past_their_capacity(clock: FakeClock) -> None:
    recent = RecentEpisodes(capacity=2)
    now = clock()
    recent.remember([("a", now), ("b", now)])
    recent.remember([("a", now), ("c", now)])  # "a" is fresh again, "b" the oldest
    delivered = [Alert(fp, AlertStatus.FIRING, {}, {}, now, None, "") for fp in ("a", "b", "c")]
    assert [a.fingerprint for a in recent.unknown(delivered)] == ["b"]


@pytest.mark.parametrize("microsecond", [0, 123456])
def test_times_written_by_the_driver_read_back_through_sqlalchemy(
    store: Store, clock: FakeClock, microsecond: int
) -> None:
    clock.now = clock.now.replace(microsecond=microsecond)
    first = ingest(store, "firing_group.json", clock)
    with store.read() as conn:
        row = conn.execute(select(notifications.c.received_at, notifications.c.last_received_at)).one()
    assert row.received_at == row.last_received_at == clock.now.replace(tzinfo=None)
    clock.now += timedelta(seconds=2)
    again = ingest(store, "firing_group.json", clock)
    assert again.duplicate and again.notification_id == first.notification_id  # type: ignore[attr-defined]
    with store.read() as conn:
        last = conn.execute(select(notifications.c.last_received_at)).scalar_one()
    assert last == clock.now.replace(tzinfo=None)


def test_episodes_written_by_the_driver_read_back_through_sqlalchemy(store: Store, clock: FakeClock) -> None:
    ingest(store, "firing_group.json", clock)
    sent = json.loads(fixture_body("firing_group.json"))["alerts"]
    with store.read() as conn:
        rows = alert_store.list_episodes(conn, limit=10)
        versions = set(conn.execute(select(alerts.c.ruleset_version)).scalars())
    by_fingerprint = {row.fingerprint: row for row in rows}
    for alert in sent:
        row = by_fingerprint[alert["fingerprint"]]
        assert row.labels == alert["labels"] and row.annotations == alert["annotations"]
        assert isinstance(row.flags, list) and isinstance(row.enrichment, dict)
        assert row.first_seen_at == row.last_seen_at == clock.now and row.ends_at is None
        assert row.starts_at.isoformat().startswith(alert["startsAt"][:19])
    assert versions == {"test"}
