"""The config file's model: one pydantic tree, strict (unknown keys are errors), frozen after load.

Secrets are never values in the YAML: a `SecretSource` names a file or an environment variable.
Relative paths resolve against the directory of the config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from recoverlink.domain.alerts import AlertPolicy


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


class LoggingConfig(Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Config(Strict):
    """The whole config file."""

    webhook: WebhookConfig
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
