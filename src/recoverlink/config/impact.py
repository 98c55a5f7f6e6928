"""The `impact:` section: impact sources (PromQL, HTTP lookups) and how often the worker runs them.

Catalog entries name sources (`impact_sources: [checkout-failures]`); `recoverlink check` refuses a
name that is not defined here. Queries, URLs, parameters, headers and bodies are sandboxed Jinja2
templates over the recovery's context (see README, "Impact sources").
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from recoverlink.config.base import BasicAuth, SecretSource, Strict
from recoverlink.config.durations import Duration
from recoverlink.domain.impact import FactKind

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_COUNT = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def host_of(url: str) -> str:
    """`host` or `host:port` of a URL, lower case: what `allowed_hosts` lists."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


def is_allowed_host(url: str, allowed: list[str]) -> bool:
    """Whether a (rendered) URL goes to a host that config allows."""
    wanted = {h.lower() for h in allowed}
    host = host_of(url)
    return bool(host) and (host in wanted or host.split(":")[0] in wanted)


def _is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid URL {value!r} (expected http:// or https:// with a host)")
    return value


def _count_name(value: str) -> str:
    if not _COUNT.match(value):
        raise ValueError(f"invalid count name {value!r} (letters, digits and '_', like a metric name)")
    return value


def _method(value: str) -> str:
    upper = value.upper()
    if upper not in ("GET", "POST"):
        raise ValueError(f"method must be GET or POST, not {value!r}")
    return upper


class HttpAuth(Strict):
    """How a call authenticates: a bearer token, basic auth, or neither (secrets from files or env)."""

    bearer: SecretSource | None = None
    basic: BasicAuth | None = None

    @model_validator(mode="after")
    def _at_most_one(self) -> Self:
        if self.bearer is not None and self.basic is not None:
            raise ValueError("give at most one of 'bearer' or 'basic'")
        return self


class PrometheusServer(Strict):
    """The Prometheus that `prometheus` sources query (its HTTP API, `/api/v1/query`)."""

    url: str
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    auth: HttpAuth = Field(default_factory=HttpAuth)

    _check_url = field_validator("url")(http_url)


class PrometheusLookup(Strict):
    """An instant PromQL query. The samples' values add up to the count `count`; the labels named in
    `facts` become impact facts, from the samples whose value is above zero."""

    query: str = Field(min_length=1)
    count: str = "value"
    facts: dict[str, FactKind] = Field(default_factory=dict, description="result label -> fact kind")

    _check_count = field_validator("count")(_count_name)


class HttpLookup(Strict):
    """A GET or POST to a JSON API; JMESPath expressions pick counts and facts out of the answer."""

    url: str
    method: str = "GET"
    params: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    body: dict[str, str] | None = Field(default=None, description="a JSON object of templates (POST)")
    auth: HttpAuth = Field(default_factory=HttpAuth)
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    counts: dict[str, str] = Field(min_length=1, description="count name -> JMESPath giving a number")
    facts: dict[FactKind, str] = Field(default_factory=dict, description="fact kind -> JMESPath")

    _check_method = field_validator("method")(_method)

    @field_validator("counts")
    @classmethod
    def _count_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            _count_name(name)
        return value


class ImpactSourceConfig(Strict):
    """One named source: exactly one of `prometheus` or `http`, and when its counts mean impact."""

    prometheus: PrometheusLookup | None = None
    http: HttpLookup | None = None
    thresholds: dict[str, float] = Field(
        min_length=1, description="count name -> customers are affected above this value"
    )
    repeat_contacts: str | None = Field(
        default=None,
        description="the count that measures repeat contacts (checked 24 h and 48 h after close)",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.prometheus is None) == (self.http is None):
            raise ValueError("give exactly one of 'prometheus' or 'http'")
        counts = self.count_names()
        for name in [*self.thresholds, *([self.repeat_contacts] if self.repeat_contacts else [])]:
            if name not in counts:
                raise ValueError(f"unknown count {name!r}; this source measures: {', '.join(sorted(counts))}")
        return self

    def count_names(self) -> set[str]:
        if self.prometheus is not None:
            return {self.prometheus.count}
        assert self.http is not None
        return set(self.http.counts)


class ImpactConfig(Strict):
    prometheus: PrometheusServer | None = None
    allowed_hosts: list[str] = Field(
        default_factory=list, description="host or host:port that `http` sources may call; nothing else"
    )
    lookup_every: Duration = Field(
        default=timedelta(minutes=1), description="re-read sources of a recovery with no impact yet"
    )
    verify_every: Duration = Field(
        default=timedelta(minutes=1), description="re-read sources after the fix until back to normal"
    )
    verify_timeout: Duration = Field(
        default=timedelta(hours=1), description="give up verifying after this long: 'unverified'"
    )
    sources: dict[str, ImpactSourceConfig] = Field(default_factory=dict)

    @field_validator("sources")
    @classmethod
    def _source_names(cls, value: dict[str, ImpactSourceConfig]) -> dict[str, ImpactSourceConfig]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"invalid source name {name!r} (letters, digits, '-', '_', '.')")
        return value

    def longest_timeout_seconds(self) -> float:
        """The longest a single impact call may take."""
        timeouts = [s.http.timeout_seconds for s in self.sources.values() if s.http is not None]
        if self.prometheus is not None:
            timeouts.append(self.prometheus.timeout_seconds)
        return max(timeouts, default=0.0)

    @model_validator(mode="after")
    def _references(self) -> Self:
        uses_prometheus = [n for n, s in self.sources.items() if s.prometheus is not None]
        if uses_prometheus and self.prometheus is None:
            raise ValueError(
                f"sources {', '.join(uses_prometheus)} query Prometheus: set 'impact.prometheus.url'"
            )
        allowed = {h.lower() for h in self.allowed_hosts}
        for name, source in self.sources.items():
            if source.http is not None and not _is_template(source.http.url):
                host = host_of(source.http.url)
                if host not in allowed and host.split(":")[0] not in allowed:
                    raise ValueError(f"source {name!r} calls {host}, which is not in 'impact.allowed_hosts'")
        return self
