"""What a running app holds: settings, store, metrics, credentials and the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from flask import current_app

from recoverlink.config.loader import Settings
from recoverlink.domain.alerts import AlertPolicy
from recoverlink.recovery_jobs import JobPlan
from recoverlink.reload import LiveEnrichment
from recoverlink.store.engine import Store
from recoverlink.telemetry import Metrics
from recoverlink.web.credentials import WebhookCredentials

EXTENSION = "recoverlink"


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


def runtime() -> Runtime:
    value: Runtime = current_app.extensions[EXTENSION]
    return value
