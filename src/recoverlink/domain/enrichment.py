"""Enrichment: place an alert in the catalog, apply the rules, compute priority. Pure and in memory.

Steps, in order:
1. rules are matched against the alert's own labels (in file order; the first match stops unless it
   says `continue`); among matched rules a later value overrides an earlier one;
2. the service is a matched rule's `service`, else the first catalog selector that matches, else the
   catalog entity named by the `service` label;
3. templates render with the alert and that catalog entry; priority comes from impact x urgency.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from recoverlink.domain.actions import Action
from recoverlink.domain.catalog import Catalog, CatalogEntry, EntityKind, ItsmRouting, entity_ref
from recoverlink.domain.matchers import Matcher, MatcherCheck
from recoverlink.domain.priority import PriorityMatrix
from recoverlink.domain.rules import (
    ResolutionPolicy,
    Rule,
    RuleSet,
    StormThreshold,
    Template,
)
from recoverlink.domain.selection import MatcherIndex


class MissReason(StrEnum):
    """Why the catalog could not fully place an alert (`recoverlink_enrichment_misses_total{reason}`)."""

    NO_SERVICE = "no_service"
    NO_OWNER = "no_owner"
    NO_IMPACT_SOURCE = "no_impact_source"


class OwnerSource(StrEnum):
    RULE = "rule"
    CATALOG = "catalog"
    FALLBACK = "fallback"
    NONE = "none"


@dataclass(frozen=True)
class AlertFacts:
    """What enrichment reads from an alert."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    status: str = "firing"


@dataclass(frozen=True)
class Enrichment:
    """Everything enrichment decided for one alert, stamped with the rule-set version."""

    ruleset_version: str
    service: str | None
    service_ref: str | None
    owner: str | None
    owner_source: OwnerSource
    tier: str | None
    system: str | None
    depends_on: tuple[str, ...]
    journeys: tuple[str, ...]
    segments: tuple[str, ...]
    runbook_url: str | None
    dashboard_url: str | None
    itsm: ItsmRouting
    impact_sources: tuple[str, ...]
    verified_by: str | None
    fields: Mapping[str, str]
    labels: Mapping[str, str]
    impact: int | None
    urgency: int | None
    priority: str
    correlation_key: str | None
    resolution: ResolutionPolicy
    reopen_window: timedelta
    stale_after: timedelta
    storm: StormThreshold | None
    matched_rules: tuple[str, ...]
    misses: tuple[MissReason, ...]
    template_errors: tuple[str, ...]
    actions: tuple[Action, ...] = ()  # of the matched rules, in order: the CX handoffs a recovery runs


@dataclass(frozen=True)
class ExplainStep:
    """One rule or selector considered, whether it matched and why (not)."""

    kind: str  # "rule" | "selector" | "service-label"
    name: str
    matched: bool
    reason: str
    source: str | None = None


_MAX_PLANS = 4096


@dataclass
class _Plan:
    """What matched rules decided, before templates render. The answers are kept: one plan serves
    every alert that matches the same rules (`Enricher._plan`)."""

    rules: list[Rule] = field(default_factory=list)
    _last: dict[str, Any] = field(default_factory=dict)
    _merged: dict[str, dict[str, Template]] = field(default_factory=dict)

    def last(self, attribute: str) -> Any:
        if attribute not in self._last:
            values = (getattr(rule, attribute) for rule in reversed(self.rules))
            self._last[attribute] = next((v for v in values if v is not None), None)
        return self._last[attribute]

    def merged(self, attribute: str) -> dict[str, Template]:
        """The rules' mappings of `attribute` merged in order (shared: never modify it)."""
        if attribute not in self._merged:
            merged: dict[str, Template] = {}
            for rule in self.rules:
                merged.update(getattr(rule, attribute))
            self._merged[attribute] = merged
        return self._merged[attribute]


@dataclass(frozen=True)
class _Placement:
    entry: CatalogEntry | None
    service_name: str | None
    owner: str | None
    owner_source: OwnerSource


class Enricher:
    """Enrich alerts against one catalog and one rule set; build once per config version."""

    def __init__(self, catalog: Catalog, ruleset: RuleSet, matrix: PriorityMatrix | None = None) -> None:
        self.catalog = catalog
        self.ruleset = ruleset
        self.matrix = matrix or PriorityMatrix()
        self._rule_index = MatcherIndex.build([r.matchers for r in ruleset.rules])
        # Each rule as (matcher checks, stops evaluation), for the loop in `_matching_rules`.
        self._rule_checks = [(_checks(r.matchers), not r.continue_) for r in ruleset.rules]
        placeable = [e for e in catalog.entries.values() if e.kind is not EntityKind.SYSTEM]
        self._selected = [e for e in placeable if e.selector is not None]
        self._selector_index = MatcherIndex.build([e.selector or () for e in self._selected])
        self._selector_checks = [_checks(e.selector or ()) for e in self._selected]
        # A component and a resource may share a name; the `service` label means the component.
        by_kind = sorted(placeable, key=lambda e: e.kind is EntityKind.COMPONENT)
        self._by_name = {e.name: e for e in by_kind if e.selector is None}
        self._plans: dict[tuple[int, ...], _Plan] = {}  # by the positions of the matched rules

    def enrich(self, alert: AlertFacts) -> Enrichment:
        return self._decide(alert, self._plan(self._matching_rules(alert.labels)))

    def _plan(self, matched: list[int]) -> _Plan:
        key = tuple(matched)
        plan = self._plans.get(key)
        if plan is None:
            plan = _Plan([self.ruleset.rules[i] for i in matched])
            if len(self._plans) < _MAX_PLANS:  # rules with `continue` could combine without end
                self._plans[key] = plan
        return plan

    def explain(self, alert: AlertFacts) -> tuple[list[ExplainStep], Enrichment]:
        """Like `enrich`, but say for every rule and selector whether it matched and why."""
        steps: list[ExplainStep] = []
        matched = self._matching_rules(alert.labels)
        for position, rule in enumerate(self.ruleset.rules):
            reason = _mismatch(rule.matchers, alert.labels)
            if position in matched:
                reason = "all matchers match" + ("; continue" if rule.continue_ else "; stop")
            elif reason is None:
                reason = "matches, but an earlier rule stopped evaluation"
            steps.append(ExplainStep("rule", rule.name, position in matched, reason, _where(rule.source)))
        plan = _Plan([self.ruleset.rules[i] for i in matched])
        steps.extend(self._explain_service(alert, plan))
        return steps, self._decide(alert, plan)

    def _matching_rules(self, labels: Mapping[str, str]) -> list[int]:
        matched: list[int] = []
        rule_checks = self._rule_checks
        get = labels.get
        for position in self._rule_index.candidates(labels):
            checks, stops = rule_checks[position]
            # `Matcher.matches` for each check, inlined: the first failing matcher rules the rule out.
            for name, literals, fullmatch, negative in checks:
                value = get(name, "")
                if (value in literals if fullmatch is None else fullmatch(value) is not None) is negative:
                    break
            else:
                matched.append(position)
                if stops:
                    break
        return matched

    def _find_entry(self, labels: Mapping[str, str]) -> CatalogEntry | None:
        selector_checks = self._selector_checks
        get = labels.get
        for position in self._selector_index.candidates(labels):
            for name, literals, fullmatch, negative in selector_checks[position]:
                value = get(name, "")
                if (value in literals if fullmatch is None else fullmatch(value) is not None) is negative:
                    break
            else:
                return self._selected[position]
        name = labels.get(self.ruleset.defaults.service_label, "")
        return self._by_name.get(name) if name else None

    def _entry_named(self, name: str) -> CatalogEntry | None:
        entry = self.catalog.entry(entity_ref(name, EntityKind.COMPONENT))
        return entry or self._by_name.get(name)

    def _decide(self, alert: AlertFacts, plan: _Plan) -> Enrichment:
        errors: list[str] = []
        base = {"labels": dict(alert.labels), "annotations": dict(alert.annotations)}
        service_template: Template | None = plan.last("service")
        if service_template is not None:
            service_name = _render(service_template, base, errors) or None
            entry = self._entry_named(service_name) if service_name else None
        else:
            entry = self._find_entry(alert.labels)
            service_name = entry.name if entry else None
        context = {**base, "service": _entry_context(entry, service_name), "alert": _alert_context(alert)}
        owner_template: Template | None = plan.last("owner")
        owner, owner_source = self._owner(owner_template, entry, context, errors)
        context["team"] = _team_context(self.catalog, owner)
        placement = _Placement(entry, service_name, owner, owner_source)
        return self._assemble(alert, plan, placement, context, errors)

    def _owner(
        self,
        template: Template | None,
        entry: CatalogEntry | None,
        context: dict[str, Any],
        errors: list[str],
    ) -> tuple[str | None, OwnerSource]:
        if template is not None and (owner := _render(template, context, errors)):
            return owner, OwnerSource.RULE
        if entry is not None and entry.owner:
            return entry.owner, OwnerSource.CATALOG
        if self.catalog.fallback_owner:
            return self.catalog.fallback_owner, OwnerSource.FALLBACK
        return None, OwnerSource.NONE

    def _assemble(
        self,
        alert: AlertFacts,
        plan: _Plan,
        placement: _Placement,
        context: dict[str, Any],
        errors: list[str],
    ) -> Enrichment:
        defaults = self.ruleset.defaults
        entry, service_name = placement.entry, placement.service_name
        fields = {k: _render(t, context, errors) for k, t in plan.merged("fields").items()}
        labels = {k: _render(t, context, errors) for k, t in plan.merged("labels").items()}
        impact = plan.last("impact") or (defaults.impact_by_tier.get(entry.tier or "") if entry else None)
        severity = alert.labels.get(defaults.severity_label, "")
        urgency = plan.last("urgency") or defaults.urgency_by_severity.get(severity)
        key_template: Template | None = plan.last("correlation_key")
        correlation_key = _render(key_template, context, errors) if key_template else None
        if not correlation_key and service_name:
            correlation_key = f"service/{service_name}"
        return Enrichment(
            ruleset_version=self.ruleset.version,
            service=service_name,
            service_ref=entry.ref if entry else None,
            owner=placement.owner,
            owner_source=placement.owner_source,
            tier=entry.tier if entry else None,
            system=entry.system if entry else None,
            depends_on=entry.depends_on if entry else (),
            journeys=entry.journeys if entry else (),
            segments=entry.segments if entry else (),
            runbook_url=entry.runbook_url if entry else None,
            dashboard_url=entry.dashboard_url if entry else None,
            itsm=entry.itsm if entry else ItsmRouting(),
            impact_sources=entry.impact_sources if entry else (),
            verified_by=entry.verified_by if entry else None,
            fields=fields,
            labels=labels,
            impact=impact,
            urgency=urgency,
            priority=plan.last("priority") or self.matrix.priority(impact, urgency),
            correlation_key=correlation_key or None,
            resolution=plan.last("resolution") or defaults.resolution,
            reopen_window=plan.last("reopen_window") or defaults.reopen_window,
            stale_after=plan.last("stale_after") or defaults.stale_after,
            storm=plan.last("storm") or defaults.storm,
            matched_rules=tuple(r.name for r in plan.rules),
            misses=_misses(entry, placement.owner_source),
            template_errors=tuple(errors),
            actions=tuple(a for r in plan.rules for a in r.actions),
        )

    def _explain_service(self, alert: AlertFacts, plan: _Plan) -> list[ExplainStep]:
        override = next((r for r in reversed(plan.rules) if r.service is not None), None)
        if override is not None:
            source = override.service.source if override.service else ""
            return [ExplainStep("rule", override.name, True, f"sets the service to {source!r}")]
        steps = []
        for entry in self._selected:
            reason = _mismatch(entry.selector or (), alert.labels)
            steps.append(
                ExplainStep(
                    "selector", entry.ref, reason is None, reason or "selector matches", _where(entry.source)
                )
            )
            if reason is None:
                return steps
        label = self.ruleset.defaults.service_label
        name = alert.labels.get(label, "")
        named = self._by_name.get(name) if name else None
        reason = (
            f"{label}={name!r} names {named.ref}"
            if named
            else (f"no catalog entity named {name!r}" if name else f"the alert has no {label!r} label")
        )
        steps.append(ExplainStep("service-label", label, named is not None, reason))
        return steps


def _checks(matchers: Iterable[Matcher]) -> tuple[MatcherCheck, ...]:
    return tuple(m.check() for m in matchers)


def _render(template: Template, context: Mapping[str, Any], errors: list[str]) -> str:
    """Render, recording a failure instead of raising: a broken template never fails ingest."""
    try:
        return template.render(context)
    except Exception as exc:  # templates are user code; any error is reported on the enrichment
        errors.append(f"{template.source!r}: {type(exc).__name__}: {exc}")
        return ""


def _mismatch(matchers: Any, labels: Mapping[str, str]) -> str | None:
    for matcher in matchers:
        if not matcher.matches(labels):
            value = labels.get(matcher.name)
            shown = f"{matcher.name}={value!r}" if value is not None else f"no {matcher.name!r} label"
            return f"{shown} does not satisfy {matcher}"
    return None


def _misses(entry: CatalogEntry | None, owner_source: OwnerSource) -> tuple[MissReason, ...]:
    misses = []
    if entry is None:
        misses.append(MissReason.NO_SERVICE)
    if owner_source in (OwnerSource.FALLBACK, OwnerSource.NONE):
        misses.append(MissReason.NO_OWNER)
    if entry is not None and not entry.impact_sources:
        misses.append(MissReason.NO_IMPACT_SOURCE)
    return tuple(misses)


def _where(source: Any) -> str | None:
    return str(source) if source is not None else None


def _alert_context(alert: AlertFacts) -> dict[str, Any]:
    return {"fingerprint": alert.fingerprint, "status": alert.status}


def _entry_context(entry: CatalogEntry | None, name: str | None) -> dict[str, Any]:
    if entry is None:
        return {"name": name or ""}
    return {
        "name": entry.name,
        "ref": entry.ref,
        "owner": entry.owner or "",
        "tier": entry.tier or "",
        "system": entry.system or "",
        "journeys": list(entry.journeys),
        "segments": list(entry.segments),
        "runbook_url": entry.runbook_url or "",
        "dashboard_url": entry.dashboard_url or "",
        "description": entry.description,
        "verified_by": entry.verified_by or "",
    }


def _team_context(catalog: Catalog, owner: str | None) -> dict[str, Any]:
    team = catalog.teams.get(owner or "")
    if team is None:
        return {"name": owner or ""}
    return {"name": team.name, "display_name": team.display_name, "contacts": dict(team.contacts)}


def enrichment_record(enrichment: Enrichment) -> dict[str, Any]:
    """A JSON-ready form of an enrichment, stored with the alert episode and shown by the API."""
    itsm = enrichment.itsm
    return {
        "ruleset_version": enrichment.ruleset_version,
        "service": enrichment.service,
        "service_ref": enrichment.service_ref,
        "owner": enrichment.owner,
        "owner_source": enrichment.owner_source.value,
        "tier": enrichment.tier,
        "system": enrichment.system,
        "depends_on": list(enrichment.depends_on),
        "journeys": list(enrichment.journeys),
        "segments": list(enrichment.segments),
        "runbook_url": enrichment.runbook_url,
        "dashboard_url": enrichment.dashboard_url,
        "itsm": {k: v for k, v in vars(itsm).items() if v is not None},
        "impact_sources": list(enrichment.impact_sources),
        "verified_by": enrichment.verified_by,
        "fields": dict(enrichment.fields),
        "labels": dict(enrichment.labels),
        "impact": enrichment.impact,
        "urgency": enrichment.urgency,
        "priority": enrichment.priority,
        "correlation_key": enrichment.correlation_key,
        "resolution": enrichment.resolution.value,
        "reopen_window_seconds": enrichment.reopen_window.total_seconds(),
        "stale_after_seconds": enrichment.stale_after.total_seconds(),
        "storm": _storm_record(enrichment.storm),
        "matched_rules": list(enrichment.matched_rules),
        "misses": [m.value for m in enrichment.misses],
        "template_errors": list(enrichment.template_errors),
        "actions": [a.ref for a in enrichment.actions],
    }


def _storm_record(storm: StormThreshold | None) -> dict[str, Any] | None:
    if storm is None:
        return None
    return {
        "max_new_recoveries": storm.max_new_recoveries,
        "window_seconds": storm.window.total_seconds(),
        "scope": storm.scope.value,
    }
