"""What every `recoverlink` command shares: the --config option, settings, the store, error output
and small text-table helpers."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import ParamSpec, TypeVar

import click

from recoverlink.config.loader import Settings, config_path_from, load_settings
from recoverlink.domain.errors import ConfigErrors, RecoverlinkError
from recoverlink.store import migrate as migrations
from recoverlink.store.engine import Store, StoreOptions, open_store

P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger("recoverlink.cli")

config_option = click.option(
    "--config",
    "config_file",
    metavar="PATH",
    help="Config file (default: $RECOVERLINK_CONFIG, else deploy/recoverlink.yaml).",
)


def settings_for(config_file: str | None, listen: str | None = None) -> Settings:
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


def store_for(settings: Settings) -> Store:
    options = StoreOptions.from_config(settings.config.database)
    return open_store(settings.database_url, options)


def check_schema(store: Store, migrate: bool) -> None:
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


def ready_store(config_file: str | None) -> Store:
    """The configured store, refusing an unmigrated one with what to run."""
    store = store_for(settings_for(config_file))
    check_schema(store, migrate=False)
    return store


def when(value: datetime | None) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z" if value is not None else "-"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
