"""The operators' forms on a recovery's board page: publish or edit the workaround, confirm impact,
approve customer messaging, confirm CX was updated, mark impact verified, add a note.

Each is a step of the state machine or a field change, made through `recovery_operations` as the JSON
API makes it, with an audit entry whose actor is the signed-in token's name. Every POST carries the
session's CSRF token (checked before the view runs) and answers with a redirect back to the page
(POST-redirect-GET), saying what happened in a flash message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flask import Blueprint, flash, g, redirect, request, url_for
from werkzeug.wrappers import Response

from recoverlink.domain.recovery_state import Milestone, RecoveryEventKind, RecoveryState
from recoverlink.recovery_operations import (
    NOTE_MAX_LENGTH,
    checked_text,
    noting,
    stepping,
)
from recoverlink.store.recovery_queries import RecoverySummary
from recoverlink.store.tokens import TokenInfo
from recoverlink.web.board_session import check_csrf, operators
from recoverlink.web.pages import html_blueprint
from recoverlink.web.runtime import runtime

bp = html_blueprint(Blueprint("board_actions", __name__, url_prefix="/board/recoveries"))
bp.before_request(check_csrf)

TEXT_MAX_LENGTH = 10000
_OVER = (RecoveryState.CANCELED, RecoveryState.POSTMORTEM_COMPLETE)


@dataclass(frozen=True)
class Step:
    """One button: the event it sends, the text field it sets (if any), what it says afterwards."""

    kind: RecoveryEventKind
    done: str
    unchanged: str
    text: str | None = None  # workaround | public_message


STEPS: Mapping[str, Step] = {
    "workaround": Step(
        RecoveryEventKind.WORKAROUND_PUBLISHED, "Workaround published.", "Workaround saved.", "workaround"
    ),
    "impact": Step(RecoveryEventKind.IMPACT_CONFIRMED, "Impact confirmed.", "Impact was already confirmed."),
    "messaging": Step(
        RecoveryEventKind.FIX_STARTED,
        "Customer messaging approved.",
        "Customer message saved.",
        "public_message",
    ),
    "cx-updated": Step(
        RecoveryEventKind.CX_UPDATED,
        "CX update confirmed.",
        "Nothing changed: a CX update counts once the fix is deployed, and only the first one.",
    ),
    "verified": Step(
        RecoveryEventKind.IMPACT_VERIFIED,
        "Impact marked verified.",
        "Nothing changed: verification counts once the fix is deployed, and only the first one.",
    ),
}


def available_actions(summary: RecoverySummary) -> frozenset[str]:
    """The forms a recovery's page offers now (the server refuses the rest with 409 all the same)."""
    if summary.state in _OVER:
        return frozenset({"note"})
    offered = {"workaround", "messaging", "note"}
    if Milestone.IMPACT_IDENTIFIED.value not in summary.milestones:
        offered.add("impact")
    if Milestone.FIX_DEPLOYED.value in summary.milestones:
        after_fix = {"cx-updated": Milestone.CX_UPDATED, "verified": Milestone.IMPACT_VERIFIED}
        offered.update(name for name, m in after_fix.items() if m.value not in summary.milestones)
    return frozenset(offered)


def _back(recovery_id: int) -> Response:
    return redirect(url_for("board.recovery", recovery_id=recovery_id), 303)


def _reason() -> str | None:
    raw = request.form.get("reason", "")
    return checked_text(raw, field="reason", max_length=NOTE_MAX_LENGTH) if raw.strip() else None


@bp.post("/<int:recovery_id>/<any(workaround, impact, messaging, 'cx-updated', verified):action>")
@operators
def step(recovery_id: int, action: str) -> Response:
    """Apply one operator step, with the text it carries; then back to the recovery's page."""
    spec = STEPS[action]
    texts = {}
    if spec.text is not None:
        texts[spec.text] = checked_text(
            request.form.get(spec.text, ""), field=spec.text, max_length=TEXT_MAX_LENGTH
        )
    operator: TokenInfo = g.operator
    change = stepping(runtime().jobs, spec.kind, _reason(), texts)
    applied = runtime().operations.apply(
        recovery_id, operator.name, runtime().clock(), change, lambda _: None
    )
    flash(spec.done if applied.changed else spec.unchanged, "info")
    return _back(recovery_id)


@bp.post("/<int:recovery_id>/note")
@operators
def note(recovery_id: int) -> Response:
    """Add a note to the recovery's audit trail."""
    text = checked_text(request.form.get("text", ""), field="text", max_length=NOTE_MAX_LENGTH)
    operator: TokenInfo = g.operator
    runtime().operations.apply(recovery_id, operator.name, runtime().clock(), noting(text), lambda _: None)
    flash("Note added.", "info")
    return _back(recovery_id)
