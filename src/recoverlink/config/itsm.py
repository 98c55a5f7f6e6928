"""The `itsm:` section: which ITSM gets incidents, how to reach it, and how its states map to ours.

A catalog entry's `itsm.system` picks the system for its recoveries; `itsm.default` applies to the
rest (`none`: recoveries are tracked without an incident). Secrets come from files or the
environment, never from the YAML. Callbacks (`POST /webhook/itsm/<system>`) authenticate with
`callback_secret`: a bearer header, or for Jira an HMAC signature or `?secret=` in the URL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from recoverlink.config.base import BasicAuth, SecretSource, Strict
from recoverlink.config.durations import Duration
from recoverlink.config.impact import http_url
from recoverlink.domain.itsm import IncidentStatus

ItsmName = Literal["servicenow", "jira", "rt"]


class ItsmAuth(Strict):
    """Exactly one of: basic auth, a bearer token (OAuth access token, Jira PAT), an RT auth token."""

    basic: BasicAuth | None = None
    bearer: SecretSource | None = None
    token: SecretSource | None = Field(default=None, description="RT: `Authorization: token <value>`")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [name for name in ("basic", "bearer", "token") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'basic', 'bearer' or 'token'")
        return self


class _System(Strict):
    url: str
    auth: ItsmAuth
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    callback_secret: SecretSource | None = Field(
        default=None,
        description="what POST /webhook/itsm/<system> must present; callbacks are refused without",
    )
    # Which of the tool's states mean what; a state listed nowhere means nothing to recoverlink.
    states: dict[IncidentStatus, list[str]] = Field(default_factory=dict)

    _check_url = field_validator("url")(http_url)


def _states(**states: list[str]) -> dict[IncidentStatus, list[str]]:
    return {IncidentStatus(name): values for name, values in states.items()}


class ServiceNowConfig(_System):
    """ServiceNow Table API (REFERENCE.md 3)."""

    table: str = "incident"
    close_code: str = Field(default="Solved (Permanently)", description="sent when resolving")
    monitor_state: str = Field(default="3", description="the state of the `monitor` resolution policy")
    monitor_hold_reason: str | None = Field(default=None, description="hold_reason sent with state 3")
    caller_id: str | None = Field(default=None, description="a sys_user sys_id for caller_id")
    api_user: str | None = Field(
        default=None,
        description="the user_name of recoverlink's API user, so callbacks and polls of its own updates "
        "are recognised as echoes; default: the basic auth username",
    )
    states: dict[IncidentStatus, list[str]] = Field(
        default_factory=lambda: _states(
            new=["1"], in_progress=["2"], on_hold=["3"], resolved=["6"], closed=["7"], canceled=["8"]
        )
    )


class JiraTransitions(Strict):
    """Workflow transitions by name (their ids differ per workflow and are looked up each time)."""

    resolve: str = "Done"
    monitor: str | None = Field(default=None, description="for the `monitor` resolution policy")
    reopen: str = "Reopen"


class JiraConfig(_System):
    """Jira Cloud (REST v3, ADF) or Data Center (REST v2) (REFERENCE.md 4)."""

    flavor: Literal["cloud", "data_center"] = "cloud"
    project: str | None = Field(default=None, description="the project of services whose catalog names none")
    issue_type: str = "Incident"
    label: str = Field(default="recoverlink", description="on every issue; the callback JQL filters on it")
    transitions: JiraTransitions = Field(default_factory=JiraTransitions)
    resolution: str | None = Field(
        default="Done", description="set on the resolve transition, if on its screen"
    )
    wont_fix_resolutions: list[str] = Field(
        default_factory=lambda: ["Won't Fix", "Won't Do", "Duplicate", "Cannot Reproduce"],
        description="an issue closed with one of these cancels the recovery and is never reopened",
    )
    priorities: dict[str, str] = Field(
        default_factory=lambda: {"P1": "Highest", "P2": "High", "P3": "Medium", "P4": "Low", "P5": "Lowest"}
    )
    states: dict[IncidentStatus, list[str]] = Field(
        default_factory=lambda: _states(new=["new"], in_progress=["indeterminate"], resolved=["done"]),
        description="status category keys (new, indeterminate, done) or status names",
    )
    api_user: str | None = Field(
        default=None,
        description="the accountId (Cloud) or user name (Data Center) of recoverlink's API user, so "
        "webhooks of its own changes are recognised as echoes; default on Data Center: the basic "
        "auth username",
    )
    jql_time_zone: str = Field(
        default="UTC", description="the time zone of the API user's Jira profile, in which JQL reads dates"
    )

    @field_validator("jql_time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name such as UTC or Europe/Berlin)"
            ) from exc
        return value


class RtConfig(_System):
    """Request Tracker 5 REST2 (REFERENCE.md 5)."""

    queue: str = Field(default="General", description="the queue of services whose catalog names none")
    custom_field: str = "CorrelationId"
    requestor: str | None = None
    monitor_status: str = "stalled"
    api_user: str | None = Field(
        default=None,
        description="the RT user name recoverlink acts as, so callbacks and polls of its own changes are "
        "recognised as echoes; default: the basic auth username",
    )
    ticketsql_time_zone: str = Field(
        default="UTC",
        description="the time zone RT reads TicketSQL dates in: the API user's time zone preference, "
        "else RT's $Timezone (on Debian the system's)",
    )
    priorities: dict[str, int] = Field(
        default_factory=lambda: {"P1": 100, "P2": 75, "P3": 50, "P4": 25, "P5": 0},
        description="RT's numeric Priority (0 low .. 100 high) per recoverlink priority; others: the queue's",
    )
    states: dict[IncidentStatus, list[str]] = Field(
        default_factory=lambda: _states(
            new=["new"],
            in_progress=["open"],
            on_hold=["stalled"],
            resolved=["resolved"],
            canceled=["rejected", "deleted"],
        )
    )

    @field_validator("ticketsql_time_zone")
    @classmethod
    def _known_ticketsql_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name such as UTC or Europe/Berlin)"
            ) from exc
        return value


class ItsmConfig(Strict):
    default: Literal["none", "servicenow", "jira", "rt"] = Field(
        default="none", description="the system of services whose catalog entry names none"
    )
    servicenow: ServiceNowConfig | None = None
    jira: JiraConfig | None = None
    rt: RtConfig | None = None
    poll_every: Duration = Field(
        default=timedelta(minutes=2),
        description="reconciliation: read recent changes in case a callback was lost",
    )

    @model_validator(mode="after")
    def _default_is_configured(self) -> Self:
        if self.default != "none" and self.system(self.default) is None:
            raise ValueError(f"itsm.default is {self.default!r} but 'itsm.{self.default}' is not configured")
        return self

    def system(self, name: str) -> ServiceNowConfig | JiraConfig | RtConfig | None:
        value: ServiceNowConfig | JiraConfig | RtConfig | None = getattr(self, name, None)
        return value

    def configured(self) -> list[str]:
        return [name for name in ("servicenow", "jira", "rt") if self.system(name) is not None]

    def longest_timeout_seconds(self) -> float:
        return max((s.timeout_seconds for n in self.configured() if (s := self.system(n))), default=0.0)
