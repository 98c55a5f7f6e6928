"""The `recoverlink` command line. Each command wires the same flow functions the web app uses."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from recoverlink import cli_operations, cli_recoveries
from recoverlink.adapters.alertmanager import alerts_for_explain, decode_body
from recoverlink.checking import check_file, secret_warnings
from recoverlink.cli_common import check_schema, config_option, log, reports_errors, settings_for, store_for
from recoverlink.config.enrichment_loader import LoadedEnrichment, expand, load_enrichment
from recoverlink.config.loader import Settings, config_path_from
from recoverlink.config.secrets import new_token
from recoverlink.domain.errors import ConfigError, ConfigErrors, NotFound, PayloadInvalid
from recoverlink.domain.tokens import Role
from recoverlink.explain import explain_alerts, render_text
from recoverlink.rule_testing import load_tests, run_test
from recoverlink.store import migrate as migrations
from recoverlink.store.engine import Store

if TYPE_CHECKING:  # prometheus_client must not load before serve sets PROMETHEUS_MULTIPROC_DIR
    from recoverlink.reload import LiveEnrichment


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

    settings = settings_for(config_file, listen)
    configure_logging(settings.config.logging.level)
    bootstrap.ensure_token_files(settings)
    store = store_for(settings)
    check_schema(store, migrate)
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
    """Run the outbox worker: impact lookups and verification, ITSM incidents, CX actions, follow-ups."""
    from recoverlink import bootstrap
    from recoverlink.logs import configure_logging
    from recoverlink.worker_runtime import run_worker

    settings = settings_for(config_file)
    configure_logging(settings.config.logging.level)
    bootstrap.ensure_token_files(settings)  # a generated action credential may not exist yet
    store = store_for(settings)
    check_schema(store, migrate=False)
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


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@config_option
@reports_errors
def db_upgrade(config_file: str | None) -> None:
    """Apply every pending migration."""
    store = store_for(settings_for(config_file))
    migrations.upgrade(store.engine)
    click.echo(f"database at revision {migrations.current_revision(store.engine)}")


@db.command("current")
@config_option
@reports_errors
def db_current(config_file: str | None) -> None:
    """Print the schema revision of the database and the one this release needs."""
    store = store_for(settings_for(config_file))
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

    store = store_for(settings_for(config_file))
    check_schema(store, migrate=False)
    token = new_token("rl")
    label = name or f"{role}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    with store.write() as conn:
        register_token(conn, token, Role(role), label, datetime.now(UTC))
    click.echo(token)
    click.echo(f"created {role} token {label!r}; it is shown only this once", err=True)


@tokens.command("list")
@config_option
@reports_errors
def tokens_list(config_file: str | None) -> None:
    """Every token's id, name, role and whether it is revoked (tokens themselves are never stored)."""
    from recoverlink.store.tokens import list_tokens

    store = store_for(settings_for(config_file))
    check_schema(store, migrate=False)
    with store.read() as conn:
        records = list_tokens(conn)
    for t in records:
        revoked = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}Z" if t.revoked_at else "live"
        click.echo(f"{t.id}\t{t.role.value}\t{t.name}\t{revoked}")


@tokens.command("revoke")
@config_option
@click.argument("name_or_id")
@reports_errors
def tokens_revoke(config_file: str | None, name_or_id: str) -> None:
    """Revoke the live token(s) with this name or id; requests and board sessions with it end at once."""
    from recoverlink.store.tokens import revoke_token

    store = store_for(settings_for(config_file))
    check_schema(store, migrate=False)
    with store.write() as conn:
        revoked = revoke_token(conn, name_or_id, datetime.now(UTC))
    if not revoked:
        raise NotFound(f"no live token named or numbered {name_or_id!r} (see `recoverlink tokens list`)")
    for t in revoked:
        click.echo(f"revoked {t.role.value} token {t.name!r} (id {t.id})")


def _enrichment(config_file: str | None) -> tuple[Settings, LoadedEnrichment]:
    settings = settings_for(config_file)
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
            continue
        for warning in secret_warnings(path):
            click.echo(f"WARNING: {warning}", err=True)
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


@main.command("dashboard")
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout."
)
def dashboard_command(output: Path | None) -> None:
    """Print the Grafana dashboard of recoverlink's metrics (deploy/grafana/dashboards/recoverlink.json)."""
    from recoverlink.dashboard import dashboard_json

    text = dashboard_json()
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


main.add_command(cli_recoveries.recoveries)
main.add_command(cli_operations.itsm)
main.add_command(cli_operations.jobs)
