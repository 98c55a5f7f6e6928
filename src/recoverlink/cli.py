"""The `recoverlink` command line. Each command wires the same flow functions the web app uses."""

from __future__ import annotations

import getpass
import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import click

from recoverlink.adapters.alertmanager import alerts_for_explain, decode_body
from recoverlink.checking import check_file
from recoverlink.config.enrichment_loader import LoadedEnrichment, expand, load_enrichment
from recoverlink.config.loader import Settings, config_path_from, load_settings
from recoverlink.config.secrets import new_token
from recoverlink.domain.errors import ConfigError, ConfigErrors, NotFound, PayloadInvalid, RecoverlinkError
from recoverlink.domain.outbox import JobState
from recoverlink.domain.recovery_state import RecoveryState
from recoverlink.domain.tokens import Role
from recoverlink.explain import explain_alerts, render_text
from recoverlink.job_operations import discard_job, job_record, retry_job
from recoverlink.rule_testing import load_tests, run_test
from recoverlink.store import migrate as migrations
from recoverlink.store import outbox
from recoverlink.store.engine import Store, StoreOptions, open_store
from recoverlink.store.outbox import JobFilter
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

if TYPE_CHECKING:  # prometheus_client must not load before serve sets PROMETHEUS_MULTIPROC_DIR
    from recoverlink.reload import LiveEnrichment

P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger("recoverlink.cli")

config_option = click.option(
    "--config",
    "config_file",
    metavar="PATH",
    help="Config file (default: $RECOVERLINK_CONFIG, else deploy/recoverlink.yaml).",
)


def _settings(config_file: str | None, listen: str | None = None) -> Settings:
    path = config_path_from(config_file, os.environ)
    return load_settings(path, os.environ, listen=listen)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print our errors as `file:line:col: message` lines and exit 1, never a traceback."""

    @wraps(command)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ConfigErrors as exc:
            for error in exc.errors:
                click.echo(error.render(), err=True)
            sys.exit(1)
        except RecoverlinkError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapped


@click.group()
@click.version_option(package_name="recoverlink")
def main() -> None:
    """recoverlink: Alertmanager alerts in, owned and measured recoveries out."""


@main.command()
@config_option
@click.option("--listen", metavar="HOST:PORT", help="Listen address (default 127.0.0.1:9471).")
@click.option("--workers", type=click.IntRange(1, 64), help="gunicorn worker processes.")
@click.option("--threads", type=click.IntRange(1, 256), help="Threads per worker.")
@click.option("--migrate", is_flag=True, help="Apply pending database migrations first.")
@click.option(
    "--no-worker", is_flag=True, help="Do not start the outbox worker beside gunicorn (run one elsewhere)."
)
@reports_errors
def serve(
    *,
    config_file: str | None,
    listen: str | None,
    workers: int | None,
    threads: int | None,
    migrate: bool,
    no_worker: bool,
) -> None:
    """Serve the webhook, API and metrics under gunicorn, with one outbox worker beside it."""
    from recoverlink import bootstrap, server
    from recoverlink.logs import configure_logging

    settings = _settings(config_file, listen)
    configure_logging(settings.config.logging.level)
    bootstrap.ensure_token_files(settings)
    store = _store(settings)
    _check_schema(store, migrate)
    bootstrap.register_admin_token(settings, store, dict(os.environ))
    # Before anything creates a metric: every process must write multiprocess files.
    server.prepare_metrics_dir(settings.config.server.metrics_dir)
    live, on_hup = _hup_handler(settings, store)
    store.dispose()  # workers fork from here: hand them no open connections
    log.info(
        "serving; point Alertmanager at it with this receiver",
        extra={
            "listen": settings.listen,
            "alertmanager_yml": bootstrap.alertmanager_snippet(settings),
        },
    )
    server.serve(
        settings,
        workers=workers or settings.config.server.workers,
        threads=threads or settings.config.server.threads,
        on_hup=on_hup,
        enrichment=live,
        job_worker=None if no_worker else server.job_worker_argv(settings),
    )


@main.command()
@config_option
@click.option(
    "--metrics-listen",
    metavar="HOST:PORT",
    help="Serve /metrics here (default: worker.metrics_listen, 127.0.0.1:9472).",
)
@click.option("--no-metrics", is_flag=True, help="Serve no /metrics (another process exports them).")
@click.option("--parent-pid", type=int, hidden=True, help="Stop when this process is no longer the parent.")
@reports_errors
def worker(
    config_file: str | None, metrics_listen: str | None, no_metrics: bool, parent_pid: int | None
) -> None:
    """Run the outbox worker: impact lookups, impact verification, follow-ups after close."""
    from recoverlink.logs import configure_logging
    from recoverlink.worker_runtime import run_worker

    settings = _settings(config_file)
    configure_logging(settings.config.logging.level)
    store = _store(settings)
    _check_schema(store, migrate=False)
    listen = None if no_metrics else (metrics_listen or settings.config.worker.metrics_listen)
    run_worker(settings, store, metrics_listen=listen, parent_pid=parent_pid, environ=dict(os.environ))


def _hup_handler(settings: Settings, store: Store) -> tuple[LiveEnrichment, Callable[[], None]]:
    """Validate the config at start (fail fast) and announce it; SIGHUP later validates and announces."""
    from prometheus_client import CollectorRegistry

    from recoverlink.reload import LiveEnrichment, load_from_disk, reload_and_announce
    from recoverlink.telemetry import Metrics

    live = LiveEnrichment(load_from_disk(settings.config_path))
    metrics = Metrics(CollectorRegistry())
    reload_and_announce(settings.config_path, live, store, metrics, datetime.now(UTC))

    def on_hup() -> None:
        reload_and_announce(settings.config_path, live, store, metrics, datetime.now(UTC))

    return live, on_hup


def _store(settings: Settings) -> Store:
    options = StoreOptions.from_config(settings.config.database)
    return open_store(settings.database_url, options)


def _check_schema(store: Store, migrate: bool) -> None:
    if migrations.is_migrated(store.engine):
        return
    if not migrate:
        current = migrations.current_revision(store.engine) or "empty"
        raise click.ClickException(
            f"the database schema is {current}, not {migrations.head_revision()}: "
            "run `recoverlink db upgrade` (or `recoverlink serve --migrate`)"
        )
    migrations.upgrade(store.engine)
    log.info("database migrated", extra={"revision": migrations.head_revision()})


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@config_option
@reports_errors
def db_upgrade(config_file: str | None) -> None:
    """Apply every pending migration."""
    store = _store(_settings(config_file))
    migrations.upgrade(store.engine)
    click.echo(f"database at revision {migrations.current_revision(store.engine)}")


@db.command("current")
@config_option
@reports_errors
def db_current(config_file: str | None) -> None:
    """Print the schema revision of the database and the one this release needs."""
    store = _store(_settings(config_file))
    current = migrations.current_revision(store.engine) or "empty"
    click.echo(f"current: {current}\nhead: {migrations.head_revision()}")


@main.group()
def tokens() -> None:
    """API tokens (viewer, operator, admin)."""


@tokens.command("create")
@config_option
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--name", default=None, help="A label to recognise the token by.")
@reports_errors
def tokens_create(config_file: str | None, role: str, name: str | None) -> None:
    """Create a token and print it once; only its hash is stored."""
    from recoverlink.store.tokens import register_token

    store = _store(_settings(config_file))
    _check_schema(store, migrate=False)
    token = new_token("rl")
    label = name or f"{role}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    with store.write() as conn:
        register_token(conn, token, Role(role), label, datetime.now(UTC))
    click.echo(token)
    click.echo(f"created {role} token {label!r}; it is shown only this once", err=True)


def _enrichment(config_file: str | None) -> tuple[Settings, LoadedEnrichment]:
    settings = _settings(config_file)
    loaded = load_enrichment(settings.config, settings.config_path.parent, str(settings.config_path))
    return settings, loaded


@main.command()
@config_option
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@reports_errors
def check(config_file: str | None, paths: tuple[Path, ...]) -> None:
    """Validate config, catalog and rules (like `amtool check-config`); exit 1 on any error.

    Without PATHs, checks the config file and every catalog and rule file it names. A PATH may be a
    config file, a rule file or a rule test file.
    """
    targets = list(paths) or [config_path_from(config_file, os.environ)]
    errors: list[ConfigError] = []
    for path in targets:
        try:
            click.echo(f"SUCCESS: {check_file(path)}")
        except ConfigErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise ConfigErrors(errors)


@main.command("test")
@config_option
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@reports_errors
def test_rules(config_file: str | None, paths: tuple[Path, ...]) -> None:
    """Run rule unit tests (default: the config's `rules.tests`) and print a diff for each failure."""
    settings, loaded = _enrichment(config_file)
    files = list(paths) or expand(
        settings.config.rules.tests, settings.config_path.parent, "rules.tests", str(settings.config_path)
    )
    cases = load_tests(files)
    failures = [f for f in (run_test(loaded.enricher, case) for case in cases) if f is not None]
    for failure in failures:
        click.echo(failure.render(), err=True)
    if failures:
        click.echo(f"FAILED: {len(failures)} of {len(cases)} rule tests failed", err=True)
        sys.exit(1)
    click.echo(f"SUCCESS: {len(cases)} rule tests passed (rule-set version {loaded.version})")


@main.command()
@config_option
@click.argument("alert_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as POST /api/v1/explain answers.")
@reports_errors
def explain(config_file: str | None, alert_file: Path, as_json: bool) -> None:
    """Show which rules and selectors an alert (or every alert of a webhook payload) meets, and why."""
    _, loaded = _enrichment(config_file)
    try:
        alerts = alerts_for_explain(decode_body(alert_file.read_bytes()))
    except PayloadInvalid as exc:
        raise click.ClickException(f"{alert_file}: {exc.message}") from exc
    results = explain_alerts(loaded.enricher, alerts)
    if as_json:
        click.echo(json.dumps({"ruleset_version": loaded.version, "alerts": results}, indent=2))
    else:
        click.echo(render_text(results))


@main.group()
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
    store = _store(_settings(config_file))
    _check_schema(store, migrate=False)
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
@click.argument("recovery_id", type=click.IntRange(1, 2**63 - 1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as GET /api/v1/recoveries/ID answers.")
@reports_errors
def recoveries_show(config_file: str | None, recovery_id: int, as_json: bool) -> None:
    """One recovery: summary, milestones with the wait between them, alerts and audit timeline."""
    settings = _settings(config_file)
    store = _store(settings)
    _check_schema(store, migrate=False)
    stale_after = settings.config.enrichment.stale_after
    with store.read() as conn:
        detail = load_recovery(conn, recovery_id, now=datetime.now(UTC), default_stale_after=stale_after)
    if detail is None:
        raise NotFound(f"recovery {recovery_id} not found")
    if as_json:
        click.echo(json.dumps(detail_record(detail), indent=2))
        return
    click.echo("\n".join(_recovery_text(detail)))


@main.group()
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

    settings = _settings(config_file)
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


@main.group()
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
    "--recovery", "recovery_id", type=click.IntRange(1, 2**63 - 1), help="Only this recovery's jobs."
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
    store = _ready_store(config_file)
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
                f"{j.attempts}/{j.max_attempts}", _when(j.due_at) if j.state in WAITING else "-", error,
            ]
        )  # fmt: skip
    click.echo(_table(rows))
    if more is not None:
        click.echo(f"(more than {limit}: raise --limit or narrow the filters)")


@jobs.command("show")
@config_option
@click.argument("job_id", type=click.IntRange(1, 2**63 - 1))
@reports_errors
def jobs_show(config_file: str | None, job_id: int) -> None:
    """One job, whole, as JSON (GET /api/v1/jobs/ID answers the same)."""
    store = _ready_store(config_file)
    with store.read() as conn:
        job = outbox.get_job(conn, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    click.echo(json.dumps(job_record(job), indent=2))


@jobs.command("retry")
@config_option
@click.argument("job_id", type=click.IntRange(1, 2**63 - 1))
@reports_errors
def jobs_retry(config_file: str | None, job_id: int) -> None:
    """Make a dead, discarded or waiting job due now, with a fresh set of attempts."""
    job = retry_job(_ready_store(config_file), job_id, datetime.now(UTC), _cli_actor(), "operator")
    click.echo(f"job {job.id} ({job.kind}) is due now")


@jobs.command("discard")
@config_option
@click.argument("job_id", type=click.IntRange(1, 2**63 - 1))
@reports_errors
def jobs_discard(config_file: str | None, job_id: int) -> None:
    """Give up on a job (pending, running or dead); it is kept, marked discarded."""
    job = discard_job(_ready_store(config_file), job_id, datetime.now(UTC), _cli_actor(), "operator")
    click.echo(f"job {job.id} ({job.kind}) discarded")


WAITING = (JobState.PENDING, JobState.RUNNING)


def _ready_store(config_file: str | None) -> Store:
    store = _store(_settings(config_file))
    _check_schema(store, migrate=False)
    return store


def _cli_actor() -> str:
    """Who acted, for the audit trail: the local user running the command."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _when(value: datetime | None) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z" if value is not None else "-"


def _duration(seconds: float) -> str:
    """`0s`, `45s`, `7m 5s`, `1h 2m`, `2d 3h`: the two largest units are enough to compare waits."""
    rest = int(max(seconds, 0))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count or (unit == "s" and not parts):
            parts.append(f"{count}{unit}")
    return " ".join(parts[:2])


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


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
    return _table(rows)


def _recovery_text(detail: RecoveryDetail) -> list[str]:
    r = detail.summary
    owner = f"{r.owner or 'not known yet'}, {r.escalation_bounces} escalation bounce(s)"
    facts = [
        ("state", f"{r.state} since {_when(r.state_changed_at)}"),
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
            f"  {a.status:<8}  {a.fingerprint}  {a.role:<7}  {name}  since {_when(a.starts_at)}{stale}"
        )
    lines += ["", "timeline"]
    lines += [f"  {_when(e.at)}  {e.source}/{e.actor}  {_audit_text(e)}" for e in detail.timeline]
    return lines


def _milestone_lines(r: RecoverySummary) -> list[str]:
    """Each milestone with the wait since the previous one and since the recovery opened."""
    rows = [["milestones", "at (UTC)", "after previous", "after opened"]]
    previous = r.opened_at
    for name, at in sorted(r.milestones.items(), key=lambda item: item[1]):
        since_opened = "" if name == "opened" else _duration((at - r.opened_at).total_seconds())
        after = "" if name == "opened" else _duration((at - previous).total_seconds())
        rows.append([f"  {name}", _when(at), after, since_opened])
        previous = at
    return _table(rows).splitlines()


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
