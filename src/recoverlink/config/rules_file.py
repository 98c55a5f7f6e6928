"""The YAML shape of `rules/*.yaml`: strict models, turned into domain rules by `rules_loader`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator

from recoverlink.config.base import Strict
from recoverlink.config.durations import Duration
from recoverlink.config.model import StormConfig
from recoverlink.domain.actions import TRIGGERS, ActionKind

_LEVELS = {"high": 1, "medium": 2, "low": 3}


def _level(value: object) -> object:
    """Impact and urgency as 1..3 or high/medium/low (ServiceNow's words)."""
    if isinstance(value, str) and value.lower() in _LEVELS:
        return _LEVELS[value.lower()]
    return value


Level = Annotated[int, BeforeValidator(_level), Field(ge=1, le=3)]


class SetModel(Strict):
    fields: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


# Headers recoverlink sets itself: the credential's, the job's idempotency key, the body's type.
RESERVED_HEADERS = frozenset({"authorization", "idempotency-key", "content-type"})


class ActionModel(Strict):
    """One CX handoff action: an HTTP request sent through the outbox when a trigger fires."""

    name: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
    kind: ActionKind
    on: list[str] = Field(min_length=1, description="states entered and/or milestones stamped")
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    url: str | None = Field(default=None, description="a template; omitted when the credential is a URL")
    credential: str | None = Field(default=None, description="a name under actions.credentials")
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    content_type: str = "application/json"

    @field_validator("on")
    @classmethod
    def _known_triggers(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in TRIGGERS]
        if unknown:
            raise ValueError(f"unknown trigger {unknown[0]!r}; triggers are: {', '.join(TRIGGERS)}")
        return list(dict.fromkeys(value))

    @field_validator("headers")
    @classmethod
    def _own_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(
                    f"header {name!r} is set by recoverlink (use 'credential' and 'content_type')"
                )
        return value


class RuleModel(Strict):
    name: str = Field(min_length=1)
    match: list[str] | str = Field(default_factory=list)
    service: str | None = None
    owner: str | None = None
    set: SetModel = Field(default_factory=SetModel)
    impact: Level | None = None
    urgency: Level | None = None
    priority: Literal["P1", "P2", "P3", "P4", "P5"] | None = None
    correlation_key: str | None = None
    resolution: Literal["close", "comment", "monitor"] | None = None
    reopen_window: Duration | None = None
    stale_after: Duration | None = None
    storm: StormConfig | None = None
    continue_: bool = Field(default=False, alias="continue")
    actions: list[ActionModel] = Field(default_factory=list)

    @field_validator("actions")
    @classmethod
    def _unique_actions(cls, value: list[ActionModel]) -> list[ActionModel]:
        names = [a.name for a in value]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise ValueError(f"duplicate action name {duplicate!r}")
        return value


class RuleFileModel(Strict):
    rules: list[RuleModel] = Field(default_factory=list)
