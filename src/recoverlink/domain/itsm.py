"""ITSM incidents as recoverlink sees them, whatever the tool calls things, and what their changes mean.

One recovery has at most one incident, found again by its correlation id (`recoverlink:rec-<id>`),
which every adapter stores in the ITSM record (ServiceNow `correlation_id`, a Jira label, an RT
custom field). Adapters (`adapters/itsm/<system>.py`) translate to and from these values; the
state machine hears about an incident only through `events_for_change`. Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from recoverlink.domain.catalog import ItsmRouting
from recoverlink.domain.recovery_state import RecoveryEvent, RecoveryEventKind, TransitionSource
from recoverlink.domain.rules import ResolutionPolicy

CORRELATION_PREFIX = "recoverlink:rec-"


def correlation_id(recovery_id: int) -> str:
    """The key stored in the ITSM record, so a retried create finds the incident it already made."""
    return f"{CORRELATION_PREFIX}{recovery_id}"


def recovery_id_of(correlation: str | None) -> int | None:
    """The recovery a correlation id names, or None when it is not one of ours."""
    if not correlation or not correlation.startswith(CORRELATION_PREFIX):
        return None
    digits = correlation.removeprefix(CORRELATION_PREFIX)
    return int(digits) if digits.isascii() and digits.isdigit() else None


class IncidentStatus(StrEnum):
    """The common meaning of an incident's state; each adapter maps its tool's states (configurable)."""

    NEW = "new"
    IN_PROGRESS = "in_progress"
    ON_HOLD = "on_hold"  # also "monitoring" after the fix, when the resolution policy says so
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELED = "canceled"


@dataclass(frozen=True)
class IncidentLink:
    """How recoverlink finds its incident again: remembered on the recovery once known."""

    system: str  # servicenow | jira | rt
    id: str  # what the API addresses: a sys_id, an issue key, a ticket id
    number: str  # what people read: INC0010002, OPS-154, 12
    url: str | None = None  # where a person opens it


@dataclass(frozen=True)
class IncidentDraft:
    """What a new incident says: from the recovery and the enrichment of its first alert."""

    correlation_id: str
    title: str
    description: str
    priority: str  # P1..P5 or unknown
    impact: int | None = None  # 1 high .. 3 low
    urgency: int | None = None
    routing: ItsmRouting = field(default_factory=ItsmRouting)
    service: str | None = None
    team: str | None = None


@dataclass(frozen=True)
class IncidentChange:
    """One change an ITSM reported (a callback or a reconciliation poll), in recoverlink's terms."""

    system: str
    incident_id: str
    correlation_id: str | None
    status: IncidentStatus | None  # None: the tool's state means nothing to recoverlink
    raw_status: str
    dedup_key: str  # the same delivery twice is one change (a transaction id, sys_id + mod_count)
    sequence: int | None = None  # a counter that orders changes (ServiceNow sys_mod_count); None if none
    assignee_team: str | None = None  # the group or team now assigned, if the change says
    actor: str | None = None
    by_us: bool = False  # made by recoverlink's own API user: an echo of our own update
    resolution: str | None = None  # e.g. Jira's "Won't Fix"
    at: datetime | None = None


def events_for_change(
    change: IncidentChange, known_teams: Sequence[str] = (), wont_fix: Sequence[str] = ()
) -> list[RecoveryEvent]:
    """The recovery events an incident change means. An echo of our own update means nothing.

    in progress -> fix_started; resolved -> incident_resolved; closed -> incident_closed (or canceled,
    when the resolution is a won't-fix one); canceled -> canceled; a new assignee team the catalog
    knows -> owner_known (a different team counts an escalation bounce).
    """
    if change.by_us:
        return []
    evidence = {"system": change.system, "incident": change.incident_id, "status": change.raw_status}
    if change.actor:
        evidence["actor"] = change.actor
    events: list[RecoveryEvent] = []
    source = TransitionSource.ITSM
    if change.assignee_team and change.assignee_team in known_teams:
        team_evidence = {**evidence, "assignee": change.assignee_team}
        events.append(
            RecoveryEvent(RecoveryEventKind.OWNER_KNOWN, source, team_evidence, owner=change.assignee_team)
        )
    kind = _STATUS_EVENTS.get(change.status) if change.status is not None else None
    if change.resolution and change.resolution in wont_fix and change.status in _DONE:
        kind = RecoveryEventKind.CANCELED
        evidence = {**evidence, "resolution": change.resolution}
    if kind is not None:
        events.append(RecoveryEvent(kind, source, evidence))
    return events


_STATUS_EVENTS: Mapping[IncidentStatus, RecoveryEventKind] = {
    IncidentStatus.IN_PROGRESS: RecoveryEventKind.FIX_STARTED,
    IncidentStatus.RESOLVED: RecoveryEventKind.INCIDENT_RESOLVED,
    IncidentStatus.CLOSED: RecoveryEventKind.INCIDENT_CLOSED,
    IncidentStatus.CANCELED: RecoveryEventKind.CANCELED,
}
_DONE = (IncidentStatus.RESOLVED, IncidentStatus.CLOSED)


@dataclass(frozen=True)
class CheckFinding:
    """One line of `recoverlink itsm check`: what was checked, whether it is fine, what to do if not."""

    what: str
    ok: bool
    detail: str = ""


class ItsmAdapter(Protocol):
    """One ITSM system. Every call raises `ItsmError` (retryable or not, with a bounded reason) when
    the remote fails; an answer that is not the expected JSON (a hibernating instance's HTML page)
    is a retryable failure, never a success."""

    @property
    def name(self) -> str:
        """servicenow | jira | rt: the `itsm` label of the metrics."""
        ...

    @property
    def target(self) -> str:
        """The rate-limit key of its calls (the system name)."""
        ...

    def find_incident(self, correlation: str) -> IncidentLink | None:
        """The incident that carries this correlation id exactly, or None (search, then verify)."""
        ...

    def create_incident(self, draft: IncidentDraft) -> IncidentLink:
        """Create the incident, storing `draft.correlation_id` in it. Not idempotent by itself: the
        caller searches first, and after a timeout or an unknown outcome searches again."""
        ...

    def add_note(self, link: IncidentLink, note: str) -> None:
        """A work note / comment (internal, not customer-visible)."""
        ...

    def resolve_incident(self, link: IncidentLink, policy: ResolutionPolicy, note: str) -> IncidentStatus:
        """After the recovery is verified: resolve it (`close`), only comment (`comment`), or move it
        to the monitoring state (`monitor`). Returns the status it is in afterwards."""
        ...

    def reopen_incident(self, link: IncidentLink, note: str) -> None:
        """The recovery reopened: move a resolved incident back to in progress (never a won't-fix)."""
        ...

    def read_incident(self, link: IncidentLink) -> IncidentChange:
        """The incident as it is now (for reconciliation), as a change with a poll dedup key."""
        ...

    def changed_since(self, since: datetime) -> list[IncidentChange]:
        """Our incidents (correlation id with our prefix) updated since then: the reconciliation poll."""
        ...

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> IncidentChange:
        """Read one callback of this system (raises `PayloadInvalid` naming the field). Authentication
        happens before, in the web layer."""
        ...

    def check(self) -> list[CheckFinding]:
        """Credentials, permissions, the correlation field and the configured transitions or states."""
        ...
