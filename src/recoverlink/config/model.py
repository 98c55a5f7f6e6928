"""The config file's model: one pydantic tree, strict (unknown keys are errors), frozen after load.

Secrets are never values in the YAML: a `SecretSource` names a file or an environment variable.
Relative paths resolve against the directory of the config file.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from recoverlink.config.actions import ActionsConfig
from recoverlink.config.base import BasicAuth, SecretSource, Strict, resolve_path
from recoverlink.config.board import BoardConfig
from recoverlink.config.durations import Duration
from recoverlink.config.impact import ImpactConfig
from recoverlink.config.itsm import ItsmConfig
from recoverlink.domain.alerts import AlertPolicy

Priority = Literal["P1", "P2", "P3", "P4", "P5"]


class WebhookAuth(Strict):
    """Credentials Alertmanager's `http_config` sends: a bearer token, basic auth, or both."""

    bearer: SecretSource | None = None
    basic: BasicAuth | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Self:
        if self.bearer is None and self.basic is None:
            raise ValueError("configure 'bearer' or 'basic' (the webhook is never open)")
        return self


class WebhookConfig(Strict):
    auth: WebhookAuth
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    known_severities: list[str] = Field(
        default_factory=lambda: ["critical", "major", "warning", "minor", "info"]
    )
    service_label: str = "service"
    severity_label: str = "severity"

    def alert_policy(self) -> AlertPolicy:
        return AlertPolicy(
            known_severities=frozenset(self.known_severities),
            service_label=self.service_label,
            severity_label=self.severity_label,
        )


class DatabaseConfig(Strict):
    """The store. RECOVERLINK_DATABASE_URL, when set, wins over `sqlite_path`."""

    sqlite_path: Path = Path("var/recoverlink.db")
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    busy_timeout_ms: int = Field(default=5000, ge=0)
    pool_size: int = Field(default=10, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)

    _resolve_path = field_validator("sqlite_path")(resolve_path)


class ServerConfig(Strict):
    listen: str = "127.0.0.1:9471"
    workers: int = Field(default=2, gt=0, le=64)
    threads: int = Field(default=4, gt=0, le=256)
    timeout_seconds: int = Field(default=30, gt=0)
    metrics_dir: Path = Field(
        default=Path("var/metrics"),
        description="Where prometheus_client keeps multiprocess files; wiped on every start.",
    )

    _resolve_dir = field_validator("metrics_dir")(resolve_path)


class ApiConfig(Strict):
    bootstrap_admin_token: SecretSource | None = Field(
        default=None,
        description="A token registered with role admin at start (hashed in the store).",
    )


class BackstageAnnotations(Strict):
    """Which Backstage annotation carries which catalog field (there is no standard for these)."""

    tier: str = "recoverlink.io/tier"
    journeys: str = "recoverlink.io/journeys"  # comma-separated
    segments: str = "recoverlink.io/segments"  # comma-separated
    impact_sources: str = "recoverlink.io/impact-sources"  # comma-separated
    verified_by: str = "recoverlink.io/verified-by"  # a Group ref
    alert_selector: str = "recoverlink.io/alert-selector"  # matchers, e.g. {service=~"pay.*"}
    itsm_system: str = "recoverlink.io/itsm-system"
    assignment_group: str = "recoverlink.io/itsm-assignment-group"
    project: str = "recoverlink.io/itsm-project"
    queue: str = "recoverlink.io/itsm-queue"
    ci: str = "recoverlink.io/itsm-ci"
    runbook_url: str = "recoverlink.io/runbook-url"
    dashboard_url: str = "recoverlink.io/dashboard-url"


class CatalogConfig(Strict):
    """Where the catalog comes from. Paths may be globs; relative to the config file."""

    files: list[str] = Field(default_factory=list, description="recoverlink catalog YAML files")
    backstage: list[str] = Field(default_factory=list, description="Backstage catalog-info.yaml files")
    fallback_owner: str | None = Field(
        default=None, description="The team that owns alerts the catalog cannot place."
    )
    backstage_annotations: BackstageAnnotations = Field(default_factory=BackstageAnnotations)


class RulesConfig(Strict):
    files: list[str] = Field(default_factory=list, description="rule files; globs allowed")
    tests: list[str] = Field(default_factory=list, description="rule unit tests for `recoverlink test`")


class StormConfig(Strict):
    max_new_recoveries: int = Field(gt=0)
    per: Duration
    scope: Literal["team", "service"] = "service"


class EnrichmentConfig(Strict):
    """Defaults for what no rule sets, and the impact x urgency priority matrix."""

    resolution: Literal["close", "comment", "monitor"] = "close"
    reopen_window: Duration = timedelta(hours=1)
    stale_after: Duration = timedelta(hours=8)
    storm: StormConfig | None = None
    impact_by_tier: dict[str, Annotated[int, Field(ge=1, le=3)]] = Field(default_factory=dict)
    urgency_by_severity: dict[str, Annotated[int, Field(ge=1, le=3)]] = Field(
        default_factory=lambda: {"critical": 1, "major": 1, "warning": 2, "minor": 3, "info": 3}
    )
    # priority_matrix["1"]["2"] is the priority of impact 1, urgency 2; default: ServiceNow's.
    priority_matrix: dict[Literal["1", "2", "3"], dict[Literal["1", "2", "3"], Priority]] | None = None


class MetricsConfig(Strict):
    max_services: int = Field(
        default=200, gt=0, description="Distinct `service` label values per metric; the rest are `other`."
    )


class RateLimit(Strict):
    """A token bucket: `per_second` calls on average, up to `burst` at once."""

    per_second: float = Field(gt=0)
    burst: int = Field(default=1, ge=1)


class WorkerConfig(Strict):
    """The outbox worker: how it waits, leases, retries and paces calls."""

    poll_interval: Duration = Field(
        default=timedelta(milliseconds=100),
        description="How often the worker looks for due jobs on SQLite (PostgreSQL wakes it by NOTIFY).",
    )
    lease: Duration = Field(
        default=timedelta(seconds=60),
        description="A claimed job whose worker died is claimed again after this long.",
    )
    max_attempts: int = Field(default=8, ge=1, le=100, description="Then the job is dead-lettered.")
    backoff_initial: Duration = timedelta(seconds=1)
    backoff_max: Duration = timedelta(minutes=10)
    concurrency: int = Field(default=4, ge=1, le=64, description="Jobs one worker runs at once.")
    metrics_listen: str = Field(
        default="127.0.0.1:9472", description="Where `recoverlink worker` alone serves /metrics."
    )
    rate_limits: dict[str, RateLimit] = Field(
        default_factory=dict, description="By target: an ITSM system name or an HTTP host[:port]."
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> Self:
        if self.backoff_initial > self.backoff_max:
            raise ValueError("'backoff_initial' must not exceed 'backoff_max'")
        if self.lease < timedelta(seconds=1):
            raise ValueError("'lease' must be at least 1s")
        return self


class LoggingConfig(Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Config(Strict):
    """The whole config file."""

    webhook: WebhookConfig
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    enrichment: EnrichmentConfig = Field(default_factory=EnrichmentConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    impact: ImpactConfig = Field(default_factory=ImpactConfig)
    itsm: ItsmConfig = Field(default_factory=ItsmConfig)
    actions: ActionsConfig = Field(default_factory=ActionsConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    board: BoardConfig = Field(default_factory=BoardConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _lease_outlasts_calls(self) -> Self:
        # A job still waiting on its call when the lease runs out would be claimed and run twice.
        longest = max(
            self.impact.longest_timeout_seconds(),
            self.itsm.longest_timeout_seconds(),
            self.actions.longest_timeout_seconds(),
        )
        if self.worker.lease.total_seconds() <= longest:
            raise ValueError(
                f"worker.lease ({self.worker.lease.total_seconds():g}s) must be longer than the longest "
                f"impact source, ITSM or action timeout ({longest:g}s)"
            )
        return self
