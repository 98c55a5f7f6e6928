"""What the public status page reads: the open recoveries' state, age, public message and journeys.

Only those columns, and only the journeys out of the JSON documents, so that an unauthenticated page
costs one narrow query however many recoveries are open (the board's query builds full cards and
stops at its card limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from recoverlink.store.board_queries import OPEN_STATES, merged_names
from recoverlink.store.common import from_db_time
from recoverlink.store.schema import recoveries


@dataclass(frozen=True)
class StatusRecovery:
    """One open recovery as the status page may know it: nothing internal."""

    state: str
    opened_at: datetime
    public_message: str | None
    journeys: tuple[str, ...]  # the catalog's for its service, then those its impact facts name


_STATUS = (
    select(
        recoveries.c.state,
        recoveries.c.opened_at,
        recoveries.c.public_message,
        recoveries.c.impact_context["service"]["journeys"].label("service_journeys"),
        recoveries.c.impact["facts"]["journeys"].label("fact_journeys"),
    )
    .where(recoveries.c.state.in_([s.value for s in OPEN_STATES]))
    .order_by(recoveries.c.id.desc())
)


def status_recoveries(conn: Connection) -> list[StatusRecovery]:
    """Every recovery not yet closed, newest first (the order their public messages are listed in)."""
    return [
        StatusRecovery(
            state=row.state,
            opened_at=from_db_time(row.opened_at),
            public_message=row.public_message,
            journeys=merged_names(row.service_journeys, row.fact_journeys),
        )
        for row in conn.execute(_STATUS)
    ]
