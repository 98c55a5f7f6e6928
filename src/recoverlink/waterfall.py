"""Where the time of a recovery went: its milestones in time order, the wait before each, who or what
moved each step (from the audit trail), and the slowest handoff.

Shown on the board's recovery page and in the postmortem draft; pure, over what the store read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from recoverlink.domain.recovery_state import Milestone
from recoverlink.store.recovery_queries import AuditEntry

MILESTONE_LABELS: Mapping[Milestone, str] = {
    Milestone.OPENED: "Opened",
    Milestone.OWNER_KNOWN: "Owner known",
    Milestone.IMPACT_IDENTIFIED: "Impact identified",
    Milestone.INCIDENT_LINKED: "Incident linked",
    Milestone.WORKAROUND_PUBLISHED: "Workaround published",
    Milestone.FIX_DEPLOYED: "Fix deployed",
    Milestone.CX_UPDATED: "CX updated",
    Milestone.IMPACT_VERIFIED: "Verified",
    Milestone.CLOSED: "Closed",
    Milestone.POSTMORTEM_COMPLETE: "Postmortem complete",
}
# Listed even when not reached yet; the postmortem milestone only once it is.
EXPECTED = tuple(m for m in Milestone if m is not Milestone.POSTMORTEM_COMPLETE)
_NAMES = frozenset(m.value for m in Milestone)


@dataclass(frozen=True)
class Step:
    """One milestone: reached at `at` (None: not yet), after waiting `wait_seconds` since `after`."""

    milestone: Milestone
    at: datetime | None = None
    after: Milestone | None = None  # the milestone reached just before it
    wait_seconds: float | None = None
    since_opened_seconds: float | None = None
    moved_by: str | None = None  # "operator-on-call (operator)", "worker", ...

    @property
    def label(self) -> str:
        return MILESTONE_LABELS[self.milestone]

    @property
    def reached(self) -> bool:
        return self.at is not None


@dataclass(frozen=True)
class Waterfall:
    steps: tuple[Step, ...]  # reached ones in time order, then the expected ones not reached
    total_seconds: float  # opened -> the last milestone reached
    slowest: Step | None  # the reached step with the longest wait (the first of equals)

    @property
    def reached(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.reached)

    def slowest_text(self) -> str:
        """The slowest handoff in words, e.g. `Fix deployed → CX updated: 2h 5m, moved by worker`."""
        step = self.slowest
        if step is None or step.after is None or step.wait_seconds is None:
            return "no handoff yet: only the opening is recorded"
        who = f", moved by {step.moved_by}" if step.moved_by else ""
        return f"{MILESTONE_LABELS[step.after]} → {step.label}: {format_duration(step.wait_seconds)}{who}"


def build_waterfall(milestones: Mapping[str, datetime], timeline: Sequence[AuditEntry]) -> Waterfall:
    """The waterfall of a recovery's current cycle (a reopen cleared the earlier cycle's later steps)."""
    known = {Milestone(name): at for name, at in milestones.items() if name in _NAMES}
    order = list(Milestone)
    reached = sorted(known.items(), key=lambda item: (item[1], order.index(item[0])))
    opened_at = known.get(Milestone.OPENED, reached[0][1] if reached else None)
    steps: list[Step] = []
    previous: tuple[Milestone, datetime] | None = None
    for milestone, at in reached:
        wait = (at - previous[1]).total_seconds() if previous else None
        since = (at - opened_at).total_seconds() if opened_at else None
        after = previous[0] if previous else None
        steps.append(Step(milestone, at, after, wait, since, moved_by(milestone, timeline)))
        previous = (milestone, at)
    steps += [Step(m) for m in EXPECTED if m not in known]
    waits = [s for s in steps if s.wait_seconds is not None]
    slowest = max(waits, key=lambda s: s.wait_seconds or 0.0) if waits else None
    total = (reached[-1][1] - opened_at).total_seconds() if reached and opened_at else 0.0
    return Waterfall(tuple(steps), total, slowest)


def moved_by(milestone: Milestone, timeline: Sequence[AuditEntry]) -> str | None:
    """Who stamped the milestone: the opening entry, or the last transition that stamped it (a reopen
    clears the cycle's milestones, so the latest stamp is the one in force)."""
    for entry in reversed(timeline):
        opening = milestone is Milestone.OPENED and entry.kind == "opened"
        stamped = entry.kind == "transition" and milestone.value in (entry.details.get("stamped") or ())
        if opening or stamped:
            return entry.actor if entry.actor == entry.source else f"{entry.actor} ({entry.source})"
    return None


def format_duration(seconds: float) -> str:
    """`0s`, `45s`, `7m 5s`, `1h 2m`, `2d 3h`: the two largest units are enough to compare waits."""
    rest = int(max(seconds, 0))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count or (unit == "s" and not parts):
            parts.append(f"{count}{unit}")
    return " ".join(parts[:2])
