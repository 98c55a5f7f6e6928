"""`recoverlink check`: validate one file of any kind recoverlink reads, and summarise it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from recoverlink.adapters.impact import build_impact_sources
from recoverlink.config.enrichment_loader import load_enrichment
from recoverlink.config.loader import load_config
from recoverlink.config.model import Config
from recoverlink.config.rules_loader import load_rule_files
from recoverlink.config.templates import TemplateCompiler
from recoverlink.config.yamlfile import load_yaml
from recoverlink.domain.errors import ConfigError, ConfigErrors
from recoverlink.domain.rules import Rule
from recoverlink.rule_testing import load_tests
from recoverlink.secret_scan import config_warnings, rule_warnings


def _impact_sources(config: Config, name: str) -> int:
    """Compile every impact source's templates and JMESPath expressions (secrets are not read)."""
    try:
        return len(build_impact_sources(config.impact, {}, read_secrets=False))
    except ConfigErrors as exc:
        raise ConfigErrors([ConfigError(name, e.render()) for e in exc.errors]) from exc


def _actions(rules: Sequence[Rule]) -> int:
    return sum(len(rule.actions) for rule in rules)


def secret_warnings(path: Path) -> list[str]:
    """Secrets written into a config or rule file that already validated (`secret_scan`)."""
    node = load_yaml(path)
    keys = set(node) if isinstance(node, dict) else set()
    if "webhook" in keys:
        config = load_config(path)
        rules = load_enrichment(config, path.parent, str(path)).enricher.ruleset.rules
        return config_warnings(config, str(path)) + rule_warnings(rules)
    if "rules" in keys:
        return rule_warnings(load_rule_files([path], TemplateCompiler()))
    return []


def check_file(path: Path) -> str:
    """Validate `path` by what it holds; returns a one-line summary or raises ConfigErrors."""
    node = load_yaml(path)
    keys = set(node) if isinstance(node, dict) else set()
    if "webhook" in keys:
        config = load_config(path)
        loaded = load_enrichment(config, path.parent, str(path))
        sources = _impact_sources(config, str(path))
        catalog = loaded.enricher.catalog
        rules = loaded.enricher.ruleset.rules
        return (
            f"{path}: config valid; catalog {len(catalog.entries)} entities, {len(catalog.teams)} teams; "
            f"{len(rules)} rules, {_actions(rules)} actions; {sources} impact sources; "
            f"rule-set version {loaded.version}"
        )
    if "rules" in keys:
        rules = load_rule_files([path], TemplateCompiler())
        return f"{path}: {len(rules)} rules, {_actions(rules)} actions valid"
    if "tests" in keys:
        return f"{path}: {len(load_tests([path]))} rule tests valid"
    raise ConfigErrors(
        [
            ConfigError(
                str(path),
                "not a file recoverlink checks",
                hint="expected a config (webhook:), a rule file (rules:) or a rule test file (tests:)",
            )
        ]
    )
