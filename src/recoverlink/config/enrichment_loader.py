"""Load everything enrichment needs (catalog, rules, defaults) into one validated, versioned Enricher."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from recoverlink.config.actions import check_action_references
from recoverlink.config.catalog_loader import expand as expand_globs
from recoverlink.config.catalog_loader import load_catalog
from recoverlink.config.model import Config, EnrichmentConfig
from recoverlink.config.rules_loader import load_rule_files
from recoverlink.config.templates import TemplateCompiler
from recoverlink.domain.catalog import Catalog, EntityKind, entity_ref
from recoverlink.domain.enrichment import Enricher
from recoverlink.domain.errors import ConfigError, ConfigErrors
from recoverlink.domain.priority import PriorityMatrix
from recoverlink.domain.rules import (
    Constant,
    EnrichmentDefaults,
    ResolutionPolicy,
    Rule,
    RuleSet,
    StormScope,
    StormThreshold,
)


@dataclass(frozen=True)
class LoadedEnrichment:
    enricher: Enricher
    version: str
    files: tuple[Path, ...]


def expand(patterns: Sequence[str], base_dir: Path, key: str, config_name: str) -> list[Path]:
    """Expand globs relative to the config directory; a pattern matching nothing is an error."""
    errors: list[ConfigError] = []
    paths = expand_globs(patterns, base_dir, key, config_name, errors)
    if errors:
        raise ConfigErrors(errors)
    return paths


def load_enrichment(config: Config, base_dir: Path, config_name: str) -> LoadedEnrichment:
    """Validate catalog and rules together; raises ConfigErrors with every problem found."""
    errors: list[ConfigError] = []
    catalog: Catalog | None = None
    rules: tuple[Rule, ...] = ()
    rule_paths: list[Path] = []
    try:
        catalog = load_catalog(config.catalog, base_dir, config_name)
    except ConfigErrors as exc:
        errors.extend(exc.errors)
    try:
        rule_paths = expand(config.rules.files, base_dir, "rules.files", config_name)
        rules = load_rule_files(rule_paths, TemplateCompiler())
    except ConfigErrors as exc:
        errors.extend(exc.errors)
    errors.extend(check_action_references(rules, config.actions))
    if catalog is not None:
        errors.extend(check_rule_references(rules, catalog))
        errors.extend(check_impact_references(catalog, set(config.impact.sources), config_name))
    if errors or catalog is None:
        raise ConfigErrors(errors)
    catalog_paths = [
        *expand(config.catalog.files, base_dir, "catalog.files", config_name),
        *expand(config.catalog.backstage, base_dir, "catalog.backstage", config_name),
    ]
    files = (*rule_paths, *catalog_paths)
    version = content_version(files, config.enrichment.model_dump_json())
    ruleset = RuleSet(rules, version, defaults(config.enrichment))
    return LoadedEnrichment(Enricher(catalog, ruleset, matrix(config.enrichment)), version, files)


def check_rule_references(rules: Iterable[Rule], catalog: Catalog) -> list[ConfigError]:
    """A rule naming a team or service as plain text must name one the catalog has."""
    errors = []
    services = {e.name for e in catalog.entries.values()}
    for rule in rules:
        where = rule.source
        if where is None:
            continue
        if isinstance(rule.owner, Constant) and rule.owner.source not in catalog.teams:
            errors.append(
                ConfigError(
                    where.path,
                    f"rule {rule.name!r}: unknown team {rule.owner.source!r}",
                    where.line,
                    hint=_suggest(rule.owner.source, catalog.teams, "teams come from the catalog"),
                )
            )
        if isinstance(rule.service, Constant) and not _known_service(rule.service.source, catalog, services):
            errors.append(
                ConfigError(
                    where.path,
                    f"rule {rule.name!r}: unknown service {rule.service.source!r}",
                    where.line,
                    hint=_suggest(rule.service.source, services, "services come from the catalog"),
                )
            )
    return errors


def check_impact_references(catalog: Catalog, defined: set[str], config_name: str) -> list[ConfigError]:
    """Every impact source a catalog entry names must be defined under `impact.sources`."""
    errors = []
    for entry in catalog.entries.values():
        for name in entry.impact_sources:
            if name in defined:
                continue
            path, line = (entry.source.path, entry.source.line) if entry.source else (config_name, None)
            where = f"impact sources are defined under 'impact.sources' in {config_name}"
            errors.append(
                ConfigError(
                    path,
                    f"{entry.name}: unknown impact source {name!r}",
                    line,
                    hint=_suggest(name, defined, where),
                )
            )
    return errors


def _known_service(name: str, catalog: Catalog, names: set[str]) -> bool:
    return name in names or catalog.entry(entity_ref(name, EntityKind.COMPONENT)) is not None


def _suggest(name: str, known: Iterable[str], where: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    return f'did you mean "{close[0]}"? {where}' if close else where


def content_version(files: Iterable[Path], settings_json: str) -> str:
    """A short content hash of every file and setting enrichment depends on."""
    digest = hashlib.sha256(settings_json.encode())
    for path in files:
        digest.update(str(path.name).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def defaults(config: EnrichmentConfig) -> EnrichmentDefaults:
    storm = None
    if config.storm is not None:
        storm = StormThreshold(
            config.storm.max_new_recoveries, config.storm.per, StormScope(config.storm.scope)
        )
    return EnrichmentDefaults(
        resolution=ResolutionPolicy(config.resolution),
        reopen_window=config.reopen_window,
        stale_after=config.stale_after,
        storm=storm,
        impact_by_tier=dict(config.impact_by_tier),
        urgency_by_severity=dict(config.urgency_by_severity),
    )


def matrix(config: EnrichmentConfig) -> PriorityMatrix:
    if config.priority_matrix is None:
        return PriorityMatrix()
    base = dict(PriorityMatrix().cells)
    for impact, row in config.priority_matrix.items():
        for urgency, priority in row.items():
            base[(int(impact), int(urgency))] = priority
    return PriorityMatrix(base)
