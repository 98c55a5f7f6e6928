"""A fake ITSM implementing `ItsmAdapter`: incidents in a dict, failures on demand.

Like cosmicpython's FakeRepository: the flow under test talks to it exactly as to a real adapter.
`fail_next(n, reason)` makes the next n calls fail (retryably unless told otherwise);
`store_then_time_out` makes the next create store the incident and then fail as a timeout would,
the classic duplicate trap.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from recoverlink.domain.errors import ItsmError, PayloadInvalid
from recoverlink.domain.itsm import (
    CheckFinding,
    IncidentChange,
    IncidentDraft,
    IncidentLink,
    IncidentStatus,
)
from recoverlink.domain.rules import ResolutionPolicy


@dataclass
class FakeIncident:
    link: IncidentLink
    draft: IncidentDraft
    status: IncidentStatus = IncidentStatus.NEW
    notes: list[str] = field(default_factory=list)
    sequence: int = 0


@dataclass
class FakeItsm:
    name: str = "servicenow"
    incidents: dict[str, FakeIncident] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    failures: list[ItsmError] = field(default_factory=list)
    store_then_time_out: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def target(self) -> str:
        return self.name

    def fail_next(self, count: int, reason: str = "connect", *, retryable: bool = True) -> None:
        error = ItsmError(f"{self.name}: fake failure ({reason})", retryable=retryable, reason=reason)
        self.failures.extend([error] * count)

    def _call(self, what: str) -> None:
        with self.lock:
            self.calls.append(what)
            if self.failures:
                raise self.failures.pop(0)

    def by_correlation(self, correlation: str) -> list[FakeIncident]:
        return [i for i in self.incidents.values() if i.draft.correlation_id == correlation]

    def find_incident(self, correlation: str) -> IncidentLink | None:
        self._call("find")
        found = self.by_correlation(correlation)
        return found[0].link if found else None

    def create_incident(self, draft: IncidentDraft) -> IncidentLink:
        self._call("create")
        with self.lock:
            number = f"INC{len(self.incidents) + 1:07d}"
            link = IncidentLink(self.name, f"id-{number}", number, f"https://itsm.test/{number}")
            self.incidents[link.id] = FakeIncident(link, draft)
            if self.store_then_time_out:
                self.store_then_time_out = False
                raise ItsmError(f"{self.name}: no answer within 10 s", retryable=True, reason="timeout")
        return link

    def add_note(self, link: IncidentLink, note: str) -> None:
        self._call("note")
        self.incidents[link.id].notes.append(note)

    def resolve_incident(self, link: IncidentLink, policy: ResolutionPolicy, note: str) -> IncidentStatus:
        self._call("resolve")
        incident = self.incidents[link.id]
        incident.notes.append(note)
        if policy is ResolutionPolicy.CLOSE:
            incident.status = IncidentStatus.RESOLVED
        elif policy is ResolutionPolicy.MONITOR:
            incident.status = IncidentStatus.ON_HOLD
        return incident.status

    def reopen_incident(self, link: IncidentLink, note: str) -> None:
        self._call("reopen")
        incident = self.incidents[link.id]
        incident.status = IncidentStatus.IN_PROGRESS
        incident.notes.append(note)

    def read_incident(self, link: IncidentLink) -> IncidentChange:
        self._call("read")
        return self.change_of(self.incidents[link.id], f"poll:{link.id}")

    def changed_since(self, since: datetime) -> list[IncidentChange]:
        self._call("poll")
        return [self.change_of(i, f"poll:{i.link.id}:{i.sequence}") for i in self.incidents.values()]

    def change_of(self, incident: FakeIncident, dedup_key: str) -> IncidentChange:
        return IncidentChange(
            system=self.name,
            incident_id=incident.link.id,
            correlation_id=incident.draft.correlation_id,
            status=incident.status,
            raw_status=incident.status.value,
            dedup_key=dedup_key,
            sequence=incident.sequence,
        )

    def set_status(self, link_id: str, status: IncidentStatus) -> None:
        """What a person does in the ITSM."""
        incident = self.incidents[link_id]
        incident.status = status
        incident.sequence += 1

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> IncidentChange:
        try:
            document = json.loads(body)
            return IncidentChange(
                system=self.name,
                incident_id=str(document["incident_id"]),
                correlation_id=document.get("correlation_id"),
                status=IncidentStatus(document["status"]) if document.get("status") else None,
                raw_status=str(document.get("status", "")),
                dedup_key=str(document["delivery"]),
                sequence=document.get("sequence"),
                assignee_team=document.get("assignee"),
                by_us=bool(document.get("by_us", False)),
                actor=document.get("actor"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise PayloadInvalid(f"not a fake ITSM callback: {exc}", field="incident_id") from exc

    def check(self) -> list[CheckFinding]:
        self._call("check")
        return [CheckFinding("credentials", True, "fake"), CheckFinding("correlation field", True)]
