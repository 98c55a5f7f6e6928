"""Priority from impact x urgency, ServiceNow's default data-lookup matrix unless configured otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

UNKNOWN = "unknown"
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
LEVELS = (1, 2, 3)  # 1 high, 2 medium, 3 low


def _servicenow_default() -> dict[tuple[int, int], str]:
    # REFERENCE.md 3.4: impact 1/urgency 1 is critical, each step down on either adds one.
    return {(i, u): PRIORITIES[i + u - 2] for i in LEVELS for u in LEVELS}


@dataclass(frozen=True)
class PriorityMatrix:
    cells: Mapping[tuple[int, int], str] = field(default_factory=_servicenow_default)

    def priority(self, impact: int | None, urgency: int | None) -> str:
        """`P1`..`P5`, or `unknown` when either input is missing."""
        if impact is None or urgency is None:
            return UNKNOWN
        return self.cells.get((impact, urgency), UNKNOWN)
