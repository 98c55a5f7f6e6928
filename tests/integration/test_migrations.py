"""The Alembic migrations build exactly the schema the code declares, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from recoverlink.store import migrate
from recoverlink.store.engine import Store
from recoverlink.store.schema import metadata


def test_migrated_schema_matches_the_declared_tables(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_upgrade_twice_is_harmless(store: Store) -> None:
    migrate.upgrade(store.engine)
    assert migrate.is_migrated(store.engine)
