"""Read Backstage `catalog-info.yaml` files (REFERENCE.md 6) into catalog drafts, every problem at its line.

Several entities per file, as `---` documents. Component, Resource and System become catalog entries and
Group becomes a team; other kinds (API, User, Domain, Location, ...) need only a valid envelope and are
otherwise ignored. These files belong to Backstage, so keys we do not read are ignored, not refused.
Which annotation carries which field is configurable (`BackstageAnnotations`): Backstage has no standard
for tiers or ITSM routing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from recoverlink.config.catalog_file import ITSM_SYSTEMS
from recoverlink.config.catalog_refs import (
    GROUP,
    CatalogSource,
    Declaration,
    EntityDraft,
    EntityName,
    Namespace,
    NodeContext,
    TeamDraft,
)
from recoverlink.config.model import BackstageAnnotations
from recoverlink.config.yamlfile import YamlMap, YamlSeq, parse_documents, validate
from recoverlink.domain.catalog import (
    DEFAULT_NAMESPACE,
    CatalogEntry,
    EntityKind,
    ItsmRouting,
    SourceLocation,
    Team,
)
from recoverlink.domain.errors import ConfigError, ConfigErrors

API_VERSIONS = ("backstage.io/v1alpha1", "backstage.io/v1beta1")
PLACEHOLDERS = ("$text", "$json", "$yaml")
Loc = tuple[int | str, ...]


def _compound_ref(value: object) -> object:
    """Backstage's compound form `{kind, namespace, name}`, rewritten as the string form."""
    if not isinstance(value, Mapping):
        return value
    if "name" not in value or set(value) - {"kind", "namespace", "name"}:
        raise ValueError("a compound reference has 'name' and optionally 'kind' and 'namespace'")
    kind, namespace = value.get("kind"), value.get("namespace")
    return f"{f'{kind}:' if kind else ''}{f'{namespace}/' if namespace else ''}{value['name']}"


RefText = Annotated[str, BeforeValidator(_compound_ref), StringConstraints(min_length=1)]
Text = Annotated[str, StringConstraints(min_length=1)]


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class EnvelopeMetadata(Lenient):
    name: EntityName
    namespace: Namespace = DEFAULT_NAMESPACE


class Envelope(Lenient):
    """What every entity needs, whatever its kind."""

    apiVersion: Text
    kind: Text
    metadata: EnvelopeMetadata


class Link(Lenient):
    url: Text
    type: str | None = None


class Metadata(EnvelopeMetadata):
    title: str | None = None
    description: str = ""
    annotations: dict[str, str] = Field(default_factory=dict)
    links: list[Link] = Field(default_factory=list)


class SystemSpec(Lenient):
    owner: RefText


class ResourceSpec(SystemSpec):
    type: Text
    system: RefText | None = None
    dependsOn: list[RefText] = Field(default_factory=list)


class ComponentSpec(ResourceSpec):
    lifecycle: Text


class Profile(Lenient):
    displayName: str | None = None
    email: str | None = None


class GroupSpec(Lenient):
    type: Text
    children: list[RefText]
    profile: Profile = Field(default_factory=Profile)


S = TypeVar("S", bound=BaseModel)


class Entity(Lenient, Generic[S]):
    apiVersion: str
    kind: str
    metadata: Metadata
    spec: S


ENTITIES: dict[str, type[Entity[Any]]] = {
    "component": Entity[ComponentSpec],
    "resource": Entity[ResourceSpec],
    "system": Entity[SystemSpec],
    "group": Entity[GroupSpec],
}


def read_backstage_file(path: Path, annotations: BackstageAnnotations) -> CatalogSource:
    """Read one `catalog-info.yaml`; problems are collected in the result, not raised."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return CatalogSource(str(path), errors=[ConfigError(str(path), f"cannot read file: {exc.strerror}")])
    return parse_backstage(text, str(path), annotations)


def parse_backstage(text: str, name: str, annotations: BackstageAnnotations) -> CatalogSource:
    """Parse every `---` document of one Backstage file into teams, entity drafts and declarations."""
    source = CatalogSource(name)
    for node in _documents(text, source):
        _read_entity(_Document(source, node, annotations))
    return source


def _documents(text: str, source: CatalogSource) -> Iterator[YamlMap]:
    for node in parse_documents(text, source.path, source.errors):
        if isinstance(node, YamlMap):
            yield node
        elif node is not None:
            line = node.line if isinstance(node, YamlSeq) else None
            source.errors.append(ConfigError(source.path, "an entity must be a mapping", line))


class _Document(NodeContext):
    """One entity document of a Backstage file."""

    def __init__(self, source: CatalogSource, node: YamlMap, keys: BackstageAnnotations) -> None:
        super().__init__(source, node)
        self.keys = keys
        self.start = SourceLocation(source.path, node.line)

    def validate(self, model: type[S]) -> S | None:
        try:
            return validate(model, self.node, self.source.path)
        except ConfigErrors as exc:
            self.source.errors.extend(exc.errors)
            return None


def _read_entity(doc: _Document) -> None:
    envelope = doc.validate(Envelope)
    if envelope is None:
        return
    kind, metadata = envelope.kind.lower(), envelope.metadata
    ref = f"{kind}:{metadata.namespace.lower()}/{metadata.name.lower()}"
    doc.source.declared.append(Declaration(ref, doc.start, metadata.name))
    if kind not in ENTITIES:
        return  # API, User, Domain, Location, ...: accepted, not used
    if envelope.apiVersion not in API_VERSIONS:
        hint = f"{envelope.kind} is a Backstage kind of {' or '.join(API_VERSIONS)}"
        doc.error(("apiVersion",), f'unsupported apiVersion "{envelope.apiVersion}"', hint)
        return
    if _report_placeholders(doc):
        return
    entity = doc.validate(ENTITIES[kind])
    if entity is None:
        return
    if isinstance(entity.spec, GroupSpec):
        doc.source.teams.append(_team(doc, ref, entity.metadata, entity.spec))
    else:
        doc.source.entities.append(_entity_draft(doc, ref, EntityKind(kind), entity.metadata, entity.spec))


def _report_placeholders(doc: _Document) -> bool:
    """`$text`/`$json`/`$yaml` are substituted by the Backstage backend only; we read files as written."""
    found: list[ConfigError] = []
    stack: list[Any] = [doc.node]
    while stack:
        node = stack.pop()
        if isinstance(node, YamlMap):
            for key, value in node.items():
                if key in PLACEHOLDERS:
                    line, col = node.key_marks[key]
                    message = f'unsupported placeholder "{key}": only the Backstage backend substitutes it'
                    hint = "write the value into the file: recoverlink reads it as it is"
                    found.append(ConfigError(doc.source.path, message, line, col, hint))
                stack.append(value)
        elif isinstance(node, YamlSeq):
            stack.extend(node)
    doc.source.errors.extend(sorted(found, key=lambda error: (error.line or 0, error.col or 0)))
    return bool(found)


def _team(doc: _Document, ref: str, metadata: Metadata, spec: GroupSpec) -> TeamDraft:
    name = metadata.name
    if metadata.namespace.lower() != DEFAULT_NAMESPACE:
        name = f"{metadata.namespace}/{metadata.name}"
    contacts = {"email": spec.profile.email} if spec.profile.email else {}
    display_name = spec.profile.displayName or metadata.title or ""
    return TeamDraft(ref, Team(name, display_name, contacts, doc.start))


def _entity_draft(
    doc: _Document, ref: str, kind: EntityKind, metadata: Metadata, spec: SystemSpec
) -> EntityDraft:
    namespace, keys, notes = metadata.namespace, doc.keys, metadata.annotations
    system = spec.system if isinstance(spec, ResourceSpec) else None
    depends_on = spec.dependsOn if isinstance(spec, ResourceSpec) else []
    dependencies = (doc.ref(("spec", "dependsOn", i), t, None, namespace) for i, t in enumerate(depends_on))
    entry = CatalogEntry(
        ref=ref,
        name=metadata.name,
        kind=kind,
        tier=notes.get(keys.tier),
        lifecycle=spec.lifecycle if isinstance(spec, ComponentSpec) else None,
        journeys=_split(notes.get(keys.journeys)),
        segments=_split(notes.get(keys.segments)),
        runbook_url=notes.get(keys.runbook_url) or _link(metadata.links, "runbook"),
        dashboard_url=notes.get(keys.dashboard_url) or _link(metadata.links, "dashboard"),
        itsm=_itsm(doc, notes),
        impact_sources=_split(notes.get(keys.impact_sources)),
        description=metadata.description,
        selector=doc.selector(_annotation(keys.alert_selector), notes.get(keys.alert_selector)),
        source=doc.start,
    )
    return EntityDraft(
        entry,
        owner=doc.ref(("spec", "owner"), spec.owner, GROUP, namespace),
        system=doc.ref(("spec", "system"), system, EntityKind.SYSTEM.value, namespace),
        depends_on=tuple(d for d in dependencies if d is not None),
        verified_by=doc.ref(_annotation(keys.verified_by), notes.get(keys.verified_by), GROUP, namespace),
    )


def _annotation(key: str) -> Loc:
    return ("metadata", "annotations", key)


def _split(text: str | None) -> tuple[str, ...]:
    """A comma-separated annotation value as a tuple, blanks dropped."""
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def _link(links: Sequence[Link], link_type: str) -> str | None:
    return next((link.url for link in links if (link.type or "").lower() == link_type), None)


def _itsm(doc: _Document, notes: Mapping[str, str]) -> ItsmRouting:
    keys = doc.keys
    system = notes.get(keys.itsm_system)
    if system is not None and system not in ITSM_SYSTEMS:
        hint = f"one of {', '.join(ITSM_SYSTEMS)}"
        doc.error(_annotation(keys.itsm_system), f'unknown ITSM system "{system}"', hint)
        system = None
    return ItsmRouting(
        system=system,
        assignment_group=notes.get(keys.assignment_group),
        project=notes.get(keys.project),
        queue=notes.get(keys.queue),
        ci=notes.get(keys.ci),
    )
