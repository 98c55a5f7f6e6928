"""The recovery's ITSM incident: its link, its last known status, and the changes already applied."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from recoverlink.domain.itsm import IncidentLink
from recoverlink.store.common import to_db_time, upsert
from recoverlink.store.schema import itsm_changes, recoveries


def link_incident(
    conn: Connection, recovery_id: int, link: IncidentLink, status: str | None, now: datetime
) -> bool:
    """Remember the recovery's incident; False when one is linked already (the first link stays)."""
    values = {
        "incident_id": link.id,
        "incident_number": link.number,
        "incident_url": link.url,
        "incident_status": status,
        "updated_at": to_db_time(now),
    }
    query = update(recoveries).where(recoveries.c.id == recovery_id, recoveries.c.incident_id.is_(None))
    return conn.execute(query.values(values)).rowcount == 1


def incident_link(row: Any) -> IncidentLink | None:
    if row.incident_id is None or row.itsm_system is None:
        return None
    return IncidentLink(
        row.itsm_system, row.incident_id, row.incident_number or row.incident_id, row.incident_url
    )


def recovery_of_incident(conn: Connection, system: str, incident_id: str, *, for_update: bool = False) -> Any:
    query = select(recoveries).where(
        recoveries.c.itsm_system == system, recoveries.c.incident_id == incident_id
    )
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def set_incident_status(
    conn: Connection, recovery_id: int, status: str | None, sequence: int | None, now: datetime
) -> None:
    values: dict[str, Any] = {"incident_status": status, "updated_at": to_db_time(now)}
    if sequence is not None:
        values["incident_sequence"] = sequence
    conn.execute(update(recoveries).where(recoveries.c.id == recovery_id).values(values))


_CHANGE = upsert(
    itsm_changes, ["system", "dedup_key", "recovery_id", "received_at", "outcome"], ["system", "dedup_key"],
    returning=["id"],
)  # fmt: skip


def record_change(
    conn: Connection, system: str, dedup_key: str, *, recovery_id: int | None, outcome: str, now: datetime
) -> bool:
    """Remember an applied ITSM change; False when it was applied before (a redelivery)."""
    params = {
        "system": system,
        "dedup_key": dedup_key[:255],
        "recovery_id": recovery_id,
        "received_at": to_db_time(now),
        "outcome": outcome,
    }
    return conn.execute(_CHANGE, params).first() is not None
