"""Enrichment in the domain: catalog placement, rules in order, priority, misses and explanations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recoverlink.config.templates import TemplateCompiler
from recoverlink.domain.catalog import Catalog, CatalogEntry, EntityKind, Team
from recoverlink.domain.enrichment import AlertFacts, Enricher, MissReason, OwnerSource
from recoverlink.domain.matchers import Matcher, matches_all, parse_matchers
from recoverlink.domain.priority import PriorityMatrix
from recoverlink.domain.rules import EnrichmentDefaults, ResolutionPolicy, Rule, RuleSet
from tests.unit.test_selection import ALPHABET, LABELS
from tests.unit.test_selection import matchers as matcher_strategy

T = TemplateCompiler()

CATALOG = Catalog(
    entries={
        "component:default/payments-api": CatalogEntry(
            ref="component:default/payments-api",
            name="payments-api",
            kind=EntityKind.COMPONENT,
            owner="payments",
            tier="tier-1",
            journeys=("checkout",),
            segments=("retail",),
            impact_sources=("checkout-failures",),
        ),
        "component:default/legacy-gw": CatalogEntry(
            ref="component:default/legacy-gw",
            name="legacy-gw",
            kind=EntityKind.COMPONENT,
            owner="payments",
            selector=parse_matchers('{job="gw", instance=~"gw-.*"}'),
        ),
        "component:default/orphan": CatalogEntry(
            ref="component:default/orphan", name="orphan", kind=EntityKind.COMPONENT
        ),
    },
    teams={"payments": Team("payments", "Payments"), "sre": Team("sre", "SRE")},
    fallback_owner="sre",
)
DEFAULTS = EnrichmentDefaults(impact_by_tier={"tier-1": 1, "tier-2": 2})


def enricher(*rules: Rule) -> Enricher:
    return Enricher(CATALOG, RuleSet(rules, "v1", DEFAULTS), PriorityMatrix())


def facts(**labels: str) -> AlertFacts:
    return AlertFacts(labels=labels, annotations={"summary": "it broke"})


def test_service_label_places_the_alert_in_the_catalog() -> None:
    result = enricher().enrich(facts(alertname="Down", service="payments-api", severity="critical"))
    assert result.service == "payments-api"
    assert result.owner == "payments"
    assert result.owner_source is OwnerSource.CATALOG
    assert result.journeys == ("checkout",)
    assert result.misses == ()
    assert result.ruleset_version == "v1"


def test_priority_comes_from_tier_impact_and_severity_urgency() -> None:
    critical = enricher().enrich(facts(service="payments-api", severity="critical"))
    warning = enricher().enrich(facts(service="payments-api", severity="warning"))
    assert (critical.impact, critical.urgency, critical.priority) == (1, 1, "P1")
    assert (warning.impact, warning.urgency, warning.priority) == (1, 2, "P2")


def test_priority_is_unknown_without_impact() -> None:
    result = enricher().enrich(facts(service="orphan", severity="critical"))
    assert result.priority == "unknown"


def test_unknown_service_gets_the_fallback_owner_and_counts_as_misses() -> None:
    result = enricher().enrich(facts(service="nobody-knows"))
    assert result.service is None
    assert result.owner == "sre"
    assert result.owner_source is OwnerSource.FALLBACK
    assert result.misses == (MissReason.NO_SERVICE, MissReason.NO_OWNER)


def test_entity_without_owner_or_impact_sources_is_a_partial_miss() -> None:
    result = enricher().enrich(facts(service="orphan"))
    assert result.misses == (MissReason.NO_OWNER, MissReason.NO_IMPACT_SOURCE)


def test_entity_selector_places_alerts_without_a_service_label() -> None:
    result = enricher().enrich(facts(job="gw", instance="gw-3"))
    assert result.service == "legacy-gw"


def test_first_matching_rule_stops_evaluation() -> None:
    first = Rule("first", parse_matchers('alertname="Down"'), fields={"summary": T.compile("one")})
    second = Rule("second", parse_matchers('alertname="Down"'), fields={"summary": T.compile("two")})
    result = enricher(first, second).enrich(facts(alertname="Down", service="payments-api"))
    assert result.matched_rules == ("first",)
    assert result.fields == {"summary": "one"}


def test_continue_lets_later_rules_override() -> None:
    first = Rule("first", parse_matchers('alertname="Down"'), fields={"a": T.compile("1")}, continue_=True)
    second = Rule("second", parse_matchers('service="payments-api"'), fields={"a": T.compile("2")})
    result = enricher(first, second).enrich(facts(alertname="Down", service="payments-api"))
    assert result.matched_rules == ("first", "second")
    assert result.fields == {"a": "2"}


def test_templates_see_labels_annotations_and_catalog_fields() -> None:
    rule = Rule(
        "summary",
        fields={
            "summary": T.compile("{{ service.name }} ({{ service.tier }}): {{ annotations.summary }}"),
            "team": T.compile("{{ team.display_name }}"),
            "journeys": T.compile("{{ service.journeys | join(', ') }}"),
        },
        labels={"journey": T.compile("{{ service.journeys[0] }}")},
    )
    result = enricher(rule).enrich(facts(service="payments-api"))
    assert result.fields == {
        "summary": "payments-api (tier-1): it broke",
        "team": "Payments",
        "journeys": "checkout",
    }
    assert result.labels == {"journey": "checkout"}


def test_rule_overrides_owner_priority_and_policies() -> None:
    rule = Rule(
        "db",
        parse_matchers('alertname=~"Db.*"'),
        owner=T.compile("sre"),
        priority="P2",
        correlation_key=T.compile("db/{{ labels.cluster }}"),
        resolution=ResolutionPolicy.MONITOR,
        reopen_window=timedelta(minutes=30),
    )
    result = enricher(rule).enrich(facts(alertname="DbSlow", service="payments-api", cluster="c1"))
    assert result.owner == "sre"
    assert result.owner_source is OwnerSource.RULE
    assert result.priority == "P2"
    assert result.correlation_key == "db/c1"
    assert result.resolution is ResolutionPolicy.MONITOR
    assert result.reopen_window == timedelta(minutes=30)


def test_rule_service_override_wins_over_the_label() -> None:
    rule = Rule("route", parse_matchers('job="gw"'), service=T.compile("payments-api"))
    result = enricher(rule).enrich(facts(job="gw", service="something-else"))
    assert result.service == "payments-api"
    assert result.owner == "payments"


def test_default_correlation_key_is_the_service() -> None:
    assert enricher().enrich(facts(service="payments-api")).correlation_key == "service/payments-api"
    assert enricher().enrich(facts(service="nobody")).correlation_key is None


def test_broken_template_is_reported_not_raised() -> None:
    rule = Rule("bad", fields={"x": T.compile("{{ (labels.service | length) / 0 }}")})
    result = enricher(rule).enrich(facts(service="payments-api"))
    assert result.fields == {"x": ""}
    assert len(result.template_errors) == 1


def test_sandbox_refuses_to_escape() -> None:
    rule = Rule("escape", fields={"x": T.compile("{{ labels.__class__.__mro__ }}")})
    result = enricher(rule).enrich(facts(service="payments-api"))
    assert result.fields["x"] == ""
    assert result.template_errors


def test_explain_says_why_each_rule_did_not_match() -> None:
    first = Rule("only-critical", parse_matchers('severity="critical"'))
    second = Rule("payments", parse_matchers('service="payments-api"'))
    steps, result = enricher(first, second).explain(facts(service="payments-api", severity="warning"))
    rules = [s for s in steps if s.kind == "rule"]
    assert [(s.name, s.matched) for s in rules] == [("only-critical", False), ("payments", True)]
    assert rules[0].reason == "severity='warning' does not satisfy severity=\"critical\""
    assert result.matched_rules == ("payments",)
    service_steps = [s for s in steps if s.kind != "rule"]
    assert service_steps[-1].reason == "service='payments-api' names component:default/payments-api"


def test_explain_names_a_rule_shadowed_by_an_earlier_stop() -> None:
    first = Rule("catch-all")
    second = Rule("never")
    steps, _ = enricher(first, second).explain(facts())
    assert steps[1].reason == "matches, but an earlier rule stopped evaluation"


@pytest.mark.parametrize("count", [1, 50])
def test_indexed_and_unindexed_rules_keep_file_order(count: int) -> None:
    rules = [Rule(f"r{i}", parse_matchers(f'alertname="A{i}"')) for i in range(count)]
    rules.append(Rule("regex", parse_matchers('alertname=~"A.*"'), continue_=True))
    rules.insert(0, Rule("first-negative", parse_matchers('env!="dev"'), continue_=True))
    result = enricher(*rules).enrich(facts(alertname=f"A{count - 1}"))
    assert result.matched_rules == ("first-negative", f"r{count - 1}")


# --------------------------------------------------------------------------- property: index == brute force

_matcher_lists = st.lists(matcher_strategy(), max_size=3)


def _brute_force_rules(rules: tuple[Rule, ...], labels: dict[str, str]) -> list[int]:
    matched = []
    for position, rule in enumerate(rules):
        if matches_all(rule.matchers, labels):
            matched.append(position)
            if not rule.continue_:
                break
    return matched


def _brute_force_entry(entries: list[CatalogEntry], labels: dict[str, str]) -> CatalogEntry | None:
    for entry in entries:
        if entry.selector is not None and matches_all(entry.selector, labels):
            return entry
    name = labels.get("service", "")
    return next((e for e in entries if e.selector is None and e.name == name), None) if name else None


@settings(max_examples=300)
@given(
    st.lists(st.tuples(_matcher_lists, st.booleans()), max_size=12),
    st.lists(st.one_of(st.none(), _matcher_lists), max_size=8),
    st.lists(
        st.dictionaries(st.sampled_from(LABELS), st.text(ALPHABET, max_size=4), max_size=4),
        min_size=1,
        max_size=5,
    ),
)
def test_indexed_matching_finds_the_same_rules_and_entry_as_trying_them_all(
    rule_specs: list[tuple[list[Matcher], bool]],
    selectors: list[list[Matcher] | None],
    alerts: list[dict[str, str]],
) -> None:
    rules = tuple(
        Rule(f"r{i}", tuple(matchers), continue_=cont) for i, (matchers, cont) in enumerate(rule_specs)
    )
    names = ["a", "b", "ab", "a-", "b.a", "x", "y", "z"]
    entries = [
        CatalogEntry(
            ref=f"component:default/{name}",
            name=name,
            kind=EntityKind.COMPONENT,
            selector=tuple(selector) if selector is not None else None,
        )
        for name, selector in zip(names, selectors, strict=False)
    ]
    catalog = Catalog(entries={e.ref: e for e in entries}, teams={})
    enricher = Enricher(catalog, RuleSet(rules, "v1", DEFAULTS), PriorityMatrix())
    for labels in alerts:
        expected_rules = _brute_force_rules(rules, labels)
        assert enricher._matching_rules(labels) == expected_rules
        assert enricher._find_entry(labels) == _brute_force_entry(entries, labels)
        result = enricher.enrich(AlertFacts(labels))
        assert result.matched_rules == tuple(rules[i].name for i in expected_rules)
