"""What the demo prints: one line per step, with its time, the time since the outage began, and who.

    10:53:52.772   +1.0s  recoverlink    recovery #1 opened: "Checkout failing: payments-api is down" ...

Recoverlink's steps are its audit trail (`timeline` of `GET /api/v1/recoveries/<id>`), printed with
the time recoverlink recorded, and the agent desktop's requests with the time they arrived (both
in time order within one poll); the demo's own steps and what it sees in Prometheus and
Alertmanager are printed with the time it saw them. Every line is flushed, so a pipe (the test)
reads it at once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from demo.servers import DesktopRequest

WHO_WIDTH = 15


class Narrator:
    """Prints steps; `outage_began` is what the `+N.Ns` column counts from."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self.outage_began: float | None = None  # a time.time()

    def step(self, who: str, message: str, at: float | None = None) -> None:
        """One line: local time, seconds since the outage began (when it has), who, what."""
        at = time.time() if at is None else at
        clock = datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")[:-3]
        since = f"{at - self.outage_began:+7.1f}s" if self.outage_began is not None else " " * 8
        self.say(f"{clock} {since}  {who:<{WHO_WIDTH}} {message}")

    def say(self, text: str = "") -> None:
        print(text, file=self._out, flush=True)


def describe_desktop(request: DesktopRequest) -> str:
    """The agent desktop's view of a CX action: the banner agents now see."""
    body = request.body if isinstance(request.body, dict) else {}
    shown = "shown" if body.get("active") else "taken down"
    return (
        f"{request.method} {request.path}: banner {shown}, state {body.get('state')!s}, "
        f"workaround {body.get('workaround')!r}"
    )


def timestamp(value: str) -> float:
    """An RFC 3339 time from the API as seconds since the epoch (naive means UTC)."""
    parsed = datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def describe_entry(entry: dict[str, Any], recovery: dict[str, Any]) -> str | None:
    """One audit entry in words, then (who recorded it; the state move); None for entries another
    line already says (the placement is the opening, the agent desktop line shows each action)."""
    kind, details = entry["kind"], entry.get("details") or {}
    said = _words(kind, details, recovery)
    if said is None:
        return None
    who = entry["source"] if entry["actor"] == entry["source"] else f"{entry['source']} {entry['actor']}"
    moved = entry["from_state"] != entry["to_state"] and entry["from_state"] is not None
    return f"{said}  ({who}; {entry['from_state']} -> {entry['to_state']})" if moved else f"{said}  ({who})"


def _words(kind: str, details: dict[str, Any], recovery: dict[str, Any]) -> str | None:
    verification = details.get("verification") or {}
    words: dict[str, Callable[[], str | None]] = {
        "opened": lambda: (
            f'recovery #{recovery["id"]} opened: "{recovery["title"]}" (service {recovery["service"]}, '
            f"{recovery['priority']}, correlation key {recovery['correlation_key']})"
        ),
        "transition": lambda: _transition(details, recovery),
        "impact": lambda: (
            f"impact source {details.get('source')}: {details.get('status')}, {_counts(details)}"
        ),
        "incident_linked": lambda: (
            f"RT ticket #{details.get('incident')} "
            f"{'found' if details.get('found_existing') else 'created'} and linked: {details.get('url')}"
        ),
        "verification": lambda: (
            f"verification of {details.get('source')}: {verification.get('status')}, {_counts(verification)}"
        ),
        "workaround": lambda: f"workaround for agents: {details.get('value')!r}",
        "public_message": lambda: f"public message for the status page: {details.get('value')!r}",
        "correlation": lambda: None,
        "action_sent": lambda: None,
    }
    if kind in words:
        return words[kind]()
    shown = ", ".join(f"{k}={v}" for k, v in details.items())
    return f"{kind}: {shown}" if shown else kind


def _counts(details: dict[str, Any]) -> str:
    counts = ", ".join(f"{k} {v:g}" for k, v in (details.get("counts") or {}).items())
    segments = (details.get("facts") or {}).get("segments")
    return f"{counts}; segments {', '.join(segments)}" if segments else counts


def _transition(details: dict[str, Any], recovery: dict[str, Any]) -> str | None:
    event = details.get("event") or "moved"
    evidence = details.get("evidence") or {}
    words = {
        "owner_known": f"owner known: {recovery['owner']}, from the {evidence.get('owner_source')}",
        "impact_confirmed": f"customer impact confirmed: {evidence.get('breaches') or details.get('reason')}",
        "incident_linked": None,  # the incident_linked entry says it, with the URL
        "workaround_published": f"workaround published: {details.get('reason')}",
        "fix_started": f"fix in progress: RT ticket #{evidence.get('incident')} is {evidence.get('status')}"
        f" (by {evidence.get('actor')}, through the scrip)",
        "alerts_resolved": "fix deployed: every alert of the recovery is resolved",
        "impact_verified": f"impact verified back to normal: {evidence.get('sources')}",
        "cx_updated": f"CX updated after the fix: the {evidence.get('kind')} action succeeded",
        "incident_resolved": f"recovery closed: RT ticket #{evidence.get('incident')} resolved by "
        f"{evidence.get('by')}",
    }
    if event in words:
        return words[event]
    reason = f": {details['reason']}" if details.get("reason") else ""
    return f"{event}{reason}"
