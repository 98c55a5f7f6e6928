"""Load the config file and apply the RECOVERLINK_* environment overrides (the only place that reads them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from recoverlink.config.model import Config
from recoverlink.config.yamlfile import load_yaml, validate
from recoverlink.domain.errors import ConfigError, ConfigErrors

ENV_CONFIG = "RECOVERLINK_CONFIG"
ENV_DATABASE_URL = "RECOVERLINK_DATABASE_URL"
ENV_LISTEN = "RECOVERLINK_LISTEN"
DEFAULT_CONFIG = Path("deploy/recoverlink.yaml")


@dataclass(frozen=True)
class Settings:
    """A validated config plus what the environment decided: the running service's whole input."""

    config: Config
    config_path: Path
    database_url: str
    listen: str


def config_path_from(explicit: str | None, environ: Mapping[str, str]) -> Path:
    return Path(explicit or environ.get(ENV_CONFIG) or DEFAULT_CONFIG)


def load_config(path: Path) -> Config:
    """Parse and validate one config file; every problem is a ConfigError with file and line."""
    node = load_yaml(path)
    return validate(Config, node, str(path), context={"base_dir": path.parent.resolve()})


def load_settings(path: Path, environ: Mapping[str, str], listen: str | None = None) -> Settings:
    config = load_config(path)
    url = environ.get(ENV_DATABASE_URL) or sqlite_url(config.database.sqlite_path)
    if not url.startswith(("sqlite", "postgresql")):
        raise ConfigErrors(
            [
                ConfigError(
                    ENV_DATABASE_URL,
                    f"unsupported database URL scheme in {url.split(':', 1)[0]!r}",
                    hint="use sqlite:///path/to.db or postgresql+psycopg://user@host/db",
                )
            ]
        )
    return Settings(
        config=config,
        config_path=path,
        database_url=url,
        listen=listen or environ.get(ENV_LISTEN) or config.server.listen,
    )


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"
