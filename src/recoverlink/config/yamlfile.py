"""Read YAML keeping line marks, and turn pydantic errors into `file:line:col` config errors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from recoverlink.domain.errors import ConfigError, ConfigErrors

M = TypeVar("M", bound=BaseModel)


def load_yaml(path: Path) -> Any:
    """Parse one YAML document, keeping line marks; syntax errors become a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigErrors([ConfigError(str(path), f"cannot read file: {exc.strerror}")]) from exc
    return parse_yaml(text, str(path))


def parse_yaml(text: str, name: str) -> Any:
    yaml = YAML(typ="rt")
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        col = mark.column + 1 if mark is not None else None
        message = f"invalid YAML: {exc.problem or exc.context}"
        raise ConfigErrors([ConfigError(name, message, line, col)]) from exc


def locate(node: Any, loc: Sequence[int | str]) -> tuple[int | None, int | None]:
    """Find the 1-based line and column of the value (or unknown key) at a pydantic `loc`."""
    line: int | None = None
    col: int | None = None
    if isinstance(node, CommentedMap | CommentedSeq):
        line, col = node.lc.line + 1, node.lc.col + 1
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            key_line, key_col = node.lc.key(part)
            line, col = key_line + 1, key_col + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            item_line, item_col = node.lc.item(part)
            line, col = item_line + 1, item_col + 1
            node = node[part]
        else:
            break
    return line, col


def _message(error: dict[str, Any]) -> str:
    path = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown key {path!r}"
    if error["type"] == "missing":
        return f"{path}: required key is missing"
    return f"{path}: {error['msg']}" if path else str(error["msg"])


def validate(model: type[M], node: Any, name: str, context: dict[str, Any] | None = None) -> M:
    """Validate a YAML tree against a model, reporting every error with its line."""
    try:
        return model.model_validate(node if node is not None else {}, context=context)
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False):
            loc = error["loc"]
            line, col = locate(node, loc)
            errors.append(ConfigError(name, _message(dict(error)), line, col))
        raise ConfigErrors(errors) from exc
