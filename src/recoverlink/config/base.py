"""The building blocks every config section shares: strict frozen models, secret sources, paths."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def resolve_path(value: Path | None, info: ValidationInfo) -> Path | None:
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

    _resolve_file = field_validator("file")(resolve_path)

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
