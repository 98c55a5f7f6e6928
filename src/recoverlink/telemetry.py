"""Every metric recoverlink exports, defined once on a registry passed in (DESIGN.md, Metric names).

Under gunicorn, `PROMETHEUS_MULTIPROC_DIR` is set by `recoverlink serve`; each scrape then reads
every process's files through a fresh registry (see `render_metrics`).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from recoverlink.domain.alerts import AlertStatus, DeliveryResult
from recoverlink.domain.enrichment import MissReason

NOTIFICATION_OUTCOMES = ("accepted", "duplicate", "rejected", "unauthorized", "unavailable")
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The metrics of one app or worker, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.notifications = Counter(
            "recoverlink_alertmanager_notifications_total",
            "Alertmanager webhook deliveries by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.alerts_received = Counter(
            "recoverlink_alerts_received_total",
            "Alerts inside webhook deliveries, by alert status and what they told us.",
            ["status", "result"],
            registry=registry,
        )
        self.http_request_duration = Histogram(
            "recoverlink_http_request_duration_seconds",
            "Time to answer an HTTP request, by handler and status code.",
            ["handler", "code"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.enrichment_misses = Counter(
            "recoverlink_enrichment_misses_total",
            "New alert episodes the catalog could not fully place, by reason.",
            ["reason"],
            registry=registry,
        )
        # "mostrecent": the last reload anywhere wins, as one process validates and the others follow.
        self.config_last_reload_successful = Gauge(
            "recoverlink_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.config_last_reload_success_timestamp = Gauge(
            "recoverlink_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self._initialize_labels()

    def reload_succeeded(self, at_seconds: float) -> None:
        self.config_last_reload_successful.set(1)
        self.config_last_reload_success_timestamp.set(at_seconds)

    def reload_failed(self) -> None:
        self.config_last_reload_successful.set(0)

    def _initialize_labels(self) -> None:
        """Create known label values at zero so rate() sees the first event."""
        for outcome in NOTIFICATION_OUTCOMES:
            self.notifications.labels(outcome=outcome)
        for status in AlertStatus:
            for result in DeliveryResult:
                self.alerts_received.labels(status=status.value, result=result.value)
        for reason in MissReason:
            self.enrichment_misses.labels(reason=reason.value)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render_metrics(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The exposition body: every process's values in multiprocess mode, else this registry's."""
    path = multiprocess_dir()
    if path is None:
        return generate_latest(registry), CONTENT_TYPE_LATEST
    scrape = CollectorRegistry(support_collectors_without_names=True)
    multiprocess.MultiProcessCollector(scrape, path=path)  # type: ignore[no-untyped-call]
    return generate_latest(scrape), CONTENT_TYPE_LATEST
