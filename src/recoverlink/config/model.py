"""The config file's model: one pydantic tree, strict (unknown keys are errors), frozen after load.

Secrets are never values in the YAML: a `SecretSource` names a file or an environment variable.
Relative paths resolve against the directory of the config file.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from recoverlink.config.durations import Duration
from recoverlink.domain.alerts import AlertPolicy

Priority = Literal["P1", "P2", "P3", "P4", "P5"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve(value: Path | None, info: ValidationInfo) -> Path | None:
    base = (info.context or {}).get("base_dir")
    if value is None or value.is_absolute() or base is None:
        return value
    return (Path(base) / value).resolve()


class SecretSource(Strict):
    """Where a secret lives: exactly one of `file` or `env`."""

    file: Path | None = None
    env: str | None = None
    generate: bool = Field(
        default=False,
        description="Write a random secret to `file` (mode 0600) on first start if it is missing.",
    )

    _resolve_file = field_validator("file")(_resolve)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of 'file' or 'env'")
        if self.generate and self.file is None:
            raise ValueError("'generate' needs 'file'")
        return self


class BasicAuth(Strict):
    username: str = Field(min_length=1)
    password: SecretSource


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

    _resolve_path = field_validator("sqlite_path")(_resolve)


class ServerConfig(Strict):
    listen: str = "127.0.0.1:9471"
    workers: int = Field(default=2, gt=0, le=64)
    threads: int = Field(default=4, gt=0, le=256)
    timeout_seconds: int = Field(default=30, gt=0)
    metrics_dir: Path = Field(
        default=Path("var/metrics"),
        description="Where prometheus_client keeps multiprocess files; wiped on every start.",
    )

    _resolve_dir = field_validator("metrics_dir")(_resolve)


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
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
