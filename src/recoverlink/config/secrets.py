"""Read secrets from files or environment variables, and create missing generated ones."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from recoverlink.config.base import SecretSource
from recoverlink.domain.errors import ConfigError, ConfigErrors

TOKEN_BYTES = 32


def new_token(prefix: str) -> str:
    """A random token with a readable prefix, so a leaked one is recognisable in a scanner."""
    return f"{prefix}_{secrets.token_urlsafe(TOKEN_BYTES)}"


def ensure_generated(source: SecretSource, prefix: str) -> bool:
    """Write a fresh token to `source.file` (mode 0600) when generation is on and it is missing."""
    if not source.generate or source.file is None or source.file.exists():
        return False
    source.file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(source.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(new_token(prefix) + "\n")
    return True


def read_secret(source: SecretSource, environ: Mapping[str, str], what: str) -> str:
    """The secret's value, stripped of surrounding whitespace; a clear error when absent."""
    if source.env is not None:
        value = environ.get(source.env, "").strip()
        if not value:
            raise ConfigErrors([ConfigError(f"${source.env}", f"{what}: variable is unset or empty")])
        return value
    path: Path = source.file  # type: ignore[assignment]  # the model guarantees one of the two
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigErrors(
            [ConfigError(str(path), f"{what}: cannot read secret file: {exc.strerror}")]
        ) from exc
    if not value:
        raise ConfigErrors([ConfigError(str(path), f"{what}: secret file is empty")])
    return value
