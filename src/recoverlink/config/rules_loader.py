"""Load `rules/*.yaml` into a domain RuleSet: matchers parsed, templates compiled, every error at its line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError

from recoverlink.config.rule_actions import load_actions
from recoverlink.config.rules_file import RuleFileModel, RuleModel
from recoverlink.config.templates import TemplateCompiler
from recoverlink.config.yamlfile import load_yaml, locate, validate
from recoverlink.domain.catalog import SourceLocation
from recoverlink.domain.errors import ConfigError, ConfigErrors
from recoverlink.domain.matchers import Matcher, MatcherError, parse_matcher, parse_matchers
from recoverlink.domain.rules import ResolutionPolicy, Rule, StormScope, StormThreshold, Template


@dataclass
class _FileContext:
    """Turns problems inside one rule file into ConfigErrors at the right line."""

    path: str
    node: Any
    compiler: TemplateCompiler
    errors: list[ConfigError] = field(default_factory=list)

    def error(self, loc: Sequence[int | str], message: str, hint: str | None = None) -> None:
        line, col = locate(self.node, loc)
        self.errors.append(ConfigError(self.path, message, line, col, hint))

    def template(self, loc: Sequence[int | str], text: str | None) -> Template | None:
        if text is None:
            return None
        try:
            return self.compiler.compile(text)
        except TemplateSyntaxError as exc:
            self.error(
                loc, f"template syntax error: {exc.message}", hint="templates are Jinja2: {{ labels.x }}"
            )
            return None

    def templates(self, loc: Sequence[int | str], values: dict[str, str]) -> dict[str, Template]:
        compiled = {k: self.template((*loc, k), v) for k, v in values.items()}
        return {k: t for k, t in compiled.items() if t is not None}


def load_rule_files(paths: Sequence[Path], compiler: TemplateCompiler) -> tuple[Rule, ...]:
    """All rules of all files in order; raises ConfigErrors listing every problem found."""
    rules: list[Rule] = []
    errors: list[ConfigError] = []
    for path in paths:
        try:
            rules.extend(_load_file(path, compiler))
        except ConfigErrors as exc:
            errors.extend(exc.errors)
    errors.extend(_duplicate_names(rules))
    if errors:
        raise ConfigErrors(errors)
    return tuple(rules)


def _load_file(path: Path, compiler: TemplateCompiler) -> list[Rule]:
    node = load_yaml(path)
    model = validate(RuleFileModel, node, str(path))
    ctx = _FileContext(str(path), node, compiler)
    rules = [_to_rule(ctx, i, rule) for i, rule in enumerate(model.rules)]
    if ctx.errors:
        raise ConfigErrors(ctx.errors)
    return rules


def _matchers(ctx: _FileContext, index: int, match: list[str] | str) -> tuple[Matcher, ...]:
    try:
        if isinstance(match, str):
            return parse_matchers(match)
        found: list[Matcher] = []
        for j, text in enumerate(match):
            try:
                found.append(parse_matcher(text))
            except MatcherError as exc:
                ctx.error(("rules", index, "match", j), f"invalid matcher: {exc}")
        return tuple(found)
    except MatcherError as exc:
        ctx.error(("rules", index, "match"), f"invalid matchers: {exc}")
        return ()


def _to_rule(ctx: _FileContext, index: int, model: RuleModel) -> Rule:
    at: tuple[int | str, ...] = ("rules", index)
    line, _ = locate(ctx.node, at)
    storm = None
    if model.storm is not None:
        storm = StormThreshold(model.storm.max_new_recoveries, model.storm.per, StormScope(model.storm.scope))
    return Rule(
        name=model.name,
        matchers=_matchers(ctx, index, model.match),
        service=ctx.template((*at, "service"), model.service),
        owner=ctx.template((*at, "owner"), model.owner),
        fields=ctx.templates((*at, "set", "fields"), model.set.fields),
        labels=ctx.templates((*at, "set", "labels"), model.set.labels),
        impact=model.impact,
        urgency=model.urgency,
        priority=model.priority,
        correlation_key=ctx.template((*at, "correlation_key"), model.correlation_key),
        resolution=ResolutionPolicy(model.resolution) if model.resolution else None,
        reopen_window=model.reopen_window,
        stale_after=model.stale_after,
        storm=storm,
        continue_=model.continue_,
        actions=load_actions(
            model,
            at,
            ctx.compiler,
            path=ctx.path,
            error=ctx.error,
            line_of=lambda loc: locate(ctx.node, loc)[0],
        ),
        source=SourceLocation(ctx.path, line),
    )


def _duplicate_names(rules: Sequence[Rule]) -> list[ConfigError]:
    first: dict[str, Rule] = {}
    errors = []
    for rule in rules:
        earlier = first.setdefault(rule.name, rule)
        if earlier is not rule and rule.source is not None:
            errors.append(
                ConfigError(
                    rule.source.path,
                    f"duplicate rule name {rule.name!r}",
                    rule.source.line,
                    hint=f"first defined at {earlier.source}",
                )
            )
    return errors
