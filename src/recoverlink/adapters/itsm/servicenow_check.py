"""`recoverlink itsm check` for ServiceNow: what the instance must offer before incidents can flow.

Credentials and read rights on the table (one record, `sysparm_limit=1`), the correlation fields
(read back from that record, since unknown `sysparm_fields` names are dropped; from
`sys_dictionary` when the table is empty), and every configured state value, the close code and
the hold reason as choices in `sys_choice` (REFERENCE.md 3.4). Each finding says what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from recoverlink.adapters.itsm.answers import document, send
from recoverlink.config.itsm import ServiceNowConfig
from recoverlink.domain.errors import DependencyError
from recoverlink.domain.itsm import CheckFinding

if TYPE_CHECKING:
    from recoverlink.adapters.itsm.servicenow import ServiceNowAdapter

CORRELATION_FIELDS = ("correlation_id", "correlation_display")
_SHOWN_CHOICES = 12


@dataclass(frozen=True)
class Choice:
    value: str
    label: str
    active: bool


@dataclass(frozen=True)
class ServiceNowChecks:
    """The checks of one adapter, in order; a failed login stops them (nothing else can be seen)."""

    adapter: ServiceNowAdapter

    def run(self) -> list[CheckFinding]:
        findings, sample = self._access()
        if not all(finding.ok for finding in findings):
            return findings
        findings.append(self._correlation_fields(sample))
        wanted_states = {
            value: status.value for status, values in self._config.states.items() for value in values
        }
        wanted_states.setdefault(self._config.monitor_state, "monitor_state")
        findings.append(self._choices("state", wanted_states))
        findings.append(self._choices("close_code", {self._config.close_code: "close_code"}))
        if self._config.monitor_hold_reason:
            findings.append(
                self._choices("hold_reason", {self._config.monitor_hold_reason: "monitor_hold_reason"})
            )
        return findings

    @property
    def _config(self) -> ServiceNowConfig:
        return self.adapter.config

    @property
    def _table(self) -> str:
        return self.adapter.config.table

    def _access(self) -> tuple[list[CheckFinding], dict[str, Any] | None]:
        """Log in and read one record: 401 is the credentials, 403 the read rights (an ACL)."""
        params = {"sysparm_limit": "1", "sysparm_fields": "sys_id," + ",".join(CORRELATION_FIELDS)}
        try:
            answer = send(self.adapter.caller, "GET", self.adapter.table_url, params=params)
            if answer.status in (401, 403):
                return self._refused(answer.status), None
            rows = self._rows(document(self.adapter.caller, answer))
        except DependencyError as exc:
            return [CheckFinding("servicenow reachable", False, str(exc))], None
        login = CheckFinding("servicenow credentials", True, f"logged in to {self.adapter.base_url}")
        read = CheckFinding(
            f"servicenow read {self._table}", True, f"{len(rows)} record(s) read with sysparm_limit=1"
        )
        return [login, read], rows[0] if rows else None

    def _refused(self, status: int) -> list[CheckFinding]:
        if status == 401:
            detail = "HTTP 401: the user or password (or token) is wrong, or the user needs MFA"
            return [CheckFinding("servicenow credentials", False, detail)]
        detail = f"HTTP 403: the user may not read {self._table} (it needs a role such as itil)"
        return [
            CheckFinding("servicenow credentials", True, "logged in"),
            CheckFinding(f"servicenow read {self._table}", False, detail),
        ]

    def _correlation_fields(self, sample: Mapping[str, Any] | None) -> CheckFinding:
        """Both fields exist: present in a record read back, else defined in sys_dictionary."""
        what = "servicenow correlation fields"
        if sample is not None:
            missing = [name for name in CORRELATION_FIELDS if name not in sample]
            where = f"a {self._table} record"
        else:
            query = f"nameIN{self._table},task^elementIN{','.join(CORRELATION_FIELDS)}"
            try:
                rows = self._get_rows("sys_dictionary", query, "name,element")
            except DependencyError as exc:
                return CheckFinding(
                    what, False, f"the table is empty and sys_dictionary cannot be read: {exc}"
                )
            defined = {row.get("element") for row in rows if row.get("name") in (self._table, "task")}
            missing = [name for name in CORRELATION_FIELDS if name not in defined]
            where = "sys_dictionary"
        if missing:
            return CheckFinding(
                what, False, f"{', '.join(missing)} not in {where}: the create cannot store the key"
            )
        return CheckFinding(what, True, f"{' and '.join(CORRELATION_FIELDS)} found in {where}")

    def _choices(self, element: str, wanted: Mapping[str, str]) -> CheckFinding:
        """Every wanted value is an active choice of `<table>.<element>` (`wanted`: value -> config key)."""
        what = f"servicenow {element} choices"
        query = f"name={self._table}^element={element}"
        try:
            rows = self._get_rows("sys_choice", query, "name,element,value,label,inactive")
        except DependencyError as exc:
            return CheckFinding(what, False, f"cannot read sys_choice: {exc}")
        choices = _choices_of(rows, self._table, element)
        active = {choice.value for choice in choices if choice.active}
        missing = [f"{value} ({key})" for value, key in wanted.items() if value not in active]
        if missing:
            there = _listed(choice for choice in choices if choice.active)
            detail = f"{', '.join(missing)} not an active choice of {self._table}.{element}; there: {there}"
            return CheckFinding(what, False, detail)
        return CheckFinding(what, True, f"{', '.join(wanted)} found in sys_choice")

    def _get_rows(self, table: str, query: str, fields: str) -> list[dict[str, Any]]:
        url = f"{self.adapter.base_url}/api/now/table/{table}"
        params = {"sysparm_query": query, "sysparm_fields": fields, "sysparm_limit": "500"}
        return self._rows(self.adapter.get(url, params))

    def _rows(self, parsed: Any) -> list[dict[str, Any]]:
        result = parsed.get("result") if isinstance(parsed, dict) else None
        if not isinstance(result, list):
            raise self.adapter.caller.error("the answer has no result list", "bad_response")
        return [row for row in result if isinstance(row, dict)]


def _choices_of(rows: Iterable[Mapping[str, Any]], table: str, element: str) -> list[Choice]:
    """The rows that really are choices of this field (a dropped query part returns others too),
    once per value (sys_choice holds one row per language)."""
    seen: dict[str, Choice] = {}
    for row in rows:
        value = row.get("value")
        if row.get("name") != table or row.get("element") != element or not isinstance(value, str):
            continue
        active = str(row.get("inactive", "false")).lower() != "true"
        previous = seen.get(value)
        if previous is None or (active and not previous.active):
            seen[value] = Choice(value, str(row.get("label") or value), active)
    return list(seen.values())


def _listed(choices: Iterable[Choice]) -> str:
    shown = [
        f"{choice.value} {choice.label}" if choice.label != choice.value else choice.value
        for choice in choices
    ]
    more = f", ... ({len(shown) - _SHOWN_CHOICES} more)" if len(shown) > _SHOWN_CHOICES else ""
    return (", ".join(shown[:_SHOWN_CHOICES]) + more) if shown else "none"
