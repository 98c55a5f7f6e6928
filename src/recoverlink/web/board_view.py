"""What a board card says, in the agents' words: built from an open recovery and the catalog, ordered
most severe first (priority, then the earliest state, then the oldest), and filtered by team, journey
and segment. No Flask here: the views render these values, Jinja2 escapes them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from recoverlink.domain.catalog import Catalog
from recoverlink.domain.errors import PayloadInvalid
from recoverlink.domain.priority import PRIORITIES
from recoverlink.domain.recovery_state import STAGES
from recoverlink.recovery_words import IMPACT_LABELS, STATE_LABELS, describe_entry, impact_sizes
from recoverlink.store.board_queries import BoardRecovery
from recoverlink.store.recovery_queries import AuditEntry, RecoverySummary
from recoverlink.waterfall import format_duration

_RANK = {stage.value: rank for rank, stage in enumerate(STAGES)}
_PRIORITY_RANK = {p: rank for rank, p in enumerate(PRIORITIES)}
FILTER_MAX_LENGTH = 255


@dataclass(frozen=True)
class IncidentLink:
    system: str
    number: str | None  # None while the incident is being created
    url: str | None  # only an http(s) URL is ever a link
    status: str


@dataclass(frozen=True)
class LastUpdate:
    at: datetime
    text: str
    by: str


@dataclass(frozen=True)
class Card:
    id: int
    title: str
    degraded: str  # what is degraded, in plain words
    service: str | None
    priority: str
    state: str
    state_label: str
    state_since: datetime
    in_state: str  # how long it has been in that state
    opened_at: datetime
    team: str | None  # the owner now, else the team it was opened for
    team_label: str
    journeys: tuple[str, ...]
    segments: tuple[str, ...]
    other_facts: tuple[tuple[str, tuple[str, ...]], ...]  # regions, channels, queues, intents
    impact_status: str
    impact_label: str
    impact_sizes: tuple[str, ...]  # "checkout failures per minute: 12.5"
    workaround: str | None
    public_message: str | None
    incident: IncidentLink | None
    last_update: LastUpdate | None
    stale_alerts: int
    storm: bool
    reopen_count: int
    alerts_firing: int


@dataclass(frozen=True)
class BoardFilters:
    """Empty means any: `team` matches the owner now (else the opening team)."""

    team: str = ""
    journey: str = ""
    segment: str = ""

    def matches(self, card: Card) -> bool:
        return (
            (not self.team or card.team == self.team)
            and (not self.journey or self.journey in card.journeys)
            and (not self.segment or self.segment in card.segments)
        )

    def query(self) -> dict[str, str]:
        """The query arguments that select these filters (for the fragment's URL)."""
        return {name: value for name, value in vars(self).items() if value}


@dataclass(frozen=True)
class FilterOptions:
    teams: tuple[tuple[str, str], ...]  # (name, label)
    journeys: tuple[str, ...]
    segments: tuple[str, ...]


def parse_filters(args: Mapping[str, str]) -> BoardFilters:
    """The filters from query arguments; PayloadInvalid (400) for a value no select could send."""
    values = {}
    for name in ("team", "journey", "segment"):
        value = args.get(name, "")
        if len(value) > FILTER_MAX_LENGTH or "\x00" in value:
            raise PayloadInvalid(f"{name} must be at most {FILTER_MAX_LENGTH} characters, without NUL", name)
        values[name] = value
    return BoardFilters(**values)


def build_card(item: BoardRecovery, catalog: Catalog, now: datetime) -> Card:
    r, context = item.summary, item.context
    team = r.owner or r.team
    facts: Mapping[str, Sequence[str]] = r.impact.get("facts") or {}
    return Card(
        id=r.id,
        title=r.title,
        degraded=_degraded(r, context.service_ref, catalog),
        service=r.service,
        priority=r.priority,
        state=r.state,
        state_label=STATE_LABELS.get(r.state, r.state),
        state_since=r.state_changed_at,
        in_state=format_duration((now - r.state_changed_at).total_seconds()),
        opened_at=r.opened_at,
        team=team,
        team_label=team_label(team, catalog),
        journeys=context.journeys,
        segments=context.segments,
        other_facts=tuple(
            (kind, tuple(values)) for kind, values in facts.items() if kind not in ("journeys", "segments")
        ),
        impact_status=str(r.impact.get("status", "no_sources")),
        impact_label=IMPACT_LABELS.get(str(r.impact.get("status")), "Impact not known"),
        impact_sizes=impact_sizes(r.impact),
        workaround=r.workaround,
        public_message=r.public_message,
        incident=incident_link(r.incident),
        last_update=last_update(context.last_update),
        stale_alerts=context.stale_alerts,
        storm=r.storm,
        reopen_count=r.reopen_count,
        alerts_firing=r.alerts_firing,
    )


def severity_key(card: Card) -> tuple[int, int, datetime, int]:
    """Most severe first: P1 before P5 before unknown, the earliest state, the longest open."""
    priority = _PRIORITY_RANK.get(card.priority, len(_PRIORITY_RANK))
    return (priority, _RANK.get(card.state, len(_RANK)), card.opened_at, card.id)


def board_cards(items: Iterable[BoardRecovery], catalog: Catalog, now: datetime) -> list[Card]:
    return sorted((build_card(item, catalog, now) for item in items), key=severity_key)


def filter_options(cards: Sequence[Card], catalog: Catalog) -> FilterOptions:
    """The catalog's teams, journeys and segments, and any other value a card shows."""
    entries = catalog.entries.values()
    teams = {*catalog.teams, *(c.team for c in cards if c.team)}
    journeys = {*(j for e in entries for j in e.journeys), *(j for c in cards for j in c.journeys)}
    segments = {*(s for e in entries for s in e.segments), *(s for c in cards for s in c.segments)}
    return FilterOptions(
        teams=tuple((name, team_label(name, catalog)) for name in sorted(teams)),
        journeys=tuple(sorted(journeys)),
        segments=tuple(sorted(segments)),
    )


def team_label(name: str | None, catalog: Catalog) -> str:
    if not name:
        return "Not known yet"
    team = catalog.teams.get(name)
    return team.display_name if team is not None and team.display_name else name


def _degraded(r: RecoverySummary, service_ref: str | None, catalog: Catalog) -> str:
    entry = catalog.entry(service_ref) if service_ref else None
    if entry is not None and entry.description:
        return f"{entry.description} ({r.service})"
    return r.service or "A service the catalog does not know"


def safe_url(url: object) -> str | None:
    """The URL when it is http(s): a `javascript:` link from any source never reaches a page."""
    if not isinstance(url, str):
        return None
    return url if urlsplit(url).scheme.lower() in ("http", "https") else None


def incident_link(incident: Mapping[str, Any] | None) -> IncidentLink | None:
    if incident is None:
        return None
    number = incident.get("number") or incident.get("id")
    return IncidentLink(
        system=str(incident.get("system")),
        number=str(number) if number is not None else None,
        url=safe_url(incident.get("url")),
        status=str(incident.get("status", "unknown")),
    )


def last_update(entry: AuditEntry | None) -> LastUpdate | None:
    return LastUpdate(entry.at, describe_entry(entry), entry.actor) if entry is not None else None
