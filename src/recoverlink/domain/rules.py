"""Enrichment rules as SREs write them in `rules/*.yaml`, after loading: matchers, values and policies.

Values may be templates; the domain sees them only through the `Template` protocol, so Jinja2
(compiled and sandboxed by `config/`) never leaks into the core.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from recoverlink.domain.catalog import SourceLocation
from recoverlink.domain.matchers import Matcher

if TYPE_CHECKING:  # domain.actions imports Template from here
    from recoverlink.domain.actions import Action


class Template(Protocol):
    """A value computed from the alert and its catalog entry."""

    @property
    def source(self) -> str: ...

    def render(self, context: Mapping[str, Any]) -> str: ...


@dataclass(frozen=True)
class Constant:
    """A value with no template syntax: rendering is free."""

    source: str

    def render(self, context: Mapping[str, Any]) -> str:
        return self.source


class ResolutionPolicy(StrEnum):
    """What happens to the ITSM incident when the recovery's alerts resolve."""

    CLOSE = "close"
    COMMENT = "comment"  # comment only; people close it
    MONITOR = "monitor"  # move to a monitoring state


class StormScope(StrEnum):
    TEAM = "team"
    SERVICE = "service"


@dataclass(frozen=True)
class StormThreshold:
    """More than `max_new_recoveries` within `window` for one team or service is a storm."""

    max_new_recoveries: int
    window: timedelta
    scope: StormScope = StormScope.SERVICE


@dataclass(frozen=True)
class Rule:
    """One rule: when `matchers` all match, apply what it sets; stop unless `continue_`."""

    name: str
    matchers: tuple[Matcher, ...] = ()
    service: Template | None = None  # overrides the catalog selectors for matching alerts
    owner: Template | None = None
    fields: Mapping[str, Template] = field(default_factory=dict)
    labels: Mapping[str, Template] = field(default_factory=dict)
    impact: int | None = None  # 1 high .. 3 low
    urgency: int | None = None  # 1 high .. 3 low
    priority: str | None = None  # P1..P5, overrides the matrix
    correlation_key: Template | None = None
    resolution: ResolutionPolicy | None = None
    reopen_window: timedelta | None = None
    stale_after: timedelta | None = None
    storm: StormThreshold | None = None
    continue_: bool = False
    actions: tuple[Action, ...] = ()  # CX handoffs of the recoveries its alerts open
    source: SourceLocation | None = None


@dataclass(frozen=True)
class EnrichmentDefaults:
    """What applies when no rule says otherwise (from config)."""

    resolution: ResolutionPolicy = ResolutionPolicy.CLOSE
    reopen_window: timedelta = timedelta(hours=1)
    stale_after: timedelta = timedelta(hours=8)
    storm: StormThreshold | None = None
    impact_by_tier: Mapping[str, int] = field(default_factory=dict)
    urgency_by_severity: Mapping[str, int] = field(
        default_factory=lambda: {"critical": 1, "major": 1, "warning": 2, "minor": 3, "info": 3}
    )
    service_label: str = "service"
    severity_label: str = "severity"


@dataclass(frozen=True)
class RuleSet:
    """The ordered rules plus the content hash that identifies this version of them."""

    rules: tuple[Rule, ...]
    version: str
    defaults: EnrichmentDefaults = field(default_factory=EnrichmentDefaults)
