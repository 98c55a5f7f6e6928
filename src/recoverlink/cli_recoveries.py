"""`recoverlink recoveries list|show`: recoveries for people on a terminal."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from recoverlink.cli_common import (
    check_schema,
    config_option,
    reports_errors,
    settings_for,
    store_for,
    table,
    when,
)
from recoverlink.domain.bounds import MAX_BIGINT
from recoverlink.domain.errors import NotFound
from recoverlink.domain.recovery_state import RecoveryState
from recoverlink.store.recovery_queries import (
    AuditEntry,
    RecoveryDetail,
    RecoveryFilter,
    RecoverySummary,
    detail_record,
    list_recoveries,
    load_recovery,
    summary_record,
)
from recoverlink.waterfall import format_duration


@click.group()
def recoveries() -> None:
    """Recoveries: list them, or show one with its milestones, alerts and timeline."""


@recoveries.command("list")
@config_option
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in RecoveryState]),
    help="Only recoveries in this state (repeatable).",
)
@click.option("--team", help="Only recoveries opened for this team.")
@click.option("--owner", help="Only recoveries this team owns now.")
@click.option("--service", help="Only recoveries of this catalog service.")
@click.option(
    "--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="At most this many."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON items, as GET /api/v1/recoveries answers.")
@reports_errors
def recoveries_list(
    *,
    config_file: str | None,
    states: tuple[str, ...],
    team: str | None,
    owner: str | None,
    service: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The newest recoveries first, as a table."""
    store = store_for(settings_for(config_file))
    check_schema(store, migrate=False)
    filters = RecoveryFilter(states=states, team=team, owner=owner, service=service)
    with store.read() as conn:
        page = list_recoveries(conn, filters, limit=limit)
    if as_json:
        click.echo(json.dumps({"items": [summary_record(item) for item in page.items]}, indent=2))
        return
    if not page.items:
        click.echo("no recoveries match")
        return
    click.echo(_recovery_table(page.items))
    if page.next_before_id is not None:
        click.echo(f"(more than {limit}: raise --limit or narrow the filters)")


@recoveries.command("show")
@config_option
@click.argument("recovery_id", type=click.IntRange(1, MAX_BIGINT))
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as GET /api/v1/recoveries/ID answers.")
@reports_errors
def recoveries_show(config_file: str | None, recovery_id: int, as_json: bool) -> None:
    """One recovery: summary, milestones with the wait between them, alerts and audit timeline."""
    settings = settings_for(config_file)
    store = store_for(settings)
    check_schema(store, migrate=False)
    stale_after = settings.config.enrichment.stale_after
    with store.read() as conn:
        detail = load_recovery(conn, recovery_id, now=datetime.now(UTC), default_stale_after=stale_after)
    if detail is None:
        raise NotFound(f"recovery {recovery_id} not found")
    if as_json:
        click.echo(json.dumps(detail_record(detail), indent=2))
        return
    click.echo("\n".join(_recovery_text(detail)))


def _recovery_table(items: list[RecoverySummary]) -> str:
    rows = [["ID", "STATE", "PRIO", "TEAM", "SERVICE", "OPENED (UTC)", "FIRING", "TITLE"]]
    for r in items:
        title = r.title if len(r.title) <= 60 else r.title[:59] + "…"
        total = r.alerts_firing + r.alerts_resolved
        rows.append(
            [
                str(r.id), r.state, r.priority, r.team or "-", r.service or "-",
                f"{r.opened_at:%Y-%m-%d %H:%M}", f"{r.alerts_firing}/{total}", title,
            ]
        )  # fmt: skip
    return table(rows)


def _recovery_text(detail: RecoveryDetail) -> list[str]:
    r = detail.summary
    owner = f"{r.owner or 'not known yet'}, {r.escalation_bounces} escalation bounce(s)"
    facts = [
        ("state", f"{r.state} since {when(r.state_changed_at)}"),
        ("priority", r.priority),
        ("service", r.service or "-"),
        ("team", f"{r.team or '-'} (owner: {owner})"),
        ("correlation", r.correlation_key),
        ("reopened", f"{r.reopen_count} time(s)"),
        ("linked to", str(r.linked_to) if r.linked_to else "-"),
        ("storm", f"yes, {r.storm_episodes} episode(s) joined" if r.storm else "no"),
        ("symptoms", str(r.symptoms)),
        ("workaround", r.workaround or "-"),
        ("public message", r.public_message or "-"),
        ("incident", "-"),
    ]
    lines = [f"recovery {r.id}: {r.title}", *(f"  {name:<15} {value}" for name, value in facts), ""]
    lines += _milestone_lines(r)
    lines += ["", f"alerts: {r.alerts_firing} firing, {r.alerts_resolved} resolved"]
    for a in detail.alerts:
        stale = "  STALE" if a.stale else ""
        name = a.labels.get("alertname", "-")
        lines.append(
            f"  {a.status:<8}  {a.fingerprint}  {a.role:<7}  {name}  since {when(a.starts_at)}{stale}"
        )
    lines += ["", "timeline"]
    lines += [f"  {when(e.at)}  {e.source}/{e.actor}  {_audit_text(e)}" for e in detail.timeline]
    return lines


def _milestone_lines(r: RecoverySummary) -> list[str]:
    """Each milestone with the wait since the previous one and since the recovery opened."""
    rows = [["milestones", "at (UTC)", "after previous", "after opened"]]
    previous = r.opened_at
    for name, at in sorted(r.milestones.items(), key=lambda item: item[1]):
        since_opened = "" if name == "opened" else format_duration((at - r.opened_at).total_seconds())
        after = "" if name == "opened" else format_duration((at - previous).total_seconds())
        rows.append([f"  {name}", when(at), after, since_opened])
        previous = at
    return table(rows).splitlines()


def _audit_text(entry: AuditEntry) -> str:
    moved = f"{entry.from_state or '-'} -> {entry.to_state}" if entry.to_state else ""
    details = entry.details
    if entry.kind == "transition":
        note = str(details.get("event", ""))
        note += f": {details['reason']}" if details.get("reason") else ""
    elif entry.kind == "correlation":
        note = f"{details.get('outcome', '')} {details.get('fingerprint', '')}"
    elif entry.kind in ("workaround", "public_message"):
        note = repr(details.get("value"))
    else:
        note = str(details.get("reason", ""))
    return "  ".join(part for part in (entry.kind, moved, note.strip()) if part)
