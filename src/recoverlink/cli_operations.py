"""`recoverlink itsm check` and `recoverlink jobs list|show|retry|discard`: operating the outbox and ITSMs."""

from __future__ import annotations

import getpass
import json
import os
import sys
from datetime import UTC, datetime

import click

from recoverlink.cli_common import config_option, ready_store, reports_errors, settings_for, table, when
from recoverlink.domain.bounds import MAX_BIGINT
from recoverlink.domain.errors import NotFound
from recoverlink.domain.outbox import JobState
from recoverlink.job_operations import discard_job, job_record, retry_job
from recoverlink.store import outbox
from recoverlink.store.outbox import JobFilter


@click.group()
def itsm() -> None:
    """The ITSM tools recoverlink opens incidents in."""


@itsm.command("check")
@config_option
@click.option("--system", type=click.Choice(["servicenow", "jira", "rt"]), help="Only this system.")
@reports_errors
def itsm_check(config_file: str | None, system: str | None) -> None:
    """Check credentials, permissions, the correlation field and the configured states or transitions
    against each configured ITSM, and say exactly what is missing; exit 1 when something is."""
    from recoverlink.adapters.itsm import build_itsm_adapters
    from recoverlink.domain.errors import ItsmError

    settings = settings_for(config_file)
    adapters = build_itsm_adapters(settings.config.itsm, dict(os.environ))
    if system is not None:
        if system not in adapters:
            raise click.ClickException(f"itsm.{system} is not configured in {settings.config_path}")
        adapters = {system: adapters[system]}
    if not adapters:
        click.echo("no ITSM is configured (itsm.servicenow, itsm.jira, itsm.rt): nothing to check")
        return
    failed = False
    for name, adapter in adapters.items():
        try:
            findings = adapter.check()
        except ItsmError as exc:
            click.echo(f"FAIL  {name}: {exc}")
            failed = True
            continue
        for finding in findings:
            detail = f": {finding.detail}" if finding.detail else ""
            click.echo(f"{'OK  ' if finding.ok else 'FAIL'}  {name}: {finding.what}{detail}")
            failed = failed or not finding.ok
    if failed:
        sys.exit(1)


@click.group()
def jobs() -> None:
    """The outbox: list jobs, show one, retry a dead one now, or discard one."""


@jobs.command("list")
@config_option
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in JobState]),
    help="Only jobs in this state (repeatable).",
)
@click.option("--kind", help="Only jobs of this kind, e.g. impact.lookup.")
@click.option(
    "--recovery", "recovery_id", type=click.IntRange(1, MAX_BIGINT), help="Only this recovery's jobs."
)
@click.option(
    "--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="At most this many."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON items, as GET /api/v1/jobs answers.")
@reports_errors
def jobs_list(
    *,
    config_file: str | None,
    states: tuple[str, ...],
    kind: str | None,
    recovery_id: int | None,
    limit: int,
    as_json: bool,
) -> None:
    """The newest jobs first, as a table."""
    store = ready_store(config_file)
    with store.read() as conn:
        items, more = outbox.list_jobs(conn, JobFilter(states, kind, recovery_id), limit=limit)
    if as_json:
        click.echo(json.dumps({"items": [job_record(j) for j in items]}, indent=2))
        return
    if not items:
        click.echo("no jobs match")
        return
    rows = [["ID", "KIND", "STATE", "RECOVERY", "ATTEMPTS", "DUE (UTC)", "LAST ERROR"]]
    for j in items:
        error = (j.last_error or "-") if len(j.last_error or "") <= 60 else (j.last_error or "")[:59] + "…"
        rows.append(
            [
                str(j.id), j.kind, j.state.value, str(j.recovery_id or "-"),
                f"{j.attempts}/{j.max_attempts}", when(j.due_at) if j.state in WAITING else "-", error,
            ]
        )  # fmt: skip
    click.echo(table(rows))
    if more is not None:
        click.echo(f"(more than {limit}: raise --limit or narrow the filters)")


@jobs.command("show")
@config_option
@click.argument("job_id", type=click.IntRange(1, MAX_BIGINT))
@reports_errors
def jobs_show(config_file: str | None, job_id: int) -> None:
    """One job, whole, as JSON (GET /api/v1/jobs/ID answers the same)."""
    store = ready_store(config_file)
    with store.read() as conn:
        job = outbox.get_job(conn, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    click.echo(json.dumps(job_record(job), indent=2))


@jobs.command("retry")
@config_option
@click.argument("job_id", type=click.IntRange(1, MAX_BIGINT))
@reports_errors
def jobs_retry(config_file: str | None, job_id: int) -> None:
    """Make a dead, discarded or waiting job due now, with a fresh set of attempts."""
    job = retry_job(ready_store(config_file), job_id, datetime.now(UTC), _cli_actor(), "operator")
    click.echo(f"job {job.id} ({job.kind}) is due now")


@jobs.command("discard")
@config_option
@click.argument("job_id", type=click.IntRange(1, MAX_BIGINT))
@reports_errors
def jobs_discard(config_file: str | None, job_id: int) -> None:
    """Give up on a job (pending, running or dead); it is kept, marked discarded."""
    job = discard_job(ready_store(config_file), job_id, datetime.now(UTC), _cli_actor(), "operator")
    click.echo(f"job {job.id} ({job.kind}) discarded")


WAITING = (JobState.PENDING, JobState.RUNNING)


def _cli_actor() -> str:
    """Who acted, for the audit trail: the local user running the command."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
