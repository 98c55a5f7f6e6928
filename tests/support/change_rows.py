"""Rows of `itsm_changes` as plain test writes: a table with a unique key and no other rows needed."""

from __future__ import annotations

from recoverlink.store.common import DriverStatement
from recoverlink.store.engine import Store

INSERT_CHANGE = DriverStatement(
    "INSERT INTO itsm_changes (system, dedup_key, received_at, outcome) VALUES (:s, :k, :t, :o)"
)


def change(key: str) -> dict[str, str]:
    """The binds of INSERT_CHANGE for a change keyed `key`."""
    return {"s": "rt", "k": key, "t": "2026-12-01 10:00:00.000000", "o": "applied"}


def stored_change_keys(store: Store) -> list[str]:
    with store.read() as conn:
        return [r[0] for r in conn.exec_driver_sql("SELECT dedup_key FROM itsm_changes ORDER BY dedup_key")]
