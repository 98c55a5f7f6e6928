"""Impact-source adapters: PromQL queries and HTTP JSON lookups, built from the `impact:` config.

`build_impact_sources` does everything that can fail before the first call, once: it compiles the
templates and JMESPath expressions and reads the secrets, and reports every problem at once as
`ConfigErrors` naming `impact.sources.<name>.<field>`. The sources it returns only do I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import jmespath
import requests
from jinja2 import TemplateSyntaxError
from jmespath.exceptions import ArityError, JMESPathError, UnknownFunctionError
from jmespath.parser import ParsedResult

from recoverlink.adapters.http_calls import Caller, utc_now
from recoverlink.adapters.impact.http import Expression, HttpImpactSource, lookup_target
from recoverlink.adapters.impact.prometheus import PrometheusImpactSource
from recoverlink.config.impact import HttpAuth, HttpLookup, ImpactConfig, ImpactSourceConfig, PrometheusLookup
from recoverlink.config.secrets import read_secret
from recoverlink.config.templates import TemplateCompiler
from recoverlink.domain.errors import ConfigError, ConfigErrors
from recoverlink.domain.impact import FactKind, ImpactSource
from recoverlink.domain.rules import Constant, Template

__all__ = ["HttpImpactSource", "PrometheusImpactSource", "build_impact_sources"]


def build_impact_sources(
    config: ImpactConfig,
    environ: Mapping[str, str],
    compiler: TemplateCompiler | None = None,
    session: requests.Session | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    read_secrets: bool = True,
) -> dict[str, ImpactSource]:
    """One adapter per configured source, all sharing one HTTP session; `clock` dates Retry-After.

    `read_secrets=False` only compiles (what `recoverlink check` does where secrets are absent)."""
    builder = _Builder(
        config=config,
        environ=environ,
        compiler=compiler or TemplateCompiler(),
        session=session or requests.Session(),
        clock=clock or utc_now,
        read_secrets=read_secrets,
    )
    sources = {name: builder.source(name, source) for name, source in config.sources.items()}
    if builder.errors:
        raise ConfigErrors(builder.errors)
    return sources


@dataclass
class _Builder:
    """Compiles one config in one pass, collecting every error; placeholders keep the pass going."""

    config: ImpactConfig
    environ: Mapping[str, str]
    compiler: TemplateCompiler
    session: requests.Session
    clock: Callable[[], datetime]
    read_secrets: bool = True
    errors: list[ConfigError] = field(default_factory=list)
    # The Prometheus server's Authorization header: read once, for every PromQL source.
    prometheus_authorization: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        server = self.config.prometheus
        if server is not None and any(s.prometheus is not None for s in self.config.sources.values()):
            self.prometheus_authorization = self._authorization(server.auth, "impact.prometheus.auth")

    def source(self, name: str, source: ImpactSourceConfig) -> ImpactSource:
        if source.prometheus is not None:
            return self._prometheus_source(name, source, source.prometheus)
        assert source.http is not None  # the model guarantees exactly one kind
        return self._http_source(name, source, source.http)

    def _prometheus_source(
        self, name: str, source: ImpactSourceConfig, lookup: PrometheusLookup
    ) -> PrometheusImpactSource:
        server = self.config.prometheus
        assert server is not None  # the model refuses PromQL sources without a server
        return PrometheusImpactSource(
            name=name,
            server_url=server.url,
            query=self._template(f"impact.sources.{name}.prometheus.query", lookup.query),
            count=lookup.count,
            fact_labels=dict(lookup.facts),
            thresholds=dict(source.thresholds),
            repeat_contacts_count=source.repeat_contacts,
            caller=self._caller(name, server.timeout_seconds, self.prometheus_authorization),
        )

    def _http_source(self, name: str, source: ImpactSourceConfig, lookup: HttpLookup) -> HttpImpactSource:
        where = f"impact.sources.{name}.http"
        return HttpImpactSource(
            name=name,
            target=lookup_target(name, lookup.url),
            method=lookup.method,
            url=self._template(f"{where}.url", lookup.url),
            params=self._templates(f"{where}.params", lookup.params),
            headers=self._templates(f"{where}.headers", lookup.headers),
            body=None if lookup.body is None else self._templates(f"{where}.body", lookup.body),
            counts={n: self._expression(f"{where}.counts.{n}", e) for n, e in lookup.counts.items()},
            facts={FactKind(k): self._expression(f"{where}.facts.{k}", e) for k, e in lookup.facts.items()},
            allowed_hosts=tuple(self.config.allowed_hosts),
            thresholds=dict(source.thresholds),
            repeat_contacts_count=source.repeat_contacts,
            caller=self._caller(
                name, lookup.timeout_seconds, self._authorization(lookup.auth, f"{where}.auth")
            ),
        )

    def _caller(self, name: str, timeout_seconds: float, authorization: str | None) -> Caller:
        return Caller(
            who=f"impact source {name}",
            session=self.session,
            timeout_seconds=timeout_seconds,
            authorization=authorization,
            clock=self.clock,
        )

    def _authorization(self, auth: HttpAuth, where: str) -> str | None:
        """The Authorization header value, from a file or the environment; None without auth."""
        if not self.read_secrets:
            return None
        try:
            if auth.bearer is not None:
                return "Bearer " + read_secret(auth.bearer, self.environ, f"{where}.bearer")
            if auth.basic is not None:
                password = read_secret(auth.basic.password, self.environ, f"{where}.basic.password")
                pair = f"{auth.basic.username}:{password}".encode()
                return "Basic " + base64.b64encode(pair).decode("ascii")
        except ConfigErrors as exc:
            self.errors.extend(exc.errors)
        return None

    def _templates(self, where: str, texts: Mapping[str, str]) -> dict[str, Template]:
        return {key: self._template(f"{where}.{key}", text) for key, text in texts.items()}

    def _template(self, where: str, text: str) -> Template:
        try:
            return self.compiler.compile(text)
        except TemplateSyntaxError as exc:
            line = f" (line {exc.lineno} of the template)" if "\n" in text.strip() else ""
            message = f"template syntax error{line}: {exc.message or exc}"
            self.errors.append(ConfigError(where, message, hint="templates are Jinja2: {{ labels.x }}"))
            return Constant(text)

    def _expression(self, where: str, text: str) -> Expression:
        try:
            parsed = jmespath.compile(text)
        except JMESPathError as exc:
            self.errors.append(
                ConfigError(where, f"invalid JMESPath expression {text!r}: {_first_line(exc)}")
            )
            return Expression(text, jmespath.compile("`null`"))
        if (problem := _trial_error(parsed)) is not None:
            self.errors.append(ConfigError(where, f"invalid JMESPath expression {text!r}: {problem}"))
        return Expression(text, parsed)


def _trial_error(parsed: ParsedResult) -> str | None:
    """Unknown functions and wrong argument counts only show when evaluated: try an empty document.

    Not every one shows (a short-circuited branch is not evaluated), but the usual typo does.
    """
    try:
        parsed.search({})
    except (UnknownFunctionError, ArityError) as exc:
        return _first_line(exc)
    except JMESPathError:
        return None  # a type error on an empty document says nothing about a real answer
    return None


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0].rstrip(":") if str(exc) else type(exc).__name__
