"""What a running app holds: settings, store, metrics, credentials and the clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from flask import current_app
from prometheus_client.metrics import MetricWrapperBase

from recoverlink.config.loader import Settings
from recoverlink.domain.alerts import AlertPolicy
from recoverlink.domain.itsm import ItsmAdapter
from recoverlink.ingest import RecentEpisodes
from recoverlink.itsm_changes import ChangeRules
from recoverlink.recovery_jobs import JobPlan
from recoverlink.recovery_operations import RecoveryOperations
from recoverlink.reload import LiveEnrichment
from recoverlink.store.engine import Store
from recoverlink.telemetry import Metrics
from recoverlink.web.credentials import WebhookCredentials

EXTENSION = "recoverlink"
M = TypeVar("M", bound=MetricWrapperBase)


class LabelledChildren:
    """This app's labelled metric children, each looked up once.

    prometheus_client's `labels()` builds and checks the label tuple under a lock on every call
    (~4 us); the webhook path needs several per request, always with the same few values."""

    def __init__(self) -> None:
        self._children: dict[tuple[MetricWrapperBase, tuple[tuple[str, str], ...]], MetricWrapperBase] = {}

    def of(self, metric: M, **labels: str) -> M:
        key = (metric, tuple(labels.items()))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(**labels)
        return child  # type: ignore[return-value]  # labels() returns the metric's own type


@dataclass
class ItsmRuntime:
    """The ITSM side of a web process: adapters (to read callbacks), their secrets, what decides."""

    adapters: Mapping[str, ItsmAdapter] = field(default_factory=dict)
    callback_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    rules: Callable[[], ChangeRules] = ChangeRules


@dataclass
class Runtime:
    settings: Settings
    store: Store
    metrics: Metrics
    webhook_credentials: WebhookCredentials
    alert_policy: AlertPolicy
    enrichment: LiveEnrichment
    clock: Callable[[], datetime]
    jobs: JobPlan
    itsm: ItsmRuntime = field(default_factory=ItsmRuntime)
    # Which alerts of a delivery are likely new, to enrich them before SQLite's write lock.
    recent_episodes: RecentEpisodes = field(default_factory=RecentEpisodes)
    children: LabelledChildren = field(default_factory=LabelledChildren)

    @property
    def operations(self) -> RecoveryOperations:
        """The operator flow over this app's store, metrics and job plan (the API's and the board's)."""
        return RecoveryOperations(self.store, self.metrics, self.jobs)


def runtime() -> Runtime:
    value: Runtime = current_app.extensions[EXTENSION]
    return value
