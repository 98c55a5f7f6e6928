"""`recoverlink itsm check` for Jira: credentials, the API user, the project, the issue type, and
the configured transitions where Jira shows them.

Jira lists only the transitions an issue can take from its current status, so transitions are
checked on the most recently updated issue with our label: from an open issue, the resolve (and
monitor) transition; from a done one, the reopen transition. Before any such issue exists, the
finding says so instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from recoverlink.adapters.itsm.answers import document, send
from recoverlink.adapters.itsm.jira_payloads import issue_status, jql_string
from recoverlink.config.itsm import JiraConfig
from recoverlink.domain.errors import DependencyError
from recoverlink.domain.itsm import CheckFinding, IncidentLink, IncidentStatus

if TYPE_CHECKING:
    from recoverlink.adapters.itsm.jira import JiraAdapter

_DONE = (IncidentStatus.RESOLVED, IncidentStatus.CLOSED, IncidentStatus.CANCELED)


@dataclass(frozen=True)
class JiraChecks:
    """The checks of one adapter, in order; failed credentials stop them."""

    adapter: JiraAdapter

    @property
    def _config(self) -> JiraConfig:
        return self.adapter.config

    def run(self) -> list[CheckFinding]:
        findings = self._myself()
        if not findings[0].ok:
            return findings
        findings.extend(self._project())
        findings.extend(self._transitions())
        return findings

    def _myself(self) -> list[CheckFinding]:
        """`GET /myself`: the credentials work, and `api_user` is the user they log in as."""
        try:
            answer = send(self.adapter.caller, "GET", f"{self.adapter.api_url}/myself")
            if answer.status == 401:
                return [CheckFinding("jira credentials", False, "HTTP 401: the token or password is wrong")]
            me = document(self.adapter.caller, answer)
        except DependencyError as exc:
            return [CheckFinding("jira credentials", False, str(exc))]
        me = me if isinstance(me, dict) else {}
        who = me.get("accountId") if self._config.flavor == "cloud" else me.get("name")
        shown = f"{me.get('displayName') or who} ({who})"
        return [CheckFinding("jira credentials", True, f"logged in as {shown}"), self._api_user(who)]

    def _api_user(self, who: object) -> CheckFinding:
        what = "jira api_user"
        kind = "accountId" if self._config.flavor == "cloud" else "user name"
        expected = self.adapter.api_user
        if expected is None:
            hint = f"set itsm.jira.api_user to {who!r}" if isinstance(who, str) else f"set it to the {kind}"
            return CheckFinding(
                what, False, f"not set: webhooks of our own changes are not recognised; {hint}"
            )
        if expected != who:
            return CheckFinding(
                what, False, f"{expected!r} is not the {kind} the credentials log in as ({who!r})"
            )
        return CheckFinding(what, True, f"{expected} is the {kind} of the credentials")

    def _project(self) -> list[CheckFinding]:
        """The default project exists and offers the configured issue type."""
        project = self._config.project
        if not project:
            detail = "no default project: every catalog entry routed to jira must name one"
            return [CheckFinding("jira project", True, detail)]
        try:
            found = self.adapter.get(f"/project/{quote(project, safe='')}")
        except DependencyError as exc:
            return [CheckFinding(f"jira project {project}", False, f"cannot read it: {exc}")]
        types = found.get("issueTypes") if isinstance(found, dict) else None
        names = [str(t.get("name")) for t in types if isinstance(t, dict)] if isinstance(types, list) else []
        wanted = self._config.issue_type
        has_type = any(name.casefold() == wanted.casefold() for name in names)
        detail = (
            f"offers {wanted}" if has_type else f"has no issue type {wanted!r}; it has {', '.join(names)}"
        )
        return [
            CheckFinding(f"jira project {project}", True, "found"),
            CheckFinding("jira issue type", has_type, detail),
        ]

    def _transitions(self) -> list[CheckFinding]:
        """The transitions the sample issue's status should offer, by name."""
        try:
            sample = self._sample_issue()
            if sample is None:
                detail = f"no issue labelled {self._config.label} yet: checked once one exists"
                return [CheckFinding("jira transitions", True, detail)]
            offered = self._offered(sample)
            status, status_name = issue_status(sample, self._config)
        except (DependencyError, ValueError) as exc:
            return [CheckFinding("jira transitions", False, f"cannot list them: {exc}")]
        key = str(sample.get("key"))
        expected = self._expected(status)
        found = {name.casefold() for name in offered}
        there = ", ".join(offered) or "none"
        return [
            CheckFinding(
                f"jira transition {name!r}",
                name.casefold() in found,
                f"offered by {key} ({status_name})"
                if name.casefold() in found
                else f"{key} ({status_name}) offers only {there}",
            )
            for name in expected
        ]

    def _expected(self, status: IncidentStatus | None) -> list[str]:
        transitions = self._config.transitions
        if status in _DONE:
            return [transitions.reopen]
        return [name for name in (transitions.resolve, transitions.monitor) if name]

    def _sample_issue(self) -> Mapping[str, Any] | None:
        jql = f"labels = {jql_string(self._config.label)} ORDER BY updated DESC"
        issues = self.adapter.search(jql, ["status", "labels"], 1)[0]
        return issues[0] if issues else None

    def _offered(self, issue: Mapping[str, Any]) -> list[str]:
        key = str(issue.get("key"))
        link = IncidentLink(system="jira", id=key, number=key)
        return [str(t.get("name")) for t in self.adapter.offered_transitions(link)]
