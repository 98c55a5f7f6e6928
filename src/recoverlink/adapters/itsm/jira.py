"""Jira Cloud (REST v3) and Data Center (REST v2) issues as recoverlink incidents (REFERENCE.md 4).

One issue per recovery, found again by its `rl-rec-<id>` label through bounded JQL; the issue
property `recoverlink` confirms ownership when a label was copied (a cloned issue keeps labels).
Workflow transitions are looked up by name on every move, as transition ids differ per workflow.
Resolve and reopen read the issue first, so a retry after a lost answer does not try a move that
is already done, and an issue closed as won't-fix is never reopened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from recoverlink.adapters.http_calls import Caller
from recoverlink.adapters.itsm.answers import document, failure, no_content, send
from recoverlink.adapters.itsm.auth import authorization
from recoverlink.adapters.itsm.jira_check import JiraChecks
from recoverlink.adapters.itsm.jira_payloads import (
    ISSUE_FIELDS,
    PROPERTY_KEY,
    SYSTEM,
    IssueInvalid,
    comment_body,
    correlation_label,
    correlation_of,
    create_fields,
    is_issue_key,
    issue_change,
    issue_status,
    jql_string,
    jql_time,
    labels_of,
    resolution_of,
    status_of,
    webhook_change,
)
from recoverlink.config.itsm import JiraConfig
from recoverlink.domain.errors import DependencyError, ItsmError
from recoverlink.domain.itsm import CheckFinding, IncidentChange, IncidentDraft, IncidentLink, IncidentStatus
from recoverlink.domain.rules import ResolutionPolicy

log = logging.getLogger(__name__)

PAGE_SIZE = 100
MAX_PAGES = 50  # 5000 changed issues in one poll: stop there rather than page forever
FIND_LIMIT = 10
_FINISHED = (IncidentStatus.RESOLVED, IncidentStatus.CLOSED, IncidentStatus.CANCELED)


@dataclass(frozen=True)
class JiraAdapter:
    """`ItsmAdapter` for Jira issues; `config.flavor` picks the API version and body format."""

    config: JiraConfig
    caller: Caller

    @classmethod
    def from_config(
        cls,
        config: JiraConfig,
        environ: Mapping[str, str],
        session: requests.Session,
        clock: Callable[[], datetime],
    ) -> JiraAdapter:
        """Read the credentials once; every call then shares the session and the timeout."""
        caller = Caller(
            who=SYSTEM,
            session=session,
            timeout_seconds=config.timeout_seconds,
            authorization=authorization(config.auth, environ, "itsm.jira"),
            clock=clock,
            error_type=ItsmError,
        )
        return cls(config, caller)

    @property
    def name(self) -> str:
        return SYSTEM

    @property
    def target(self) -> str:
        return SYSTEM

    @property
    def base_url(self) -> str:
        return self.config.url.rstrip("/")

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/rest/api/{3 if self.config.flavor == 'cloud' else 2}"

    @property
    def api_user(self) -> str | None:
        """Who our own changes are made by; on Data Center the basic auth user name by default."""
        if self.config.api_user:
            return self.config.api_user
        basic = self.config.auth.basic
        return basic.username if basic is not None and self.config.flavor == "data_center" else None

    def find_incident(self, correlation: str) -> IncidentLink | None:
        """The oldest issue carrying the correlation's label whose property does not name another."""
        label = self._label(correlation)
        issues = self.search(f"labels = {jql_string(label)} ORDER BY created ASC", ["labels"], FIND_LIMIT)[0]
        labelled = [issue for issue in issues if label in labels_of(issue)]
        owned = [(issue, self._owner(issue)) for issue in labelled]
        confirmed = [issue for issue, owner in owned if owner == correlation]
        unclaimed = [issue for issue, owner in owned if owner is None]
        chosen = confirmed or unclaimed
        return self._link(chosen[0]) if chosen else None

    def create_incident(self, draft: IncidentDraft) -> IncidentLink:
        """Create the issue (201 with its key), then set the ownership property.

        Any other 2xx is an unknown outcome and a retryable failure: the retry searches first. A
        failed property write only logs: the issue exists and its label finds it again.
        """
        project = draft.routing.project or self.config.project
        if not project:
            raise ItsmError(
                "jira: no project: the catalog entry names none and itsm.jira.project is not set",
                retryable=False,
                reason="no_project",
            )
        self._label(draft.correlation_id)
        body = {"fields": create_fields(draft, self.config, project)}
        answer = send(self.caller, "POST", f"{self.api_url}/issue", body=body)
        if not answer.ok:
            raise failure(self.caller, answer)
        try:
            link = self._link(document(self.caller, answer, expected=(201,)))
        except DependencyError as exc:
            raise ItsmError(
                f"{exc} (the issue may exist: the retry searches before it creates)",
                retryable=True,
                reason=exc.reason,
            ) from exc
        self._claim(link, draft.correlation_id)
        return link

    def add_note(self, link: IncidentLink, note: str) -> None:
        """A comment, marked internal for Jira Service Management."""
        answer = send(
            self.caller, "POST", f"{self._issue_url(link)}/comment", body=comment_body(note, self.config)
        )
        document(self.caller, answer, expected=(200, 201))

    def resolve_incident(self, link: IncidentLink, policy: ResolutionPolicy, note: str) -> IncidentStatus:
        """`close`: the resolve transition (with the resolution); `monitor`: the monitor transition;
        `comment`: a comment. The note is always added as a comment."""
        current = self._status(self.read_issue(link))
        if policy is ResolutionPolicy.COMMENT or current in _FINISHED:
            self.add_note(link, note)
            return current or IncidentStatus.IN_PROGRESS
        if policy is ResolutionPolicy.CLOSE:
            fields = {"resolution": {"name": self.config.resolution}} if self.config.resolution else None
            status = self.transition(link, self.config.transitions.resolve, fields)
            target = IncidentStatus.RESOLVED
        else:
            status = self.transition(link, self._monitor_transition(), None)
            target = IncidentStatus.ON_HOLD
        self.add_note(link, note)
        return status or target

    def _monitor_transition(self) -> str:
        if not self.config.transitions.monitor:
            raise ItsmError(
                "jira: the monitor resolution policy needs itsm.jira.transitions.monitor",
                retryable=False,
                reason="no_transition",
            )
        return self.config.transitions.monitor

    def reopen_incident(self, link: IncidentLink, note: str) -> None:
        """The reopen transition for a done issue; only a comment for an open one, or a won't-fix."""
        issue = self.read_issue(link)
        done = self._status(issue) in _FINISHED
        if done and resolution_of(issue) not in self.config.wont_fix_resolutions:
            self.transition(link, self.config.transitions.reopen, None)
        self.add_note(link, note)

    def read_incident(self, link: IncidentLink) -> IncidentChange:
        """The issue as it is now, keyed `poll:<key>:<updated>`."""
        return self._change(self.read_issue(link))

    def changed_since(self, since: datetime) -> list[IncidentChange]:
        """Issues with our label updated since then (JQL reads minutes, in the API user's zone)."""
        jql = (
            f"labels = {jql_string(self.config.label)} "
            f'AND updated >= "{jql_time(since, self.config.jql_time_zone)}" ORDER BY key ASC'
        )
        changes: list[IncidentChange] = []
        page: str | int | None = None
        for _ in range(MAX_PAGES):
            issues, page = self.search(jql, list(ISSUE_FIELDS), PAGE_SIZE, page)
            ours = [issue for issue in issues if correlation_of(labels_of(issue)) is not None]
            changes.extend(self._change(issue) for issue in ours)
            if page is None:
                return changes
        log.warning("jira poll stopped after %d pages", MAX_PAGES, extra={"itsm": SYSTEM})
        return changes

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> IncidentChange:
        """One `jira:issue_updated` webhook delivery (REFERENCE.md 4.5)."""
        return webhook_change(body, headers, self.config, self.api_user)

    def check(self) -> list[CheckFinding]:
        """Credentials (`/myself`), the project and issue type, and the transitions where visible."""
        return JiraChecks(self).run()

    # --- calls -------------------------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """A GET under the API base whose answer must be 200 JSON."""
        return document(self.caller, send(self.caller, "GET", f"{self.api_url}{path}", params=params))

    def read_issue(self, link: IncidentLink) -> dict[str, Any]:
        issue = self.get(f"/issue/{self._key(link.id)}", {"fields": ",".join(ISSUE_FIELDS)})
        if not isinstance(issue, dict):
            raise self.caller.error("the issue answer is not an object", "bad_response")
        return issue

    def search(
        self, jql: str, fields: list[str], limit: int, page: str | int | None = None
    ) -> tuple[list[dict[str, Any]], str | int | None]:
        """One page of a JQL search, and what asks for the next one (None on the last page)."""
        if self.config.flavor == "cloud":
            return self._search_cloud(jql, fields, limit, page if isinstance(page, str) else None)
        return self._search_data_center(jql, fields, limit, page if isinstance(page, int) else 0)

    def _search_cloud(
        self, jql: str, fields: list[str], limit: int, token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """`POST /search/jql`, paged by `nextPageToken` (the legacy `/search` is being removed)."""
        body: dict[str, Any] = {"jql": jql, "fields": fields, "maxResults": limit}
        if token:
            body["nextPageToken"] = token
        found = document(self.caller, send(self.caller, "POST", f"{self.api_url}/search/jql", body=body))
        issues = self._issues(found)
        following = found.get("nextPageToken")
        last = found.get("isLast") is True or not isinstance(following, str) or not following
        return issues, None if last else following

    def _search_data_center(
        self, jql: str, fields: list[str], limit: int, start: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """`GET /search`, paged by `startAt` against `total`."""
        params = {"jql": jql, "fields": ",".join(fields), "startAt": str(start), "maxResults": str(limit)}
        found = self.get("/search", params)
        issues = self._issues(found)
        total = found.get("total")
        seen = start + len(issues)
        more = bool(issues) and (seen < total if isinstance(total, int) else len(issues) >= limit)
        return issues, seen if more else None

    def transition(
        self, link: IncidentLink, name: str, fields: Mapping[str, Any] | None
    ) -> IncidentStatus | None:
        """Move the issue through the transition called `name`; answers what its target status means.

        `fields` the transition's screen does not show are left out (a workflow without a screen
        sets the resolution itself, and Jira refuses a field that is not on the screen).
        """
        offered = self.offered_transitions(link)
        chosen = next((t for t in offered if str(t.get("name", "")).casefold() == name.casefold()), None)
        if chosen is None:
            names = ", ".join(repr(str(t.get("name"))) for t in offered) or "none"
            raise ItsmError(
                f"jira: {link.number} has no transition {name!r} in its current status; it offers {names}",
                retryable=False,
                reason="no_transition",
            )
        body: dict[str, Any] = {"transition": {"id": str(chosen.get("id"))}}
        on_screen = chosen.get("fields")
        shown = {k: v for k, v in (fields or {}).items() if not isinstance(on_screen, dict) or k in on_screen}
        if shown:
            body["fields"] = shown
        no_content(self.caller, send(self.caller, "POST", f"{self._issue_url(link)}/transitions", body=body))
        return self._target_status(chosen)

    def offered_transitions(self, link: IncidentLink) -> list[dict[str, Any]]:
        """The transitions the issue can take from its current status, with their screens' fields."""
        url = f"{self._issue_url(link)}/transitions"
        found = document(self.caller, send(self.caller, "GET", url, params={"expand": "transitions.fields"}))
        offered = found.get("transitions") if isinstance(found, dict) else None
        if not isinstance(offered, list):
            raise self.caller.error("the transitions answer has no transitions list", "bad_response")
        return [t for t in offered if isinstance(t, dict)]

    # --- helpers -----------------------------------------------------------------------------

    def _claim(self, link: IncidentLink, correlation: str) -> None:
        """Set the `recoverlink` property; only confirms ownership, so a failure is logged, not raised."""
        url = f"{self._issue_url(link)}/properties/{PROPERTY_KEY}"
        try:
            no_content(self.caller, send(self.caller, "PUT", url, body={"correlation_id": correlation}))
        except DependencyError as exc:
            log.warning(
                "jira did not store the ownership property",
                extra={"incident": link.number, "error": str(exc)},
            )

    def _owner(self, issue: Mapping[str, Any]) -> str | None:
        """The correlation id the issue's `recoverlink` property names; None when it has none."""
        key = self._key(str(issue.get("key", "")))
        answer = send(self.caller, "GET", f"{self.api_url}/issue/{key}/properties/{PROPERTY_KEY}")
        if answer.status == 404:
            return None
        found = document(self.caller, answer)
        value = found.get("value") if isinstance(found, dict) else None
        owner = value.get("correlation_id") if isinstance(value, dict) else None
        return owner if isinstance(owner, str) else ""  # "": claimed, but not in our shape

    def _target_status(self, transition: Mapping[str, Any]) -> IncidentStatus | None:
        target = transition.get("to")
        if not isinstance(target, dict) or not isinstance(target.get("name"), str):
            return None
        category = target.get("statusCategory")
        key = category.get("key") if isinstance(category, dict) else None
        return status_of(target["name"], key if isinstance(key, str) else None, self.config.states)

    def _status(self, issue: Mapping[str, Any]) -> IncidentStatus | None:
        try:
            return issue_status(issue, self.config)[0]
        except IssueInvalid as exc:
            raise self.caller.error(f"bad issue: {exc}", "bad_response") from exc

    def _issues(self, found: Any) -> list[dict[str, Any]]:
        issues = found.get("issues") if isinstance(found, dict) else None
        if not isinstance(issues, list):
            raise self.caller.error("the search answer has no issues list", "bad_response")
        return [issue for issue in issues if isinstance(issue, dict)]

    def _link(self, issue: Mapping[str, Any]) -> IncidentLink:
        key = issue.get("key")
        if not isinstance(key, str) or not is_issue_key(key):
            raise self.caller.error(f"the answer has no issue key (got {key!r})", "bad_response")
        return IncidentLink(system=SYSTEM, id=key, number=key, url=f"{self.base_url}/browse/{key}")

    def _change(self, issue: Mapping[str, Any]) -> IncidentChange:
        try:
            return issue_change(issue, self.config)
        except IssueInvalid as exc:
            raise self.caller.error(f"bad issue: {exc}", "bad_response") from exc

    def _issue_url(self, link: IncidentLink) -> str:
        return f"{self.api_url}/issue/{self._key(link.id)}"

    def _key(self, key: str) -> str:
        if not is_issue_key(key):
            raise self.caller.error(f"{key!r} is not an issue key", "bad_request")
        return key

    def _label(self, correlation: str) -> str:
        try:
            return correlation_label(correlation)
        except ValueError as exc:
            raise self.caller.error(str(exc), "bad_request") from exc
