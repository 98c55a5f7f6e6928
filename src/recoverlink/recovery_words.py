"""Recoveries in people's words: state and milestone labels, audit entries in a few words, impact
sizes. Shared by the board, the status page and the postmortem draft."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from recoverlink.domain.recovery_state import RecoveryState
from recoverlink.store.recovery_queries import AuditEntry

STATE_LABELS: Mapping[str, str] = {
    RecoveryState.OPENED: "Opened",
    RecoveryState.IMPACT_CONFIRMED: "Impact confirmed",
    RecoveryState.WORKAROUND_AVAILABLE: "Workaround available",
    RecoveryState.FIX_IN_PROGRESS: "Fix in progress",
    RecoveryState.FIX_DEPLOYED: "Fix deployed, verifying",
    RecoveryState.CLOSED: "Closed",
    RecoveryState.POSTMORTEM_COMPLETE: "Postmortem complete",
    RecoveryState.CANCELED: "Canceled",
}
IMPACT_LABELS: Mapping[str, str] = {
    "confirmed": "Customers affected",
    "pending": "Checking customer impact",
    "unknown": "Impact unknown: a source failed",
    "not_seen": "No customer impact seen",
    "no_sources": "No impact source for this service",
}
EVENT_WORDS: Mapping[str, str] = {
    "alerts_resolved": "all alerts resolved",
    "owner_known": "owner set",
    "fix_started": "fix started, customer messaging approved",
    "alert_refired": "alert fired again: reopened",
    "postmortem_completed": "postmortem complete",
    "cx_updated": "CX updated",
}


PLACEMENT_WORDS: Mapping[str, str] = {
    "opened": "first alert placed",
    "reopened": "alert fired again within the reopen window",
    "symptom": "alert joined as a symptom of a dependency",
    "storm": "alert joined the storm",
}


def impact_sizes(impact: Mapping[str, Any]) -> tuple[str, ...]:
    """The counts of the sources that show customers affected, in words."""
    sizes = []
    for entry in (impact.get("sources") or {}).values():
        if entry.get("status") == "affected":
            for name, value in (entry.get("counts") or {}).items():
                sizes.append(f"{str(name).replace('_', ' ')}: {_number(value)}")
    return tuple(sizes)


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _transition(entry: AuditEntry) -> str:
    event = str(entry.details.get("event", ""))
    if event == "moved_by_operator":
        return f"moved to {STATE_LABELS.get(entry.to_state or '', entry.to_state)}"
    return EVENT_WORDS.get(event, event.replace("_", " "))


def _text_change(entry: AuditEntry) -> str:
    what = "workaround" if entry.kind == "workaround" else "customer message"
    if entry.details.get("value") is None:
        return f"{what} removed"
    return f"{what} {'written' if entry.details.get('previous') is None else 'edited'}"


def _note(entry: AuditEntry) -> str:
    text = str(entry.details.get("text", ""))
    return f"note: {text if len(text) <= 80 else text[:79] + '…'}"


def _placement(entry: AuditEntry) -> str:
    outcome = str(entry.details.get("outcome", ""))
    return PLACEMENT_WORDS.get(outcome, f"alert placed: {outcome}")


def _opened(entry: AuditEntry) -> str:
    return "recovery opened"


_DESCRIBE: Mapping[str, Callable[[AuditEntry], str]] = {
    "transition": _transition,
    "workaround": _text_change,
    "public_message": _text_change,
    "note": _note,
    "correlation": _placement,
    "opened": _opened,
}


def describe_entry(entry: AuditEntry) -> str:
    """An audit entry in a few words, e.g. `workaround published` or `note: Called the bank`; a kind
    without words of its own reads as its name (`incident_linked`: `incident linked`)."""
    describe = _DESCRIBE.get(entry.kind)
    return describe(entry) if describe is not None else entry.kind.replace("_", " ")
