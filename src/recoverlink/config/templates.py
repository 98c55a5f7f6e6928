"""Compile rule values into templates: plain text stays a constant, `{{ }}` becomes sandboxed Jinja2.

The sandbox refuses attribute access that could escape it (`__class__`, `__globals__`, ...), so an
SRE's rule can read labels, annotations and catalog fields, and nothing else.

Action templates (`compile_action`) render in a second, strict sandbox: a name that does not exist
is an error rather than an empty string (`recoverlink check` renders them against a sample recovery
to find such names), `None` prints as nothing, and `tojson` is plain `json.dumps` (Jinja's own
escapes `<`, `>`, `&` and `'` for HTML; action bodies are JSON for machines, not HTML).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, Undefined
from jinja2 import Template as JinjaCompiled
from jinja2.sandbox import ImmutableSandboxedEnvironment

from recoverlink.domain.rules import Constant, Template

_MARKERS = ("{{", "{%", "{#")
# What rendering a template can raise: the sandbox's SecurityError and undefined names are
# TemplateErrors; `{{ 1/0 }}`, a bad filter argument or `tojson` of an odd value raise Python's own.
RENDER_ERRORS = (TemplateError, ArithmeticError, LookupError, TypeError, ValueError)


@dataclass(frozen=True)
class JinjaTemplate:
    source: str
    compiled: JinjaCompiled

    def render(self, context: Mapping[str, Any]) -> str:
        return self.compiled.render(context).strip()


class TemplateCompiler:
    """One sandboxed environment per loaded config (no module-level state)."""

    def __init__(self, strict: bool = False) -> None:
        # Missing labels render as "" like Alertmanager's templates; strict mode is for tests.
        self._env = ImmutableSandboxedEnvironment(
            autoescape=False,
            undefined=StrictUndefined if strict else Undefined,
            keep_trailing_newline=False,
        )
        self._action_env = ImmutableSandboxedEnvironment(
            autoescape=False, undefined=StrictUndefined, finalize=_blank_none
        )
        self._action_env.filters["tojson"] = _tojson
        # Rule sets repeat the same few templates: compile each text once (broken ones are not kept).
        self._compiled: dict[str, JinjaTemplate] = {}
        self._compiled_actions: dict[str, JinjaTemplate] = {}

    def compile(self, text: str) -> Template:
        """A Constant when `text` has no template syntax, else a compiled sandboxed template.

        Raises TemplateSyntaxError (with `lineno`) for broken syntax.
        """
        if not any(marker in text for marker in _MARKERS):
            return Constant(text)
        template = self._compiled.get(text)
        if template is None:
            template = JinjaTemplate(text, _from_string(self._env, text))
            self._compiled[text] = template
        return template

    def compile_action(self, text: str) -> Template:
        """Like `compile`, in the strict action sandbox (see the module docstring)."""
        if not any(marker in text for marker in _MARKERS):
            return Constant(text)
        template = self._compiled_actions.get(text)
        if template is None:
            template = JinjaTemplate(text, _from_string(self._action_env, text))
            self._compiled_actions[text] = template
        return template


def _blank_none(value: Any) -> Any:
    return "" if value is None else value


def _tojson(value: Any, indent: int | None = None) -> str:
    """JSON text of a value from the context (strings, numbers, lists, mappings, None)."""
    if isinstance(value, Undefined):
        str(value)  # a strict undefined raises its own error here: "'dict object' has no attribute 'x'"
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _from_string(env: ImmutableSandboxedEnvironment, text: str) -> JinjaCompiled:
    compiled = env.from_string(text)
    # A template's globals are a ChainMap over the environment's, which every render copies key
    # by key; a plain dict of the same names (neither changes after loading) halved a render.
    compiled.globals = dict(compiled.globals)
    return compiled


__all__ = ["RENDER_ERRORS", "JinjaTemplate", "TemplateCompiler", "TemplateSyntaxError"]
