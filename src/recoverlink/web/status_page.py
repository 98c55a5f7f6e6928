"""The customer status page: `GET /status` (HTML) and `GET /status.json`.

Customer-safe by construction: a page is built from the journeys the catalog names, a phase derived
from each open recovery's state, and the public message operators approved, and from nothing else.
Titles, services, teams, owners, incidents and alert labels never reach it. A recovery whose
journeys the catalog does not know shows under "Other services", without a name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, make_response, render_template
from werkzeug.wrappers import Response

from recoverlink.config.board import BoardConfig
from recoverlink.domain.catalog import Catalog
from recoverlink.domain.recovery_state import RecoveryState
from recoverlink.store.status_queries import StatusRecovery, status_recoveries
from recoverlink.web.board_session import readers
from recoverlink.web.pages import html_blueprint, secure_headers
from recoverlink.web.runtime import runtime

bp = html_blueprint(Blueprint("status", __name__))
json_bp = Blueprint("status_json", __name__)
json_bp.after_request(secure_headers)

# What customers read for each state, as status pages phrase it; the earliest phase wins.
PHASES = {
    RecoveryState.OPENED: "investigating",
    RecoveryState.IMPACT_CONFIRMED: "investigating",
    RecoveryState.WORKAROUND_AVAILABLE: "identified",
    RecoveryState.FIX_IN_PROGRESS: "identified",
    RecoveryState.FIX_DEPLOYED: "monitoring",
}
PHASE_ORDER = ("investigating", "identified", "monitoring")
DEFAULT_MESSAGES = {
    "investigating": "We are investigating reduced service.",
    "identified": "We have found the cause and are working on a fix.",
    "monitoring": "A fix is in place and we are watching the results.",
}
OTHER = "Other services"


@dataclass(frozen=True)
class JourneyStatus:
    name: str
    status: str  # operational | degraded
    phase: str | None = None  # investigating | identified | monitoring, while degraded
    since: datetime | None = None  # when the earliest of its open recoveries opened
    messages: tuple[str, ...] = ()


@dataclass(frozen=True)
class PublicStatus:
    updated_at: datetime
    journeys: tuple[JourneyStatus, ...]
    other: JourneyStatus | None  # recoveries no known journey names

    @property
    def status(self) -> str:
        entries = [*self.journeys, *([self.other] if self.other else [])]
        return "degraded" if any(j.status == "degraded" for j in entries) else "operational"


def public_status(items: Sequence[StatusRecovery], catalog: Catalog, now: datetime) -> PublicStatus:
    """Every catalog journey with its status; open recoveries outside them under `other`."""
    known = sorted({j for entry in catalog.entries.values() for j in entry.journeys})
    by_journey: dict[str, list[StatusRecovery]] = {name: [] for name in known}
    others: list[StatusRecovery] = []
    for item in items:
        if item.state not in PHASES:
            continue
        journeys = [j for j in item.journeys if j in by_journey]
        for journey in journeys:
            by_journey[journey].append(item)
        if not journeys:
            others.append(item)
    entries = tuple(_journey(name, found) for name, found in by_journey.items())
    return PublicStatus(now, entries, _journey(OTHER, others) if others else None)


def _journey(name: str, items: Iterable[StatusRecovery]) -> JourneyStatus:
    found = sorted(items, key=lambda i: PHASE_ORDER.index(PHASES[RecoveryState(i.state)]))
    if not found:
        return JourneyStatus(name, "operational")
    phase = PHASES[RecoveryState(found[0].state)]
    written = [i.public_message for i in found if i.public_message]
    messages = tuple(dict.fromkeys(written)) or (DEFAULT_MESSAGES[phase],)
    since = min(i.opened_at for i in found)
    return JourneyStatus(name, "degraded", phase, since, messages)


def status_record(status: PublicStatus) -> dict[str, Any]:
    """The JSON form; the same fields the page shows, nothing more."""

    def entry(j: JourneyStatus) -> dict[str, Any]:
        since = j.since.isoformat() if j.since else None
        return {
            "name": j.name,
            "status": j.status,
            "phase": j.phase,
            "since": since,
            "messages": list(j.messages),
        }

    return {
        "status": status.status,
        "updated_at": status.updated_at.isoformat(),
        "journeys": [entry(j) for j in status.journeys],
        "other_services": entry(status.other) if status.other else None,
    }


def _status_public(config: BoardConfig) -> bool:
    return config.status_public


def _current() -> PublicStatus:
    rt = runtime()
    with rt.store.read() as conn:
        found = status_recoveries(conn)
    return public_status(found, rt.enrichment.current.enricher.catalog, rt.clock())


@bp.get("/status")
@readers(_status_public)
def status_page() -> Response:
    """The page; it reloads itself (a meta refresh: no script needed)."""
    refresh = runtime().settings.config.board.refresh_seconds
    response = make_response(render_template("status.html", status=_current(), refresh_seconds=refresh))
    response.headers["Cache-Control"] = "no-cache"
    return response


@json_bp.get("/status.json")
@readers(_status_public, fragment=True)
def status_json() -> Response:
    text = json.dumps(status_record(_current()), ensure_ascii=False)
    # Other sites embed this: no text in it may ever open a tag, as Go's encoding/json also ensures.
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    response = make_response(text)
    response.mimetype = "application/json"
    response.headers["Cache-Control"] = "no-cache"
    return response
