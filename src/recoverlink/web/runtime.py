"""What a running app holds: settings, store, metrics, credentials and the clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app

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

    @property
    def operations(self) -> RecoveryOperations:
        """The operator flow over this app's store, metrics and job plan (the API's and the board's)."""
        return RecoveryOperations(self.store, self.metrics, self.jobs)


def runtime() -> Runtime:
    value: Runtime = current_app.extensions[EXTENSION]
    return value
