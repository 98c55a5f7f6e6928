"""Entity references and what one catalog file declares before its references are resolved.

Both catalog sources (our YAML and Backstage `catalog-info.yaml`) turn into a `CatalogSource`; the loader
then checks every `Reference` against everything declared, wherever it was declared.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator

from recoverlink.config.yamlfile import locate
from recoverlink.domain.catalog import DEFAULT_NAMESPACE, CatalogEntry, SourceLocation, Team
from recoverlink.domain.errors import ConfigError
from recoverlink.domain.matchers import Matcher, MatcherError, parse_matchers

GROUP = "group"
# Backstage's rules: names are [a-zA-Z0-9] runs joined by - _ . (<= 63); namespaces are DNS labels.
_NAME = re.compile(r"^[a-zA-Z0-9]+(?:[-_.][a-zA-Z0-9]+)*$")
_NAMESPACE = re.compile(r"^[a-zA-Z0-9]+(?:-+[a-zA-Z0-9]+)*$")
_KIND = re.compile(r"^[a-zA-Z][a-zA-Z0-9]*$")
EMPTY_SELECTOR_HINT = "leave it out to match the service label against the name"
REF_HINT = "write [<kind>:][<namespace>/]<name>, e.g. resource:payments-db"


def _entity_name(value: str) -> str:
    if not _NAME.match(value) or len(value) > 63:
        raise ValueError(f'invalid name "{value}": use letters and digits joined by -, _ or . (at most 63)')
    return value


def _namespace(value: str) -> str:
    if not _NAMESPACE.match(value) or len(value) > 63:
        raise ValueError(f'invalid namespace "{value}": letters, digits and - (at most 63)')
    return value


EntityName = Annotated[str, AfterValidator(_entity_name)]
Namespace = Annotated[str, AfterValidator(_namespace)]


class CatalogValueError(ValueError):
    """A value in a catalog file that cannot be read (a reference, a selector): message and hint."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def normalise_ref(text: str, default_kind: str | None, namespace: str = DEFAULT_NAMESPACE) -> str:
    """`[kind:][namespace/]name` to `kind:namespace/name` in lower case, as Backstage reads it.

    A missing kind takes `default_kind` (None: the kind is required, as for `dependsOn`); a missing
    namespace takes the referring entity's `namespace`. Raises CatalogValueError.
    """
    kind: str | None
    kind, sep, rest = text.partition(":")
    if not sep:
        kind, rest = default_kind, text
    ns, sep, name = rest.partition("/")
    if not sep:
        ns, name = namespace, rest
    return _checked(text, kind.strip() if kind is not None else None, ns.strip(), name.strip())


def _checked(text: str, kind: str | None, namespace: str, name: str) -> str:
    if kind is None:
        hint = f'write "component:{name}" or "resource:{name}"'
        raise CatalogValueError(f'reference "{text}" needs a kind', hint)
    if not _KIND.match(kind) or not _NAMESPACE.match(namespace) or not _NAME.match(name) or len(name) > 63:
        raise CatalogValueError(f'invalid entity reference "{text}"', REF_HINT)
    return f"{kind.lower()}:{namespace.lower()}/{name.lower()}"


def read_selector(text: str) -> tuple[Matcher, ...]:
    """A catalog selector: Alertmanager matchers. An empty one would place every alert, so it is refused."""
    try:
        matchers = parse_matchers(text)
    except MatcherError as exc:
        raise CatalogValueError(f"invalid selector: {exc}") from exc
    if not matchers:
        raise CatalogValueError("empty selector: it would match every alert", EMPTY_SELECTOR_HINT)
    return matchers


def ref_kind(ref: str) -> str:
    return ref.partition(":")[0]


def team_name(ref: str) -> str:
    """The name a Group ref gives its team: the plain name in `default`, else `namespace/name`."""
    namespace, _, name = ref.partition(":")[2].partition("/")
    return name if namespace == DEFAULT_NAMESPACE else f"{namespace}/{name}"


@dataclass(frozen=True)
class Reference:
    """A reference as written, normalised, with the place it was written."""

    ref: str
    text: str
    where: SourceLocation
    col: int | None = None

    def error(self, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(self.where.path, message, self.where.line, self.col, hint)


@dataclass(frozen=True)
class Declaration:
    """One entity a file names (any kind, even one that failed validation), for duplicates and existence."""

    ref: str
    where: SourceLocation
    display: str  # the name as written, for messages


@dataclass(frozen=True)
class TeamDraft:
    ref: str
    team: Team


@dataclass(frozen=True)
class EntityDraft:
    """A catalog entry whose owner, system, dependencies and verifier are still unresolved references."""

    entry: CatalogEntry
    owner: Reference | None = None
    system: Reference | None = None
    depends_on: tuple[Reference, ...] = ()
    verified_by: Reference | None = None


@dataclass
class CatalogSource:
    """What one file declares, and the problems found reading it."""

    path: str
    teams: list[TeamDraft] = field(default_factory=list)
    entities: list[EntityDraft] = field(default_factory=list)
    declared: list[Declaration] = field(default_factory=list)
    errors: list[ConfigError] = field(default_factory=list)


class NodeContext:
    """One YAML tree of a catalog file: reads references and selectors, reporting problems at their line."""

    def __init__(self, source: CatalogSource, node: Any) -> None:
        self.source, self.node = source, node

    def where(self, loc: Sequence[int | str]) -> SourceLocation:
        return SourceLocation(self.source.path, locate(self.node, loc)[0])

    def error(self, loc: Sequence[int | str], message: str, hint: str | None = None) -> None:
        line, col = locate(self.node, loc)
        self.source.errors.append(ConfigError(self.source.path, message, line, col, hint))

    def ref(
        self, loc: Sequence[int | str], text: str | None, default_kind: str | None, namespace: str
    ) -> Reference | None:
        """The reference at `loc`, normalised; None (and an error) when it cannot be read."""
        if text is None:
            return None
        line, col = locate(self.node, loc)
        try:
            ref = normalise_ref(text, default_kind, namespace)
        except CatalogValueError as exc:
            self.error(loc, exc.message, exc.hint)
            return None
        return Reference(ref, text, SourceLocation(self.source.path, line), col)

    def selector(self, loc: Sequence[int | str], text: str | None) -> tuple[Matcher, ...] | None:
        if text is None:
            return None
        try:
            return read_selector(text)
        except CatalogValueError as exc:
            self.error(loc, exc.message, exc.hint)
            return None
