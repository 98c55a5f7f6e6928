"""The `actions:` section (where CX handoff actions may go, and their credentials), and the checks of
the rules' actions against it.

Rules never hold secrets: an action names a credential (`credential: desktop`) defined here, whose
secret comes from a file or an environment variable. A credential is a bearer token, basic auth, or
the whole URL (a Slack-compatible incoming webhook, whose URL is its secret).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Self

from pydantic import Field, field_validator, model_validator

from recoverlink.config.base import BasicAuth, SecretSource, Strict
from recoverlink.config.impact import host_of, is_allowed_host
from recoverlink.domain.errors import ConfigError
from recoverlink.domain.rules import Constant, Rule, Template

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


class ActionCredential(Strict):
    """Exactly one of: a bearer token, basic auth, or the URL itself (then the action has no `url`)."""

    bearer: SecretSource | None = None
    basic: BasicAuth | None = None
    url: SecretSource | None = Field(default=None, description="the whole URL is the secret")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if sum(x is not None for x in (self.bearer, self.basic, self.url)) != 1:
            raise ValueError("give exactly one of 'bearer', 'basic' or 'url'")
        return self

    def secret_sources(self) -> list[SecretSource]:
        basic = self.basic.password if self.basic is not None else None
        return [s for s in (self.bearer, basic, self.url) if s is not None]


class ActionsConfig(Strict):
    allowed_hosts: list[str] = Field(
        default_factory=list, description="host or host:port that actions may call; nothing else"
    )
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    credentials: dict[str, ActionCredential] = Field(default_factory=dict)

    def longest_timeout_seconds(self) -> float:
        """How long one action call may take; 0 when no host is allowed (no action can call)."""
        return self.timeout_seconds if self.allowed_hosts else 0.0

    @field_validator("credentials")
    @classmethod
    def _credential_names(cls, value: dict[str, ActionCredential]) -> dict[str, ActionCredential]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"invalid credential name {name!r} (letters, digits, '-', '_', '.')")
        return value


def check_action_references(rules: Iterable[Rule], config: ActionsConfig) -> list[ConfigError]:
    """Each action's credential exists and fits it, and a constant URL goes to an allowed host."""
    errors: list[ConfigError] = []
    for rule in rules:
        for action in rule.actions:
            where = action.source
            path, line = (where.path, where.line) if where is not None else ("rules", None)
            for problem, hint in _problems(action.credential, action.url, config):
                errors.append(ConfigError(path, f"action {action.ref!r}: {problem}", line, hint=hint))
    return errors


def _problems(
    credential: str | None, url: Template | None, config: ActionsConfig
) -> list[tuple[str, str | None]]:
    problems: list[tuple[str, str | None]] = []
    defined = config.credentials.get(credential) if credential is not None else None
    if credential is not None and defined is None:
        known = ", ".join(sorted(config.credentials)) or "none are defined"
        hint = f"credentials are defined under actions.credentials: {known}"
        problems.append((f"unknown credential {credential!r}", hint))
    holds_url = defined is not None and defined.url is not None
    if holds_url and url is not None:
        problems.append((f"credential {credential!r} is a URL: the action must not give 'url' too", None))
    if defined is not None and not holds_url and url is None:
        problems.append(("the action has no 'url' and its credential is not a URL", None))
    if isinstance(url, Constant) and not is_allowed_host(url.source, config.allowed_hosts):
        where = f"calls {host_of(url.source)}, which is not in 'actions.allowed_hosts'"
        problems.append((where, "list the host or host:port there"))
    return problems
