"""Apply and inspect Alembic migrations with a connection from our engine (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision stored in the database, None when it was never migrated.

    Read with plain SQL: readiness probes call this every few seconds, and Alembic's migration
    context logs each time it is configured."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
        return str(revision) if revision is not None else None


def is_migrated(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


def upgrade(engine: Engine, target: str = "head") -> None:
    """Bring the schema to `target` in one transaction (PostgreSQL) or step by step (SQLite)."""
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, target)
