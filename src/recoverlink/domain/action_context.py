"""What an action's templates render with: the recovery as people read it, at the time of sending.

The worker builds a `RecoveryView` from the stored recovery when it sends (so a retry sends the
current facts); `recoverlink check` renders every action template against `SAMPLE_VIEW`, which has
every key a real view has, so a misspelt name fails the check instead of a 3 a.m. send.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from recoverlink.domain.recovery_state import Milestone

INCIDENT_KEYS = ("system", "number", "url", "status")


@dataclass(frozen=True)
class RecoveryView:
    """One recovery's facts for an action; `impact` is `impact_summary()` of its sources."""

    id: int
    title: str
    state: str
    priority: str
    service: str | None
    team: str | None  # the team it was opened for
    owner: str | None  # the team that owns it now
    opened_at: str
    state_changed_at: str
    cycle: int  # how often it was reopened
    milestones: Mapping[str, str]  # name -> ISO time
    journeys: Sequence[str] = ()
    segments: Sequence[str] = ()
    impact: Mapping[str, Any] = field(default_factory=dict)
    workaround: str | None = None
    public_message: str | None = None
    incident: Mapping[str, Any] | None = None  # system, number, url, status once linked
    labels: Mapping[str, str] = field(default_factory=dict)  # of its first alert
    annotations: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, str] = field(default_factory=dict)  # what the rules set


def action_context(
    view: RecoveryView, *, trigger: str, rule: str, name: str, kind: str, now: datetime
) -> dict[str, Any]:
    """The template context: `recovery`, `trigger`, `action`, `labels`, `annotations`, `fields`, `now`.

    `recovery.incident` and `recovery.milestones` always have all their keys (None until linked or
    stamped), so a template can write `recovery.incident.number` without guarding it."""
    impact = view.impact
    incident = {key: (view.incident or {}).get(key) for key in INCIDENT_KEYS}
    recovery = {
        "id": view.id,
        "title": view.title,
        "state": view.state,
        "priority": view.priority,
        "service": view.service,
        "team": view.team,
        "owner": view.owner or view.team,
        "opened_at": view.opened_at,
        "state_changed_at": view.state_changed_at,
        "cycle": view.cycle,
        "milestones": {m.value: view.milestones.get(m.value) for m in Milestone},
        "journeys": list(view.journeys),
        "segments": list(view.segments),
        "impact": {
            "status": impact.get("status", "no_sources"),
            "facts": dict(impact.get("facts") or {}),
            "notes": list(impact.get("notes") or []),
        },
        "workaround": view.workaround,
        "public_message": view.public_message,
        "incident": incident,
    }
    return {
        "recovery": recovery,
        "trigger": trigger,
        "action": {"rule": rule, "name": name, "kind": kind},
        "labels": dict(view.labels),
        "annotations": dict(view.annotations),
        "fields": dict(view.fields),
        "now": now.isoformat(),
    }


_SAMPLE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
SAMPLE_VIEW = RecoveryView(
    id=1,
    title="Sample recovery",
    state="fix_deployed",
    priority="P1",
    service="sample-service",
    team="sample-team",
    owner="sample-team",
    opened_at=_SAMPLE_TIME.isoformat(),
    state_changed_at=_SAMPLE_TIME.isoformat(),
    cycle=0,
    milestones={"opened": _SAMPLE_TIME.isoformat(), "fix_deployed": _SAMPLE_TIME.isoformat()},
    journeys=("checkout",),
    segments=("retail",),
    impact={"status": "confirmed", "facts": {"segments": ["retail"]}, "notes": []},
    workaround="Sample workaround",
    public_message="Sample public message",
    incident={
        "system": "servicenow",
        "number": "INC0000001",
        "url": "https://itsm.invalid/1",
        "status": "new",
    },
)


def sample_context(*, rule: str, name: str, kind: str, fields: Sequence[str] = ()) -> dict[str, Any]:
    """The context `recoverlink check` renders an action with; `fields` are the keys its rule sets."""
    view = SAMPLE_VIEW
    if fields:
        view = RecoveryView(**{**vars(SAMPLE_VIEW), "fields": {key: f"sample {key}" for key in fields}})
    return action_context(view, trigger="fix_deployed", rule=rule, name=name, kind=kind, now=_SAMPLE_TIME)
