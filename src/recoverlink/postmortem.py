"""A postmortem draft in Markdown, from the recovery record alone: summary, impact, owners, incident,
timeline, actions and their outcomes, where the time went, and open questions left blank for people.

Served by `GET /api/v1/recoveries/<id>/postmortem.md` and the board. Text from alerts and people is
escaped so that it reads as text wherever the draft is pasted (a `<script>` stays visible, a `|`
cannot break a table).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from recoverlink.recovery_words import IMPACT_LABELS, STATE_LABELS, describe_entry, impact_sizes
from recoverlink.store.board_queries import RecoveryContext
from recoverlink.store.recovery_queries import AuditEntry, RecoveryDetail, RecoverySummary
from recoverlink.waterfall import MILESTONE_LABELS, Waterfall, build_waterfall, format_duration

# The audit kinds that tell the story; every other entry is something done, with an outcome.
TIMELINE_KINDS = frozenset({"opened", "transition", "correlation", "alert_stale", "note"})
_ESCAPED = "\\`*_[]<>|"
QUESTIONS = (
    "What was the root cause?",
    "What would have detected it sooner, or prevented it?",
    "Could customers and agents have been told sooner, or better?",
    "Which follow-up actions, with owners and due dates?",
)


def md(text: object) -> str:
    """Inline Markdown text: punctuation that would format or break a table is escaped, lines joined."""
    escaped = "".join(f"\\{char}" if char in _ESCAPED else char for char in str(text))
    return " ".join(escaped.split())


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "not yet"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return lines


def draft_postmortem(detail: RecoveryDetail, context: RecoveryContext, now: datetime) -> str:
    """The whole draft; every section is there even when the record has nothing for it yet."""
    r = detail.summary
    waterfall = build_waterfall(r.milestones, detail.timeline)
    sections = [
        [f"# Postmortem draft: {md(r.title)}"],
        [
            f"Recovery {r.id}, drafted by recoverlink at {when(now)} from the recovery record. "
            "Correct what the record got wrong; the open questions at the end are for people.",
        ],
        _summary(r, waterfall, now),
        _impact(r, context),
        _owners(r, waterfall),
        _incident(r),
        _timeline(detail.timeline),
        _actions(detail.timeline),
        _latency(waterfall),
        _questions(waterfall),
    ]
    return "\n".join(line for section in sections for line in [*section, ""]).rstrip() + "\n"


def _summary(r: RecoverySummary, waterfall: Waterfall, now: datetime) -> list[str]:
    closed_at = r.milestones.get("closed")
    resolution = (
        format_duration((closed_at - r.opened_at).total_seconds())
        if closed_at
        else f"still open after {format_duration((now - r.opened_at).total_seconds())}"
    )
    rows = [
        ("Service", md(r.service or "not known")),
        ("Priority", r.priority),
        ("State", f"{STATE_LABELS.get(r.state, r.state)} since {when(r.state_changed_at)}"),
        ("Opened", when(r.opened_at)),
        ("Closed", when(closed_at)),
        ("Service resolution time", resolution),
        ("Reopened", f"{r.reopen_count} time(s)"),
        ("Alerts", f"{r.alerts_firing} firing, {r.alerts_resolved} resolved"),
    ]
    return ["## Summary", "", *_table(("Fact", "Value"), rows)]


def _impact(r: RecoverySummary, context: RecoveryContext) -> list[str]:
    status = str(r.impact.get("status", "no_sources"))
    sizes = impact_sizes(r.impact)
    lines = [
        "## Impact",
        "",
        f"- Status: {IMPACT_LABELS.get(status, status)}",
        f"- Journeys: {md(', '.join(context.journeys)) or 'none recorded'}",
        f"- Segments: {md(', '.join(context.segments)) or 'none recorded'}",
        f"- Measured: {md('; '.join(sizes)) or 'nothing measured'}",
        f"- Workaround given to agents: {md(r.workaround or 'none')}",
        f"- Public message: {md(r.public_message or 'none')}",
    ]
    lines += [f"- Note: {md(note)}" for note in r.impact.get("notes") or ()]
    return lines


def _owners(r: RecoverySummary, waterfall: Waterfall) -> list[str]:
    owner_step = next((s for s in waterfall.reached if s.milestone.value == "owner_known"), None)
    known = (
        f"{format_duration(owner_step.since_opened_seconds or 0)} after opening, by {md(owner_step.moved_by)}"
        if owner_step is not None
        else "not yet"
    )
    return [
        "## Owners",
        "",
        f"- Opened for team: {md(r.team or 'not known')}",
        f"- Owner now: {md(r.owner or 'not known')}",
        f"- Owner known: {known}",
        f"- Escalation bounces: {r.escalation_bounces}",
    ]


def _incident(r: RecoverySummary) -> list[str]:
    incident = r.incident
    if incident is None:
        text = "No ITSM incident: none is configured for this service."
    elif incident.get("status") == "pending":
        text = f"The {md(incident['system'])} incident is not created yet."
        if incident.get("last_error"):
            text += f" Last error: {md(incident['last_error'])}"
    else:
        number = md(incident.get("number") or incident.get("id"))
        link = f" ({md(incident['url'])})" if incident.get("url") else ""
        text = f"{md(incident['system'])} incident {number}{link}, status {md(incident.get('status'))}."
    return ["## Incident", "", text]


def _timeline(timeline: Sequence[AuditEntry]) -> list[str]:
    rows = [
        (when(e.at), md(e.actor), md(_what(e)), _moved(e))
        for e in timeline
        if e.kind in TIMELINE_KINDS and not (e.kind == "correlation" and e.details.get("outcome") == "opened")
    ]
    return ["## Timeline", "", *_table(("Time", "Who", "What", "State"), rows)]


def _what(entry: AuditEntry) -> str:
    reason = entry.details.get("reason")
    return f"{describe_entry(entry)}: {reason}" if reason else describe_entry(entry)


def _moved(entry: AuditEntry) -> str:
    if entry.to_state is None or entry.from_state == entry.to_state:
        return ""
    before = STATE_LABELS.get(entry.from_state or "", entry.from_state or "")
    after = STATE_LABELS.get(entry.to_state, entry.to_state)
    return f"{before} → {after}" if before else after


def _actions(timeline: Sequence[AuditEntry]) -> list[str]:
    rows = [
        (when(e.at), md(e.actor), md(describe_entry(e)), md(_outcome(e)))
        for e in timeline
        if e.kind not in TIMELINE_KINDS
    ]
    if not rows:
        return ["## Actions and their outcomes", "", "No actions recorded."]
    return ["## Actions and their outcomes", "", *_table(("Time", "Who", "Action", "Outcome"), rows)]


def _outcome(entry: AuditEntry) -> str:
    """What came of it: the text set, or the entry's outcome, status or error."""
    details = entry.details
    if entry.kind in ("workaround", "public_message"):
        return "removed" if details.get("value") is None else f"set to: {details['value']}"
    for key in ("outcome", "status", "verification", "error"):
        if details.get(key):
            return str(details[key])
    return "done"


def _latency(waterfall: Waterfall) -> list[str]:
    rows = [
        (
            step.label,
            when(step.at) if step.reached else "not reached",
            format_duration(step.wait_seconds) if step.wait_seconds is not None else "",
            format_duration(step.since_opened_seconds) if step.since_opened_seconds else "",
            md(step.moved_by or ""),
        )
        for step in waterfall.steps
    ]
    return [
        "## Where the time went",
        "",
        *_table(("Step", "Reached", "Waited", "Since opened", "Moved by"), rows),
        "",
        f"Slowest handoff: {md(waterfall.slowest_text())}",
    ]


def _questions(waterfall: Waterfall) -> list[str]:
    questions = list(QUESTIONS)
    step = waterfall.slowest
    if step is not None and step.after is not None and step.wait_seconds is not None:
        handoff = f"{MILESTONE_LABELS[step.after]} → {step.label}"
        questions.insert(
            1, f"Why did the slowest handoff ({handoff}) take {format_duration(step.wait_seconds)}?"
        )
    lines = ["## Open questions", ""]
    for question in questions:
        lines += [f"### {md(question)}", ""]
    return lines
