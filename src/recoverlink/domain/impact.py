"""Customer impact: what an impact source measured, and whether that means customers are affected.

A source (a PromQL query, an HTTP lookup) returns an `ImpactReading`: named counts (checkout failures
per minute, queue length, open cases) and bounded facts (the segments, regions, channels, queues,
journeys or bot intents where the impact shows). `assess` compares the counts with the source's
thresholds. Pure: the adapters in `adapters/impact/` do the I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

# Facts stay bounded: a board card or an ITSM field shows a handful, never a customer list.
MAX_FACT_VALUES = 20
MAX_FACT_LENGTH = 100


class FactKind(StrEnum):
    """Where an impact shows; the only keys an impact fact may have."""

    SEGMENTS = "segments"
    REGIONS = "regions"
    CHANNELS = "channels"
    QUEUES = "queues"
    JOURNEYS = "journeys"
    INTENTS = "intents"  # failed chatbot intents


@dataclass(frozen=True)
class ImpactReading:
    """What one source measured at one moment."""

    counts: Mapping[str, float] = field(default_factory=dict)
    facts: Mapping[FactKind, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ImpactAssessment:
    """A reading judged against thresholds: `affected` when any count is above its threshold."""

    affected: bool
    breaches: tuple[str, ...]  # e.g. "checkout_failures_per_minute 12.5 > 1"
    reading: ImpactReading


class ImpactSource(Protocol):
    """One configured impact source; `read` raises `ImpactSourceError` when the remote fails."""

    @property
    def name(self) -> str: ...

    @property
    def target(self) -> str:
        """What the call goes to (a host), the key of its rate limit."""
        ...

    @property
    def thresholds(self) -> Mapping[str, float]: ...

    @property
    def repeat_contacts_count(self) -> str | None:
        """The count that measures repeat customer contacts, if this source has one."""
        ...

    def read(self, context: Mapping[str, Any]) -> ImpactReading: ...


def bounded_facts(facts: Mapping[FactKind, object]) -> dict[FactKind, tuple[str, ...]]:
    """Distinct, non-empty, short values in first-seen order, at most MAX_FACT_VALUES per kind."""
    bounded: dict[FactKind, tuple[str, ...]] = {}
    for kind, values in facts.items():
        items = values if isinstance(values, list | tuple | set | frozenset) else [values]
        kept: list[str] = []
        for item in items:
            text = str(item).strip()[:MAX_FACT_LENGTH] if item is not None else ""
            if text and text not in kept:
                kept.append(text)
            if len(kept) == MAX_FACT_VALUES:
                break
        if kept:
            bounded[kind] = tuple(kept)
    return bounded


def assess(reading: ImpactReading, thresholds: Mapping[str, float]) -> ImpactAssessment:
    """Customers are affected when a count is above its threshold; a missing count is not a breach."""
    breaches = tuple(
        f"{name} {_number(reading.counts[name])} > {_number(limit)}"
        for name, limit in thresholds.items()
        if name in reading.counts and reading.counts[name] > limit
    )
    return ImpactAssessment(affected=bool(breaches), breaches=breaches, reading=reading)


def _number(value: float) -> str:
    return f"{value:g}"


def reading_record(reading: ImpactReading) -> dict[str, Any]:
    """The JSON form kept on the recovery and in the audit trail."""
    return {
        "counts": dict(reading.counts),
        "facts": {kind.value: list(values) for kind, values in reading.facts.items()},
    }


def impact_summary(sources: Sequence[str], entries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One recovery's impact as people read it, from what each of its sources last said.

    `status`: confirmed (a source shows affected customers), unknown (a source failed and none shows
    impact), pending (not every source has answered yet), not_seen (every source answered: nobody is
    affected), or no_sources. `facts` merges the facts of the sources that show impact.
    """
    said = {name: entries.get(name) or {} for name in sources}
    statuses = {name: entry.get("status") for name, entry in said.items()}
    notes = [
        f"impact unknown: {name} {entry.get('error', '')}".rstrip()
        for name, entry in said.items()
        if entry.get("status") == "error"
    ]
    if not sources:
        status = "no_sources"
    elif "affected" in statuses.values():
        status = "confirmed"
    elif notes:
        status = "unknown"
    elif None in statuses.values():
        status = "pending"
    else:
        status = "not_seen"
    facts: dict[str, list[str]] = {}
    for entry in said.values():
        if entry.get("status") == "affected":
            for kind, values in (entry.get("facts") or {}).items():
                merged = facts.setdefault(kind, [])
                merged.extend(v for v in values if v not in merged)
    return {
        "status": status,
        "facts": facts,
        "notes": notes,
        "sources": {k: dict(v) for k, v in said.items()},
    }
