"""An impact source that is one GET or POST to a JSON API (a CRM, the contact center, billing).

The URL, parameters, headers and body are sandboxed templates over the recovery's context, so a
rendered URL is checked against `impact.allowed_hosts` on every call, after requests has
normalised it (the host it will really connect to). Redirects are never followed: a redirect to
another host would bypass that check. JMESPath expressions pick the counts (numbers) and facts
(strings, or lists of strings and numbers) out of the answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

from recoverlink.adapters.http_calls import Caller, excerpt, is_number
from recoverlink.config.impact import host_of, is_allowed_host
from recoverlink.domain.errors import DependencyError
from recoverlink.domain.impact import FactKind, ImpactReading, bounded_facts
from recoverlink.domain.rules import Template

_TEMPLATE_MARKS = ("{", "}", "%")


@dataclass(frozen=True)
class Expression:
    """A compiled JMESPath expression and the text it came from (for messages)."""

    source: str
    parsed: ParsedResult

    def search(self, document: Any) -> Any:
        return self.parsed.search(document)


@dataclass(frozen=True)
class HttpImpactSource:
    """A configured HTTP lookup; `read` renders the request over the recovery's context and sends it."""

    name: str
    target: str
    method: str
    url: Template
    params: Mapping[str, Template]
    headers: Mapping[str, Template]
    body: Mapping[str, Template] | None
    counts: Mapping[str, Expression]
    facts: Mapping[FactKind, Expression]
    allowed_hosts: tuple[str, ...]
    thresholds: Mapping[str, float]
    repeat_contacts_count: str | None
    caller: Caller

    def read(self, context: Mapping[str, Any]) -> ImpactReading:
        answer = self.caller.send(self._request(context))
        if not answer.ok:
            raise self.caller.status_failure(answer)
        document = self.caller.json_document(answer)
        return ImpactReading(counts=self._counts(document), facts=self._facts(document))

    def _request(self, context: Mapping[str, Any]) -> requests.PreparedRequest:
        """Render every part, and refuse a URL that does not go to an allowed host."""
        url = self.caller.render("url", self.url, context)
        self._check_host(url)
        prepared = self.caller.prepare(
            self.method,
            url,
            params=self._render_all("params", self.params, context),
            headers=self._render_all("headers", self.headers, context),
            json_body=None if self.body is None else self._render_all("body", self.body, context),
        )
        # requests may read a URL differently than urlsplit does (`http://a\@b/`): check its reading too.
        self._check_host(prepared.url or "")
        return prepared

    def _render_all(
        self, what: str, templates: Mapping[str, Template], context: Mapping[str, Any]
    ) -> dict[str, str]:
        return {key: self.caller.render(f"{what}.{key}", t, context) for key, t in templates.items()}

    def _check_host(self, url: str) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https") or not is_allowed_host(url, list(self.allowed_hosts)):
            where = f"{scheme}://{host_of(url)}" if scheme else repr(excerpt(url))
            raise self.caller.error(
                f"refusing to call {where}: only http(s) URLs to impact.allowed_hosts may be called",
                "host_not_allowed",
            )

    def _counts(self, document: Any) -> dict[str, float]:
        counts: dict[str, float] = {}
        for name, expression in self.counts.items():
            value = self._search(expression, document)
            if not is_number(value):
                raise self._bad(f"count {name} ({expression.source}) gave {_shown(value)}, not a number")
            counts[name] = float(value)
        return counts

    def _facts(self, document: Any) -> dict[FactKind, tuple[str, ...]]:
        found: dict[FactKind, list[object]] = {}
        for kind, expression in self.facts.items():
            value = self._search(expression, document)
            if value is None:
                continue
            if _is_fact_value(value):
                found[kind] = [value]
            elif isinstance(value, list) and all(_is_fact_value(item) for item in value):
                found[kind] = value
            else:
                raise self._bad(
                    f"fact {kind} ({expression.source}) gave {_shown(value)}, "
                    "not a string or a list of strings and numbers"
                )
        return bounded_facts(found)

    def _search(self, expression: Expression, document: Any) -> Any:
        try:
            return expression.search(document)
        except JMESPathError as exc:  # a function given the wrong types by this answer
            raise self._bad(f"{expression.source} failed on the answer: {excerpt(str(exc))}") from exc

    def _bad(self, what: str) -> DependencyError:
        return self.caller.error(what, "bad_response")


def lookup_target(name: str, url: str) -> str:
    """The rate-limit key of a lookup: the URL's host[:port] when that part is literal text.

    A URL whose host comes from a template has no host before it is rendered; its key is
    `source:<name>`, so the source is still limited as one target.
    """
    parts = urlsplit(url)
    if (
        parts.scheme in ("http", "https")
        and parts.netloc
        and not any(m in parts.netloc for m in _TEMPLATE_MARKS)
    ):
        return host_of(url)
    return f"source:{name}"


def _is_fact_value(value: object) -> bool:
    return isinstance(value, str) or is_number(value)


def _shown(value: object) -> str:
    return excerpt(json.dumps(value)) if value is not None else "nothing (null)"
