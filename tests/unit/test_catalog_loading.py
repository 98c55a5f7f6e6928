"""The catalog: our YAML and Backstage files merged into one Catalog, every broken reference at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from recoverlink.config.backstage import read_backstage_file
from recoverlink.config.catalog_loader import load_catalog
from recoverlink.config.loader import load_config
from recoverlink.config.model import BackstageAnnotations, CatalogConfig
from recoverlink.domain.catalog import Catalog, EntityKind, ItsmRouting, SourceLocation
from recoverlink.domain.errors import ConfigErrors
from recoverlink.domain.matchers import MatcherError, parse_matcher, parse_matchers

ROOT = Path(__file__).parents[2]
EXAMPLE_CONFIG = ROOT / "deploy" / "recoverlink.yaml"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "catalog"
CONFIG = "recoverlink.yaml"
BASE = f"{FIXTURES / 'base.yaml'}"
TEAMS_IN_BASE = f"teams are defined in {BASE}"


def load(files: list[str], backstage: list[str] | None = None, **settings: object) -> Catalog:
    config = CatalogConfig.model_validate({"files": files, "backstage": backstage or [], **settings})
    return load_catalog(config, FIXTURES, CONFIG)


def errors_of(files: list[str], backstage: list[str] | None = None, **settings: object) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load(files, backstage, **settings)
    return [error.render() for error in caught.value.errors]


def at(name: str) -> str:
    return str(FIXTURES / name)


def matcher_message(text: str) -> str:
    with pytest.raises(MatcherError) as caught:
        parse_matchers(text)
    return str(caught.value)


# --- the example in deploy/ ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> Catalog:
    config = load_config(EXAMPLE_CONFIG)
    return load_catalog(config.catalog, EXAMPLE_CONFIG.parent, str(EXAMPLE_CONFIG))


def test_example_catalog_loads_both_files(example: Catalog) -> None:
    assert set(example.entries) == {
        "component:default/payments-api",
        "component:default/checkout-web",
        "system:default/customer-care",
        "component:default/crm-api",
        "component:default/contact-center-queue",
        "component:default/billing-worker",
        "system:default/commerce",
        "component:default/identity-api",
        "resource:default/payments-db",
    }
    assert set(example.teams) == {
        "payments",
        "identity",
        "crm",
        "contact-center",
        "billing",
        "sre",
        "cx-operations",
    }
    assert example.fallback_owner == "sre"


def test_example_entry_from_our_yaml_has_owner_routing_and_impact(example: Catalog) -> None:
    entry = example.entries["component:default/payments-api"]
    assert entry.kind is EntityKind.COMPONENT
    assert (entry.owner, entry.tier, entry.lifecycle) == ("payments", "tier-1", "production")
    assert entry.system == "system:default/commerce"
    assert entry.depends_on == ("resource:default/payments-db", "component:default/identity-api")
    assert (entry.journeys, entry.segments) == (("checkout",), ("retail", "business"))
    assert entry.itsm == ItsmRouting(
        system="servicenow", assignment_group="Payments Ops", ci="55b35562c0a8010e01cff22378e0aea9"
    )
    assert entry.impact_sources == ("checkout-failures",)
    assert entry.verified_by == "cx-operations"
    assert [str(m) for m in entry.selector or ()] == ['service=~"payments-api|payments-gw"']
    assert entry.runbook_url == "https://runbooks.example.com/payments-api"
    assert entry.source == SourceLocation(str(EXAMPLE_CONFIG.parent / "catalog.yaml"), 35)
    assert example.teams["payments"].contacts == {
        "email": "payments@example.com",
        "chat": "#payments-oncall",
        "pager": "payments-primary",
    }


def test_example_entry_from_backstage_reads_annotations_and_links(example: Catalog) -> None:
    entry = example.entries["component:default/identity-api"]
    assert (entry.owner, entry.tier, entry.journeys) == ("identity", "tier-1", ("login",))
    assert entry.segments == ("retail", "business")
    assert entry.verified_by == "cx-operations"
    assert entry.itsm == ItsmRouting(
        system="servicenow", assignment_group="Identity Ops", ci="8a4f7d1c1b2e4f00a9c3d5e6f7a8b9c0"
    )
    assert entry.runbook_url == "https://runbooks.example.com/identity-api"
    assert entry.dashboard_url == "https://grafana.example.com/d/identity"
    assert entry.selector == (parse_matcher('service=~"identity-api|login"'),)
    team = example.teams["identity"]
    assert (team.display_name, team.contacts) == ("Identity", {"email": "identity@example.com"})


def test_example_references_cross_between_our_yaml_and_backstage(example: Catalog) -> None:
    database = example.entries["resource:default/payments-db"]
    assert (database.owner, database.system) == ("payments", "system:default/commerce")
    assert example.entries["component:default/billing-worker"].depends_on == ("resource:default/payments-db",)


# --- Backstage files as teams write them --------------------------------------------------------------


def test_backstage_refs_default_to_the_referring_entity_namespace() -> None:
    catalog = load(["base.yaml"], ["backstage-real-shaped.yaml"])
    scheduler = catalog.entries["component:ops/scheduler"]
    assert scheduler.name == "Scheduler"
    assert scheduler.owner == "ops/Platform"  # {kind: Group, name: platform}, in namespace ops
    assert scheduler.system == "system:ops/runtime"
    assert scheduler.depends_on == ("resource:ops/queue-db", "component:default/payments-api")
    assert scheduler.verified_by == "payments"
    assert catalog.entries["resource:ops/queue-db"].owner == "ops/Platform"
    assert catalog.teams["ops/Platform"].display_name == "Platform team"


def test_backstage_annotations_fill_the_entry_and_win_over_links() -> None:
    scheduler = load(["base.yaml"], ["backstage-real-shaped.yaml"]).entries["component:ops/scheduler"]
    assert (scheduler.tier, scheduler.lifecycle) == ("tier-2", "production")
    assert scheduler.journeys == ("billing", "reporting")
    assert scheduler.impact_sources == ("billing-failures", "late-invoices")  # blanks dropped
    assert scheduler.itsm == ItsmRouting(system="jira", project="OPS")
    assert scheduler.runbook_url == "https://runbooks.example.com/scheduler"  # annotation over link
    assert scheduler.dashboard_url == "https://grafana.example.com/d/scheduler"  # from the link
    assert scheduler.description == "Runs batch jobs"


def test_backstage_kinds_we_do_not_use_are_accepted_and_ignored() -> None:
    catalog = load(["base.yaml"], ["backstage-real-shaped.yaml"])
    assert not any(ref.startswith(("api:", "user:", "location:")) for ref in catalog.entries)
    assert "jdoe" not in catalog.teams


def test_backstage_annotation_names_are_configurable() -> None:
    keys = BackstageAnnotations(
        tier="example.com/tier",
        assignment_group="example.com/servicenow-assignment-group",
        ci="example.com/servicenow-cmdb-ci",
        alert_selector="example.com/alert-selector",
    )
    source = read_backstage_file(FIXTURES / "backstage-custom-annotations.yaml", keys)
    assert source.errors == []
    (draft,) = source.entities
    assert draft.entry.tier == "gold"
    assert draft.entry.itsm == ItsmRouting(
        assignment_group="Payments Ops", ci="55b35562c0a8010e01cff22378e0aea9"
    )
    assert draft.entry.selector == (parse_matcher('service="payments-gw"'),)
    assert draft.owner is not None and draft.owner.ref == "group:default/payments"


def test_a_glob_reads_each_file_once() -> None:
    catalog = load(["base.yaml", "base.*"], ["backstage-real-*.yaml", "backstage-real-shaped.yaml"])
    assert "component:ops/scheduler" in catalog.entries


def test_no_catalog_files_give_an_empty_catalog() -> None:
    assert load([]) == Catalog(entries={}, teams={}, fallback_owner=None)


# --- broken references, each at its file and line -------------------------------------------------


def test_unknown_owner_is_reported_at_its_line_with_a_hint() -> None:
    assert errors_of(["base.yaml", "unknown-owner.yaml"]) == [
        f'{at("unknown-owner.yaml")}:3:5: unknown team "paymnts" '
        f'(hint: did you mean "payments"? {TEAMS_IN_BASE})'
    ]


def test_unknown_system_dependency_and_verifier_are_reported_at_their_lines() -> None:
    path = at("unknown-references.yaml")
    assert errors_of(["base.yaml", "unknown-references.yaml"]) == [
        f'{path}:4:5: unknown system "comerce" (hint: did you mean "commerce"?)',
        f'{path}:7:9: unknown entity "payments-db" (hint: did you mean "resource:payments-db"? '
        "a name without a kind reads as component:default/payments-db)",
        f'{path}:8:9: unknown entity "resource:payments-dbb" (hint: did you mean "resource:payments-db"?)',
        f'{path}:9:5: unknown team "cx-ops" (hint: did you mean "cx-operations"? {TEAMS_IN_BASE})',
        f'{path}:11:5: "user:jdoe" is not a team '
        "(hint: recoverlink routes to teams: a Backstage Group, or a team of a catalog file)",
        f'{path}:12:5: unknown system "payments-api" (hint: "payments-api" is a component; '
        "a system is a Backstage System, or a service with kind: system)",
    ]


def test_backstage_unknown_references_are_reported_at_their_lines() -> None:
    path = at("backstage-unknown-refs.yaml")
    assert errors_of(["base.yaml"], ["backstage-unknown-refs.yaml"]) == [
        f'{path}:15:7: reference "payments-db" needs a kind '
        '(hint: write "component:payments-db" or "resource:payments-db")',
        f'{path}:10:3: unknown team "paymnts" (hint: did you mean "payments"? {TEAMS_IN_BASE})',
        f'{path}:11:3: unknown system "comerce" (hint: did you mean "commerce"?)',
        f'{path}:13:7: unknown entity "component:payments-ap" (hint: did you mean "component:payments-api"?)',
        f'{path}:6:5: unknown team "cx-ops" (hint: did you mean "cx-operations"? {TEAMS_IN_BASE})',
    ]


def test_unknown_fallback_owner_is_reported_against_the_config() -> None:
    assert errors_of(["base.yaml"], fallback_owner="sre") == [
        f'{CONFIG}: catalog.fallback_owner: unknown team "sre" (hint: {TEAMS_IN_BASE})'
    ]


def test_fallback_owner_names_a_team_ignoring_case() -> None:
    assert load(["base.yaml"], fallback_owner="Payments").fallback_owner == "payments"


def test_a_broken_service_is_still_declared_so_references_to_it_add_no_error() -> None:
    assert errors_of(["base.yaml", "broken-service-still-declared.yaml"]) == [
        f"{at('broken-service-still-declared.yaml')}:4:5: services.0.tier: Input should be a valid string"
    ]


# --- duplicates ---------------------------------------------------------------------------------------


def test_duplicate_service_and_team_across_files_name_both_places() -> None:
    path = at("duplicate-service.yaml")
    assert errors_of(["base.yaml", "duplicate-service.yaml"]) == [
        f'{path}:2: duplicate team "Payments" '
        f"(hint: first defined at {BASE}:3; names are unique per kind and namespace, ignoring case)",
        f'{path}:4: duplicate entity "component:default/payments-api" (hint: first defined at {BASE}:13)',
    ]


def test_backstage_names_are_unique_per_kind_and_namespace_ignoring_case() -> None:
    path = at("backstage-duplicate-names.yaml")
    ignoring_case = "names are unique per kind and namespace, ignoring case"
    assert errors_of(["base.yaml"], ["backstage-duplicate-names.yaml"]) == [
        f'{path}:6: duplicate entity "component:default/search" '
        f"(hint: first defined at {path}:1; {ignoring_case})",
        f'{path}:21: duplicate team "PAYMENTS" (hint: first defined at {BASE}:3; {ignoring_case})',
        f'{path}:31: duplicate entity "api:default/search-api" '
        f"(hint: first defined at {path}:26; {ignoring_case})",
        f'{path}:36: duplicate entity "component:default/payments-api" (hint: first defined at {BASE}:13)',
    ]


# --- what the files may say ---------------------------------------------------------------------------


def test_unknown_keys_are_errors() -> None:
    path = at("unknown-key.yaml")
    assert errors_of(["unknown-key.yaml"]) == [
        f"{path}:3:16: unknown key 'teams.0.contacts.emial'",
        f"{path}:9:12: services.0.itsm.system: Input should be 'servicenow', 'jira' or 'rt'",
        f"{path}:8:5: unknown key 'services.0.runbook'",
        f"{path}:10:1: unknown key 'colour'",
    ]


def test_a_glob_that_matches_nothing_is_an_error_naming_it() -> None:
    relative = f"(hint: patterns are relative to {FIXTURES})"
    assert errors_of(["nothing/*.yaml", "base.yaml"], ["missing.yaml"]) == [
        f'{CONFIG}: catalog.files: "nothing/*.yaml" matches no file {relative}',
        f'{CONFIG}: catalog.backstage: "missing.yaml" matches no file {relative}',
    ]


def test_unsupported_placeholders_are_reported_except_in_ignored_kinds() -> None:
    path = at("backstage-placeholders.yaml")
    why = (
        "only the Backstage backend substitutes it "
        "(hint: write the value into the file: recoverlink reads it as it is)"
    )
    assert errors_of(["base.yaml"], ["backstage-placeholders.yaml"]) == [
        f'{path}:6:5: unsupported placeholder "$text": {why}',
        f'{path}:12:5: unsupported placeholder "$json": {why}',
    ]


def test_malformed_selector_is_reported_at_its_line_with_the_matcher_message() -> None:
    path = at("bad-selector.yaml")
    unterminated = matcher_message('service=~"crm-api|crm-gw')
    double_equals = matcher_message('env=="prod"')
    assert errors_of(["base.yaml", "bad-selector.yaml"]) == [
        f"{path}:4:5: invalid selector: {unterminated}",
        f"{path}:7:5: empty selector: it would match every alert "
        "(hint: leave it out to match the service label against the name)",
        f"{path}:12:9: invalid selector: {double_equals}",
    ]


def test_broken_backstage_entities_report_every_problem() -> None:
    path = at("backstage-broken.yaml")
    versions = "backstage.io/v1alpha1 or backstage.io/v1beta1"
    unterminated = matcher_message('service=~"refunds|')
    assert errors_of(["base.yaml"], ["backstage-broken.yaml"]) == [
        f"{path}:1:1: kind: required key is missing",
        f"{path}:4:1: apiVersion: required key is missing",
        f'{path}:5:12: metadata.name: Value error, invalid name "bad name": '
        "use letters and digits joined by -, _ or . (at most 63)",
        f'{path}:7:1: unsupported apiVersion "example.com/v1" '
        f"(hint: Component is a Backstage kind of {versions})",
        f"{path}:15:1: spec.owner: required key is missing",
        f"{path}:15:1: spec.lifecycle: required key is missing",
        f'{path}:24:5: unknown ITSM system "remedy" (hint: one of servicenow, jira, rt)',
        f"{path}:25:5: invalid selector: {unterminated}",
        f"{path}: an entity must be a mapping",
        f'{path}:29:3: "user:jdoe" is not a team '
        "(hint: recoverlink routes to teams: a Backstage Group, or a team of a catalog file)",
    ]


def test_yaml_syntax_error_in_a_backstage_document_points_at_its_line() -> None:
    assert errors_of([], ["backstage-syntax-error.yaml"]) == [
        f"{at('backstage-syntax-error.yaml')}:9:5: invalid YAML: expected ',' or '}}', but got ':'"
    ]
