"""recoverlink's own catalog files (`deploy/catalog.yaml`): strict models, read into catalog drafts.

`deploy/catalog.yaml` documents every key. References stay unresolved here; `catalog_loader` checks
them against every catalog file at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, Field, StringConstraints, ValidationError

from recoverlink.config.base import Strict
from recoverlink.config.catalog_refs import (
    EMPTY_SELECTOR_HINT,
    GROUP,
    CatalogSource,
    CatalogValueError,
    Declaration,
    EntityDraft,
    EntityName,
    NodeContext,
    TeamDraft,
    normalise_ref,
)
from recoverlink.config.yamlfile import load_yaml, validate
from recoverlink.domain.catalog import DEFAULT_NAMESPACE, CatalogEntry, EntityKind, ItsmRouting, Team
from recoverlink.domain.errors import ConfigErrors
from recoverlink.domain.matchers import Matcher, MatcherError, parse_matcher

ItsmSystem = Literal["servicenow", "jira", "rt"]
ITSM_SYSTEMS: tuple[str, ...] = get_args(ItsmSystem)


def _url(value: str) -> str:
    if not re.fullmatch(r"https?://\S+", value):
        raise ValueError(f'"{value}" is not an http(s) URL')
    return value


Url = Annotated[str, AfterValidator(_url)]
Text = Annotated[str, StringConstraints(min_length=1)]
Loc = tuple[int | str, ...]


class ContactsModel(Strict):
    email: Text | None = None
    chat: Text | None = None  # a channel, e.g. "#payments-oncall"
    pager: Text | None = None  # an on-call schedule or escalation policy


class TeamModel(Strict):
    name: EntityName
    display_name: str = ""
    contacts: ContactsModel = Field(default_factory=ContactsModel)


class ItsmModel(Strict):
    system: ItsmSystem | None = None
    assignment_group: Text | None = None
    project: Text | None = None
    queue: Text | None = None
    ci: Text | None = None


class ServiceModel(Strict):
    name: EntityName
    kind: Literal["component", "resource", "system"] = "component"
    owner: Text  # a team name, or a Group ref
    tier: Text | None = None
    lifecycle: Text | None = None
    system: Text | None = None  # a System name or ref
    depends_on: list[Text] = Field(default_factory=list)  # refs; a bare name is component:default/<name>
    journeys: list[Text] = Field(default_factory=list)
    segments: list[Text] = Field(default_factory=list)
    runbook_url: Url | None = None
    dashboard_url: Url | None = None
    itsm: ItsmModel = Field(default_factory=ItsmModel)
    impact_sources: list[Text] = Field(default_factory=list)
    verified_by: Text | None = None  # a team name, or a Group ref
    selector: str | list[str] | None = None  # Alertmanager matchers; default: service="<name>"
    description: str = ""


class CatalogFileModel(Strict):
    teams: list[TeamModel] = Field(default_factory=list)
    services: list[ServiceModel] = Field(default_factory=list)


def read_catalog_file(path: Path) -> CatalogSource:
    """Read one recoverlink catalog file; problems are collected in the result, not raised.

    A team or service that fails validation is still declared, so references to it add no second error.
    """
    source = CatalogSource(str(path))
    try:
        node = load_yaml(path)
    except ConfigErrors as exc:
        source.errors.extend(exc.errors)
        return source
    ctx = NodeContext(source, node)
    try:
        model = validate(CatalogFileModel, node, source.path)
    except ConfigErrors as exc:
        source.errors.extend(exc.errors)
    else:
        # Valid as a whole: every item is valid, so read the validated items without validating again.
        for i, team in enumerate(model.teams):
            _add_team(ctx, ("teams", i), team)
        for i, service in enumerate(model.services):
            source.entities.append(_service(ctx, ("services", i), service))
        return source
    for i, item in enumerate(_items(node, "teams")):
        try:
            _add_team(ctx, ("teams", i), TeamModel.model_validate(item))
        except ValidationError:
            _declare_broken(ctx, ("teams", i), item, GROUP)
    for i, item in enumerate(_items(node, "services")):
        try:
            source.entities.append(_service(ctx, ("services", i), ServiceModel.model_validate(item)))
        except ValidationError:
            _declare_broken(ctx, ("services", i), item, None)
    return source


def _items(node: object, key: str) -> list[object]:
    value = node.get(key) if isinstance(node, Mapping) else None
    return list(value) if isinstance(value, list) else []


def _add_team(ctx: NodeContext, at: Loc, model: TeamModel) -> None:
    ref = f"{GROUP}:{DEFAULT_NAMESPACE}/{model.name.lower()}"
    where = ctx.where(at)
    contacts = {key: value for key, value in model.contacts.model_dump().items() if value is not None}
    ctx.source.teams.append(TeamDraft(ref, Team(model.name, model.display_name, contacts, where)))
    ctx.source.declared.append(Declaration(ref, where, model.name))


def _service(ctx: NodeContext, at: Loc, model: ServiceModel) -> EntityDraft:
    ref = f"{model.kind}:{DEFAULT_NAMESPACE}/{model.name.lower()}"
    where = ctx.where(at)
    ctx.source.declared.append(Declaration(ref, where, model.name))
    depends_on = (
        ctx.ref((*at, "depends_on", j), text, EntityKind.COMPONENT.value, DEFAULT_NAMESPACE)
        for j, text in enumerate(model.depends_on)
    )
    entry = CatalogEntry(
        ref=ref,
        name=model.name,
        kind=EntityKind(model.kind),
        tier=model.tier,
        lifecycle=model.lifecycle,
        journeys=tuple(model.journeys),
        segments=tuple(model.segments),
        runbook_url=model.runbook_url,
        dashboard_url=model.dashboard_url,
        itsm=ItsmRouting(**model.itsm.model_dump()),
        impact_sources=tuple(model.impact_sources),
        description=model.description,
        selector=_selector(ctx, (*at, "selector"), model.selector),
        source=where,
    )
    return EntityDraft(
        entry,
        owner=ctx.ref((*at, "owner"), model.owner, GROUP, DEFAULT_NAMESPACE),
        system=ctx.ref((*at, "system"), model.system, EntityKind.SYSTEM.value, DEFAULT_NAMESPACE),
        depends_on=tuple(reference for reference in depends_on if reference is not None),
        verified_by=ctx.ref((*at, "verified_by"), model.verified_by, GROUP, DEFAULT_NAMESPACE),
    )


def _selector(ctx: NodeContext, at: Loc, selector: str | list[str] | None) -> tuple[Matcher, ...] | None:
    """One string of matchers (`{a="b", c=~"d"}`), or a list of single matchers, as in rules."""
    if selector is None or isinstance(selector, str):
        return ctx.selector(at, selector)
    if not selector:
        ctx.error(at, "empty selector: it would match every alert", EMPTY_SELECTOR_HINT)
    matchers = []
    for j, text in enumerate(selector):
        try:
            matchers.append(parse_matcher(text))
        except MatcherError as exc:
            ctx.error((*at, j), f"invalid selector: {exc}")
    return tuple(matchers)


def _declare_broken(ctx: NodeContext, at: Loc, item: object, kind: str | None) -> None:
    """Declare an item that failed validation, if its kind and name can be read (its errors are reported)."""
    if not isinstance(item, Mapping):
        return
    kind = kind or item.get("kind", EntityKind.COMPONENT.value)
    name = item.get("name")
    if not isinstance(kind, str) or not isinstance(name, str):
        return
    try:
        ref = normalise_ref(f"{kind}:{name}", None)
    except CatalogValueError:
        return
    ctx.source.declared.append(Declaration(ref, ctx.where(at), name))
