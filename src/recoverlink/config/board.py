"""The `board:` section: who may read the agents' board and the customer status page, how often the
board refreshes, and the secret that signs the operators' session cookie."""

from __future__ import annotations

from datetime import timedelta
from typing import Self

from pydantic import Field, model_validator

from recoverlink.config.base import SecretSource, Strict
from recoverlink.config.durations import Duration


class BoardConfig(Strict):
    """`GET /board` and `GET /status`; every action on the board needs an operator's sign-in."""

    public: bool = Field(
        default=False, description="Whether /board may be read without signing in (read-only)."
    )
    status_public: bool = Field(
        default=True, description="Whether /status and /status.json may be read without signing in."
    )
    refresh_seconds: int = Field(
        default=10, ge=2, le=300, description="How often an open board asks for changes (short polling)."
    )
    session_secret: SecretSource | None = Field(
        default=None,
        description="Signs the session cookie; every process must read the same one. Without it nobody "
        "can sign in, so only a public board or status page can be read.",
    )
    session_lifetime: Duration = Field(
        default=timedelta(hours=12), description="A sign-in ends after this long; then paste the token again."
    )
    secure_cookie: bool = Field(
        default=False, description="Send the session cookie over HTTPS only (set it when served behind TLS)."
    )

    @model_validator(mode="after")
    def _lifetime_bounds(self) -> Self:
        if not timedelta(minutes=1) <= self.session_lifetime <= timedelta(days=30):
            raise ValueError("'session_lifetime' must be between 1m and 30d")
        return self
