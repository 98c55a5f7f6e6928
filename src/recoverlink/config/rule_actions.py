"""Load a rule's `actions:`: compile each template in the strict action sandbox and try it.

Every template is rendered once against a sample recovery (`domain.action_context.sample_context`),
so a misspelt name, a filter used wrongly or a body that is not JSON is reported by
`recoverlink check` at its line, never found by the worker at 3 a.m. References to config (the
credential, the hosts a constant URL calls) are checked with the config, in `config/actions.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from jinja2 import TemplateSyntaxError, UndefinedError

from recoverlink.config.rules_file import ActionModel, RuleModel
from recoverlink.config.templates import RENDER_ERRORS, TemplateCompiler
from recoverlink.domain.action_context import sample_context
from recoverlink.domain.actions import Action
from recoverlink.domain.catalog import SourceLocation
from recoverlink.domain.rules import Constant, Template

Loc = tuple[int | str, ...]
ReportError = Callable[[Sequence[int | str], str, str | None], None]
Locate = Callable[[Sequence[int | str]], int | None]
TEMPLATE_HINT = "action templates are sandboxed, strict Jinja2 (README, 'CX handoff actions')"
UNDEFINED_HINT = (
    "the names are recovery.*, trigger, action.*, labels, annotations, fields and now; a label or "
    "field may be missing: {{ labels.x | default('') }}"
)


class _ActionLoader:
    """Builds the actions of one rule, reporting every problem through `error`."""

    def __init__(
        self, rule: RuleModel, at: Loc, compiler: TemplateCompiler, error: ReportError, path: str
    ) -> None:
        self.rule, self.at, self.compiler, self.report, self.path = rule, at, compiler, error, path

    def action(self, index: int, model: ActionModel, line: int | None) -> Action:
        loc: Loc = (*self.at, "actions", index)
        context = sample_context(
            rule=self.rule.name, name=model.name, kind=model.kind.value, fields=list(self.rule.set.fields)
        )
        url = self._template((*loc, "url"), model.url, context) if model.url is not None else None
        if isinstance(url, Constant):
            self._check_url((*loc, "url"), url.source)
        if model.url is None and model.credential is None:
            self.report(loc, "an action needs a 'url', or a 'credential' that holds the URL", None)
        headers = {k: self._template((*loc, "headers", k), v, context) for k, v in model.headers.items()}
        body = self._template((*loc, "body"), model.body, context) if model.body is not None else None
        action = Action(
            rule=self.rule.name,
            name=model.name,
            kind=model.kind,
            on=tuple(model.on),
            method=model.method,
            url=url,
            credential=model.credential,
            headers={k: t for k, t in headers.items() if t is not None},
            body=body,
            content_type=model.content_type,
            source=SourceLocation(self.path, line),
        )
        if body is not None and action.sends_json:
            self._check_json((*loc, "body"), body, context)
        return action

    def _template(self, loc: Loc, text: str | None, context: Mapping[str, Any]) -> Template | None:
        if text is None:
            return None
        try:
            template = self.compiler.compile_action(text)
        except TemplateSyntaxError as exc:
            within = f" (line {exc.lineno} of the template)" if "\n" in text.strip() else ""
            self.report(loc, f"template syntax error{within}: {exc.message or exc}", TEMPLATE_HINT)
            return None
        try:
            template.render(context)
        except RENDER_ERRORS as exc:
            hint = UNDEFINED_HINT if isinstance(exc, UndefinedError) else TEMPLATE_HINT
            self.report(loc, f"template fails on a sample recovery: {type(exc).__name__}: {exc}", hint)
        return template

    def _check_url(self, loc: Loc, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.report(loc, f"invalid URL {url!r} (expected http:// or https:// with a host)", None)

    def _check_json(self, loc: Loc, body: Template, context: Mapping[str, Any]) -> None:
        try:
            text = body.render(context)
        except RENDER_ERRORS:
            return  # reported by `_template` already
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            self.report(
                loc,
                f"the body is not JSON on a sample recovery: {exc.msg} (line {exc.lineno} col {exc.colno})",
                "write strings with {{ value | tojson }}, or set content_type",
            )


def load_actions(
    rule: RuleModel,
    at: Loc,
    compiler: TemplateCompiler,
    *,
    path: str,
    error: ReportError,
    line_of: Locate,
) -> tuple[Action, ...]:
    """The rule's actions in file order; problems go to `error` (the rule file's error list)."""
    loader = _ActionLoader(rule, at, compiler, error, path)
    return tuple(
        loader.action(i, model, line_of((*at, "actions", i))) for i, model in enumerate(rule.actions)
    )
