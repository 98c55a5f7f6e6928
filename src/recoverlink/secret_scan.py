"""`recoverlink check`'s warnings about secrets written into the YAML itself.

Secrets belong in files or environment variables (secret sources, `actions.credentials`); the
config model already refuses a password or token where it expects one. What it cannot refuse is a
literal token in a free-form place: an HTTP header, a URL's user info or query, a lookup's params.
These are warnings, not errors: the file still works, but it should not be committed as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

from recoverlink.config.model import Config
from recoverlink.domain.rules import Rule

SECRET_NAME = re.compile(
    r"(auth|token|secret|passw|api[-_]?key|apikey|signature|cookie|session)", re.IGNORECASE
)
_TEMPLATE = ("{{", "{%")


def _literal(value: str) -> bool:
    """A value written out, not rendered from the recovery (a template names no secret itself)."""
    return bool(value.strip()) and not any(marker in value for marker in _TEMPLATE)


def _in_url(url: str) -> list[str]:
    parts = urlsplit(url)
    found = []
    if parts.password:
        found.append("a password in the URL's user info")
    for name, value in parse_qsl(parts.query):
        if SECRET_NAME.search(name) and _literal(value):
            found.append(f"query parameter {name!r} looks like a secret")
    return found


def _in_pairs(what: str, pairs: Mapping[str, str]) -> list[str]:
    return [
        f"{what} {name!r} looks like a secret"
        for name, value in pairs.items()
        if SECRET_NAME.search(name) and _literal(value)
    ]


def config_warnings(config: Config, name: str) -> list[str]:
    """Literal secrets in the config's impact lookups, Prometheus and ITSM URLs."""
    warnings = []
    places: list[tuple[str, list[str]]] = []
    if config.impact.prometheus is not None:
        places.append(("impact.prometheus.url", _in_url(config.impact.prometheus.url)))
    for source_name, source in config.impact.sources.items():
        if source.http is None:
            continue
        where = f"impact.sources.{source_name}.http"
        places.append((f"{where}.url", _in_url(source.http.url)))
        places.append((f"{where}.headers", _in_pairs("header", source.http.headers)))
        places.append((f"{where}.params", _in_pairs("parameter", source.http.params)))
    for system in config.itsm.configured():
        settings = config.itsm.system(system)
        if settings is not None:
            places.append((f"itsm.{system}.url", _in_url(settings.url)))
    for where, found in places:
        warnings += [f"{name}: {where}: {text}: use a secret source (file or env) instead" for text in found]
    return warnings


def rule_warnings(rules: Iterable[Rule]) -> list[str]:
    """Literal secrets in the rules' actions (URL, headers)."""
    warnings = []
    for rule in rules:
        for action in rule.actions:
            where = str(action.source) if action.source is not None else rule.name
            found = _in_url(action.url.source) if action.url is not None else []
            found += _in_pairs("header", {k: t.source for k, t in action.headers.items()})
            warnings += [
                f"{where}: action {action.ref}: {text}: use actions.credentials with a secret source"
                for text in found
            ]
    return warnings
