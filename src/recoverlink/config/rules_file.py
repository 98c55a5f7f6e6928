"""The YAML shape of `rules/*.yaml`: strict models, turned into domain rules by `rules_loader`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from recoverlink.config.base import Strict
from recoverlink.config.durations import Duration
from recoverlink.config.model import StormConfig

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


class RuleFileModel(Strict):
    rules: list[RuleModel] = Field(default_factory=list)
