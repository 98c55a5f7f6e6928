"""Which ITSM jobs a recovery's opening and transitions cause, and what its incident says.

- opening, when the recovery has an ITSM: `itsm.open_incident` (priority 0: creates go first);
- a transition made by anyone but the ITSM itself: a work note saying what happened (an ITSM's own
  change is never echoed back to it);
- impact verified: `itsm.resolve_incident` by the resolution policy;
- a reopen: `itsm.reopen_incident`.
"""

from __future__ import annotations

from typing import Any

from recoverlink.domain.alerts import Alert
from recoverlink.domain.enrichment import Enrichment
from recoverlink.domain.itsm import IncidentDraft, correlation_id
from recoverlink.domain.recovery_state import Milestone, RecoveryEventKind, Transition, TransitionSource
from recoverlink.store.outbox import NewJob

ITSM_OPEN = "itsm.open_incident"
ITSM_NOTE = "itsm.update_incident"
ITSM_RESOLVE = "itsm.resolve_incident"
ITSM_REOPEN = "itsm.reopen_incident"
ITSM_KINDS = (ITSM_OPEN, ITSM_NOTE, ITSM_RESOLVE, ITSM_REOPEN)
OPEN_PRIORITY = 0


def incident_draft(recovery_id: int, title: str, alert: Alert, enrichment: Enrichment) -> IncidentDraft:
    """The new incident: the recovery's title, and what the enrichment knows, for the people on call."""
    lines = [title, ""]
    if enrichment.service:
        lines.append(f"Service: {enrichment.service}" + (f" ({enrichment.tier})" if enrichment.tier else ""))
    if enrichment.owner:
        lines.append(f"Owner team: {enrichment.owner}")
    for name, values in (("Customer journeys", enrichment.journeys), ("Segments", enrichment.segments)):
        if values:
            lines.append(f"{name}: {', '.join(values)}")
    for name in ("summary", "description"):
        if text := alert.annotations.get(name):
            lines.append(f"{name.capitalize()}: {text}")
    labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
    lines.append(f"Alert: {labels}")
    for name, url in (("Runbook", enrichment.runbook_url), ("Dashboard", enrichment.dashboard_url)):
        if url:
            lines.append(f"{name}: {url}")
    lines += ["", f"Opened by recoverlink for recovery {recovery_id} ({correlation_id(recovery_id)})."]
    return IncidentDraft(
        correlation_id=correlation_id(recovery_id),
        title=title[:160],
        description="\n".join(lines),
        priority=enrichment.priority,
        impact=enrichment.impact,
        urgency=enrichment.urgency,
        routing=enrichment.itsm,
        service=enrichment.service,
        team=enrichment.owner,
    )


def open_job(recovery_id: int, system: str, draft_record: dict[str, Any], due_at: Any) -> NewJob:
    payload = {"recovery_id": recovery_id, "system": system, "draft": draft_record}
    return NewJob(ITSM_OPEN, f"{ITSM_OPEN}/{recovery_id}", payload, due_at, recovery_id, OPEN_PRIORITY)


def jobs_after_transition(row: Any, transition: Transition) -> list[NewJob]:
    """The ITSM jobs of one committed transition of a recovery that has an ITSM."""
    system = row.itsm_system
    if not system:
        return []
    cycle = transition.status.reopen_count
    base = {"recovery_id": row.id, "system": system}
    stamp = transition.at.isoformat()
    jobs = []
    if transition.source is not TransitionSource.ITSM and (transition.moved or transition.stamped):
        note = transition_note(transition)
        key = f"{ITSM_NOTE}/{row.id}/{cycle}/{transition.kind}/{stamp}"
        jobs.append(NewJob(ITSM_NOTE, key, {**base, "note": note}, transition.at, row.id))
    if Milestone.IMPACT_VERIFIED in transition.stamped:
        note = "recoverlink: customer impact verified back to normal; the recovery is done."
        payload = {**base, "policy": row.resolution_policy, "note": note}
        jobs.append(NewJob(ITSM_RESOLVE, f"{ITSM_RESOLVE}/{row.id}/{cycle}", payload, transition.at, row.id))
    if transition.kind is RecoveryEventKind.ALERT_REFIRED:
        note = "recoverlink: the alert fired again within the reopen window; the recovery is reopened."
        key = f"{ITSM_REOPEN}/{row.id}/{cycle}"
        jobs.append(NewJob(ITSM_REOPEN, key, {**base, "note": note}, transition.at, row.id))
    return jobs


def transition_note(transition: Transition) -> str:
    """One line for the work notes: what moved, who said so, and why."""
    moved = (
        f"{transition.from_state} -> {transition.to_state}" if transition.moved else str(transition.to_state)
    )
    stamped = f"; milestones: {', '.join(transition.stamped)}" if transition.stamped else ""
    why = transition.reason or "; ".join(f"{k}: {v}" for k, v in transition.evidence.items())
    return f"recoverlink: {transition.kind} ({transition.source}): {moved}{stamped}" + (
        f". {why}" if why else ""
    )
