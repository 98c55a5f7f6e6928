"""Gauges read from the store at scrape time: the same value on every replica and process."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from recoverlink.domain.errors import StoreUnavailable
from recoverlink.domain.outbox import BacklogState
from recoverlink.recovery_jobs import JOB_KINDS
from recoverlink.store import outbox, recoveries
from recoverlink.store.engine import Store
from recoverlink.telemetry import OTHER, UNKNOWN, LabelBounds

log = logging.getLogger(__name__)


class RecoveryStateGauge(Collector):
    """`recoverlink_recoveries{state,team,priority,service}`: recoveries not yet closed."""

    def __init__(self, store: Store, max_services: int) -> None:
        self.store = store
        self.max_services = max_services

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "recoverlink_recoveries",
            "Recoveries not yet closed, by state (read from the store; aggregate replicas with max).",
            labels=["state", "team", "priority", "service"],
        )
        try:
            with self.store.read() as conn:
                rows = recoveries.unclosed_counts(conn)
        except StoreUnavailable as exc:
            log.warning("cannot read recovery counts for /metrics", extra={"error": str(exc)})
            return []
        for labels, count in self._bounded(rows).items():
            family.add_metric(list(labels), count)
        return [family]

    def _bounded(
        self, rows: list[tuple[str, str | None, str, str | None, int]]
    ) -> Counter[tuple[str, str, str, str]]:
        by_service: Counter[str | None] = Counter()
        for _, _, _, service, count in rows:
            by_service[service] += count
        kept = {s for s, _ in by_service.most_common(self.max_services)}
        bounded: Counter[tuple[str, str, str, str]] = Counter()
        for state, team, priority, service, count in rows:
            shown = (service or UNKNOWN) if service in kept else OTHER
            bounded[(state, LabelBounds.team(team), LabelBounds.priority(priority), shown)] += count
        return bounded


class OutboxGauges(Collector):
    """`recoverlink_outbox_jobs{kind,state}` and `recoverlink_outbox_oldest_due_job_age_seconds{kind}`."""

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    def collect(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily(
            "recoverlink_outbox_jobs",
            "Outbox jobs waiting (due), failed and waiting to retry (retrying), or dead-lettered (dead).",
            labels=["kind", "state"],
        )
        oldest = GaugeMetricFamily(
            "recoverlink_outbox_oldest_due_job_age_seconds",
            "How long the oldest due job has waited: how far the workers are behind.",
            labels=["kind"],
        )
        try:
            with self.store.read() as conn:
                backlog = outbox.backlog(conn, self.clock())
                known = set(JOB_KINDS) | set(outbox.kinds(conn))
        except StoreUnavailable as exc:
            log.warning("cannot read the outbox backlog for /metrics", extra={"error": str(exc)})
            return []
        for kind in sorted(known):
            for state in BacklogState:
                jobs.add_metric([kind, state.value], backlog.counts.get((kind, state), 0))
            oldest.add_metric([kind], backlog.oldest_due_age_seconds.get(kind, 0.0))
        return [jobs, oldest]
