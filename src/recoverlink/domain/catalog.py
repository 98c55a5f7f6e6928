"""The service catalog: who owns what, what depends on what, which customers feel it.

Entities are keyed by a normalised Backstage-style reference `kind:namespace/name` (lower case),
whichever source they came from (our YAML or Backstage `catalog-info.yaml`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from recoverlink.domain.matchers import Matcher

DEFAULT_NAMESPACE = "default"


class EntityKind(StrEnum):
    COMPONENT = "component"
    RESOURCE = "resource"
    SYSTEM = "system"


@dataclass(frozen=True)
class SourceLocation:
    """Where an entity or rule was defined, so a later check can point at it."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else self.path


@dataclass(frozen=True)
class Team:
    name: str
    display_name: str = ""
    contacts: Mapping[str, str] = field(default_factory=dict)  # e.g. email, chat, pager
    source: SourceLocation | None = None


@dataclass(frozen=True)
class ItsmRouting:
    """Where the incident goes: the system and its routing fields (each optional)."""

    system: str | None = None  # servicenow | jira | rt
    assignment_group: str | None = None
    project: str | None = None
    queue: str | None = None
    ci: str | None = None


@dataclass(frozen=True)
class CatalogEntry:
    """A service (Component), a resource it depends on (Resource), or a System."""

    ref: str
    name: str
    kind: EntityKind
    owner: str | None = None  # a team name
    tier: str | None = None
    lifecycle: str | None = None
    system: str | None = None  # a system ref
    depends_on: tuple[str, ...] = ()  # entity refs
    journeys: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    runbook_url: str | None = None
    dashboard_url: str | None = None
    itsm: ItsmRouting = field(default_factory=ItsmRouting)
    impact_sources: tuple[str, ...] = ()
    verified_by: str | None = None  # a team name
    description: str = ""
    # None: the default selector, the `service` label equals the entity's name.
    selector: tuple[Matcher, ...] | None = None
    source: SourceLocation | None = None


@dataclass(frozen=True)
class Catalog:
    entries: Mapping[str, CatalogEntry]  # by ref
    teams: Mapping[str, Team]  # by name
    fallback_owner: str | None = None

    def entry(self, ref: str) -> CatalogEntry | None:
        return self.entries.get(ref)


def entity_ref(text: str, default_kind: EntityKind, namespace: str = DEFAULT_NAMESPACE) -> str:
    """Normalise `[kind:][namespace/]name` to `kind:namespace/name` in lower case (Backstage rules)."""
    kind, sep, rest = text.partition(":")
    if not sep:
        kind, rest = default_kind.value, text
    ns, sep, name = rest.partition("/")
    if not sep:
        ns, name = namespace, rest
    return f"{kind.strip().lower()}:{ns.strip().lower()}/{name.strip().lower()}"
