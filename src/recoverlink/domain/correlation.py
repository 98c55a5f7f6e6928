"""Correlation: which recovery a newly seen alert episode belongs to. Pure; the store supplies candidates.

In order of preference (DESIGN.md, issue [recoveries]):
1. the open recovery with the same correlation key (open: collecting alerts, fix not yet deployed);
2. a recovery with that key whose fix was deployed within the reopen window: reopen it;
3. the open recovery of a service this one depends on, opened within the blast-radius window:
   join it as a downstream symptom instead of opening a second incident;
4. in a storm (too many new recoveries for the team or service within the storm window): join the
   storm's parent recovery, which says so;
5. otherwise open a new recovery, linked to the previous one with that key if there was one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from recoverlink.domain.recovery_state import is_within_reopen_window
from recoverlink.domain.rules import StormScope, StormThreshold


class CorrelationOutcome(StrEnum):
    ATTACHED = "attached"  # same correlation key, open recovery
    REOPENED = "reopened"  # same key, fixed within the reopen window
    SYMPTOM = "symptom"  # joined the open recovery of a dependency
    STORM = "storm"  # joined the storm parent
    OPENED = "opened"  # a new recovery


@dataclass(frozen=True)
class RecoveryCandidate:
    """What correlation needs to know about one existing recovery."""

    id: int
    correlation_key: str
    service_ref: str | None
    team: str | None
    is_open: bool  # still collecting alerts: its fix is not deployed yet
    opened_at: datetime
    fix_deployed_at: datetime | None
    is_storm_parent: bool = False


@dataclass(frozen=True)
class EpisodeToPlace:
    """A newly seen episode, enriched."""

    correlation_key: str
    service_ref: str | None
    depends_on: tuple[str, ...]
    team: str | None
    fired_at: datetime
    reopen_window: timedelta
    storm: StormThreshold | None


@dataclass(frozen=True)
class Candidates:
    """Existing recoveries the store found for one episode."""

    same_key: Sequence[RecoveryCandidate] = ()  # newest first
    dependencies: Sequence[RecoveryCandidate] = ()  # open recoveries of services it depends on
    storm_parent: RecoveryCandidate | None = None  # the open storm parent of its team or service
    recent_openings: int = 0  # new recoveries of its storm scope within the storm window


@dataclass(frozen=True)
class CorrelationDecision:
    outcome: CorrelationOutcome
    recovery_id: int | None  # the recovery joined or reopened; None when opening a new one
    linked_to: int | None = None  # a new recovery's predecessor with the same key
    becomes_storm_parent: bool = False
    reason: str = ""


BLAST_RADIUS_WINDOW = timedelta(minutes=30)


def open_or_attach_recovery(
    episode: EpisodeToPlace, candidates: Candidates, blast_radius: timedelta = BLAST_RADIUS_WINDOW
) -> CorrelationDecision:
    """Decide where an episode goes; see the module docstring for the order."""
    open_same = next((c for c in candidates.same_key if c.is_open), None)
    if open_same is not None:
        return CorrelationDecision(CorrelationOutcome.ATTACHED, open_same.id, reason="same correlation key")
    fixed = next((c for c in candidates.same_key if c.fix_deployed_at is not None), None)
    if (
        fixed is not None
        and fixed.fix_deployed_at is not None
        and is_within_reopen_window(fixed.fix_deployed_at, episode.fired_at, episode.reopen_window)
    ):
        return CorrelationDecision(
            CorrelationOutcome.REOPENED, fixed.id, reason="fired again within the reopen window"
        )
    upstream = _dependency(episode, candidates.dependencies, blast_radius)
    if upstream is not None:
        reason = f"downstream symptom of {upstream.service_ref}"
        return CorrelationDecision(CorrelationOutcome.SYMPTOM, upstream.id, reason=reason)
    linked_to = candidates.same_key[0].id if candidates.same_key else None
    return _storm_or_open(episode, candidates, linked_to)


def _dependency(
    episode: EpisodeToPlace, dependencies: Sequence[RecoveryCandidate], blast_radius: timedelta
) -> RecoveryCandidate | None:
    wanted = set(episode.depends_on)
    for candidate in dependencies:
        # Either may come first: an alert's startsAt precedes its delivery by group_wait and more.
        recent = abs(episode.fired_at - candidate.opened_at) <= blast_radius
        if candidate.is_open and candidate.service_ref in wanted and recent:
            return candidate
    return None


def _storm_or_open(
    episode: EpisodeToPlace, candidates: Candidates, linked_to: int | None
) -> CorrelationDecision:
    storm = episode.storm
    if storm is None or candidates.recent_openings < storm.max_new_recoveries:
        return CorrelationDecision(CorrelationOutcome.OPENED, None, linked_to=linked_to, reason="new failure")
    parent = candidates.storm_parent
    scope = "team" if storm.scope is StormScope.TEAM else "service"
    if parent is not None and parent.is_open:
        reason = f"storm: more than {storm.max_new_recoveries} new recoveries per {scope}"
        return CorrelationDecision(CorrelationOutcome.STORM, parent.id, reason=reason)
    reason = f"storm begins: {candidates.recent_openings} new recoveries for this {scope}"
    return CorrelationDecision(
        CorrelationOutcome.OPENED, None, linked_to=linked_to, becomes_storm_parent=True, reason=reason
    )
