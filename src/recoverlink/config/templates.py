"""Compile rule values into templates: plain text stays a constant, `{{ }}` becomes sandboxed Jinja2.

The sandbox refuses attribute access that could escape it (`__class__`, `__globals__`, ...), so an
SRE's rule can read labels, annotations and catalog fields, and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined
from jinja2 import Template as JinjaCompiled
from jinja2.sandbox import ImmutableSandboxedEnvironment

from recoverlink.domain.rules import Constant, Template

_MARKERS = ("{{", "{%", "{#")


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
        # Rule sets repeat the same few templates: compile each text once (broken ones are not kept).
        self._compiled: dict[str, JinjaTemplate] = {}

    def compile(self, text: str) -> Template:
        """A Constant when `text` has no template syntax, else a compiled sandboxed template.

        Raises TemplateSyntaxError (with `lineno`) for broken syntax.
        """
        if not any(marker in text for marker in _MARKERS):
            return Constant(text)
        template = self._compiled.get(text)
        if template is None:
            template = JinjaTemplate(text, self._env.from_string(text))
            self._compiled[text] = template
        return template


__all__ = ["JinjaTemplate", "TemplateCompiler", "TemplateSyntaxError"]
