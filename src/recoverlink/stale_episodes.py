"""Missing resolves: mark firing episodes that Alertmanager stopped re-sending as stale.

Alertmanager may never send a resolve (silenced while clearing, series gone). An episode not re-sent
for its `stale_after` is marked stale once: on its recovery's timeline, in the API, and counted in
`recoverlink_alerts_marked_stale_total`. A later re-send clears the mark (ingest does that).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from recoverlink.domain.rules import RuleSet
from recoverlink.store import alerts as alert_store
from recoverlink.store import recoveries
from recoverlink.store.engine import Store
from recoverlink.telemetry import Metrics

ACTOR = "worker"


def shortest_stale_after(ruleset: RuleSet) -> timedelta:
    """The smallest `stale_after` any rule or the defaults set: no episode goes stale sooner."""
    values = [r.stale_after for r in ruleset.rules if r.stale_after is not None]
    return min([ruleset.defaults.stale_after, *values])


def mark_stale_episodes(store: Store, ruleset: RuleSet, metrics: Metrics, now: datetime) -> int:
    """One sweep; idempotent, so several workers may run it. Returns how many episodes it marked."""
    teams: Counter[str | None] = Counter()
    with store.write() as conn:
        stale = alert_store.mark_stale(conn, now, ruleset.defaults.stale_after, shortest_stale_after(ruleset))
        for episode in stale:
            recovery_id = recoveries.recovery_of_alert(conn, episode.alert_id)
            row = recoveries.load_row(conn, recovery_id) if recovery_id is not None else None
            teams[row.team if row is not None else None] += 1
            if recovery_id is None:
                continue
            details = {"fingerprint": episode.fingerprint, "last_seen_at": episode.last_seen_at.isoformat()}
            recoveries.append_audit(
                conn, recovery_id, at=now, source="worker", actor=ACTOR, kind="alert_stale", details=details
            )
    for team, count in teams.items():
        metrics.alerts_marked_stale.labels(team=metrics.bounds.team(team)).inc(count)
    return len(stale)


def stale_sweep(
    store: Store, ruleset: Callable[[], RuleSet], metrics: Metrics, clock: Callable[[], datetime]
) -> Callable[[], None]:
    """The worker's periodic task: sweep with the rule set in force at the time."""

    def sweep() -> None:
        mark_stale_episodes(store, ruleset(), metrics, clock())

    return sweep
