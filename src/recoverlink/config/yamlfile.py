"""Read YAML keeping line marks, and turn pydantic errors into `file:line:col` config errors.

Files are parsed with libyaml (PyYAML's C parser) into plain dicts and lists that carry the 1-based
line and column of every key and item (`YamlMap`, `YamlSeq`). Scalars are resolved the way ruamel.yaml's
round-trip loader resolves them (YAML 1.2: `yes`/`on` stay strings). Anything out of the ordinary (a
syntax error, a duplicate key, a merge key, an explicit tag, a `%YAML` directive) is handed to ruamel.yaml,
whose result or error is what recoverlink always gave, so errors keep their exact messages and marks.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.resolver import implicit_resolvers
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from recoverlink.domain.errors import ConfigError, ConfigErrors

M = TypeVar("M", bound=BaseModel)

Mark = tuple[int, int]


class YamlMap(dict[Any, Any]):
    """A YAML mapping with the 1-based (line, col) of itself and of each key."""

    __slots__ = ("col", "key_marks", "line")

    def __init__(self, line: int, col: int) -> None:
        super().__init__()
        self.line, self.col = line, col
        self.key_marks: dict[Any, Mark] = {}


class YamlSeq(list[Any]):
    """A YAML sequence with the 1-based (line, col) of itself and of each item."""

    __slots__ = ("col", "item_marks", "line")

    def __init__(self, line: int, col: int) -> None:
        super().__init__()
        self.line, self.col = line, col
        self.item_marks: list[Mark] = []


class _Fallback(Exception):
    """This document needs ruamel.yaml to read it exactly as before."""


_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_PLAIN = "?plain"  # an untagged plain scalar: resolved below, as ruamel resolves YAML 1.2
_RUAMEL_SCALARS = frozenset(
    {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"}
)


def _resolvers_12() -> dict[str, list[tuple[str, Any]]]:
    table: dict[str, list[tuple[str, Any]]] = {}
    for versions, tag, regexp, first in implicit_resolvers:
        if (1, 2) in versions:
            for ch in first:
                table.setdefault(ch, []).append((tag, regexp))
    return table


_RESOLVERS = _resolvers_12()


try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml: ruamel.yaml reads every file, as it always did
    CParser = None

_LIBYAML = CParser is not None


class _Loader(CParser if _LIBYAML else object):  # type: ignore[misc]
    """libyaml's composer; plain scalars are left for `_plain` to resolve."""

    def resolve(self, kind: type[Node], value: str | None, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            return _PLAIN if implicit[0] else _STR
        return _SEQ if kind is SequenceNode else _MAP

    def descend_resolver(self, parent: Node | None, index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass


@functools.lru_cache(maxsize=4096)
def _ruamel_scalar(text: str) -> Any:
    """A plain number or timestamp exactly as ruamel's round-trip loader constructs it."""
    return YAML(typ="rt").load(text)


def _plain(value: str) -> Any:
    for tag, regexp in _RESOLVERS.get(value[:1], ()):
        if regexp.match(value):
            if tag == _NULL:
                return None
            if tag == _BOOL:
                return value.lower() == "true"
            if tag in _RUAMEL_SCALARS:
                return _ruamel_scalar(value)
            raise _Fallback  # merge key `<<`, `=`
    return value


class _Builder:
    def __init__(self) -> None:
        self.memo: dict[int, Any] = {}  # aliased collections are shared, as ruamel shares them

    def value(self, node: Node) -> Any:
        if type(node) is ScalarNode:
            tag = node.tag
            if tag == _PLAIN:
                text = node.value
                # Most plain scalars are names: only a few first characters can start a number, bool, null.
                return _plain(text) if text[:1] in _RESOLVERS else text
            if tag == _STR:
                return node.value
            raise _Fallback
        built = self.memo.get(id(node))
        if built is not None:
            return built
        mark = node.start_mark
        if type(node) is MappingNode and node.tag == _MAP:
            mapping = YamlMap(mark.line + 1, mark.column + 1)
            self.memo[id(node)] = mapping
            marks = mapping.key_marks
            for key_node, value_node in node.value:
                if type(key_node) is not ScalarNode:
                    raise _Fallback
                key = self.value(key_node)
                if key in mapping:
                    raise _Fallback  # ruamel reports the duplicate key
                key_mark = key_node.start_mark
                marks[key] = (key_mark.line + 1, key_mark.column + 1)
                mapping[key] = self.value(value_node)
            return mapping
        if type(node) is SequenceNode and node.tag == _SEQ:
            seq = YamlSeq(mark.line + 1, mark.column + 1)
            self.memo[id(node)] = seq
            items = seq.item_marks
            for item in node.value:
                item_mark = item.start_mark
                items.append((item_mark.line + 1, item_mark.column + 1))
                seq.append(self.value(item))
            return seq
        raise _Fallback


def _from_ruamel(node: Any, memo: dict[int, Any] | None = None) -> Any:
    """A ruamel round-trip tree as YamlMap/YamlSeq (values kept as ruamel constructed them)."""
    memo = {} if memo is None else memo
    if not isinstance(node, CommentedMap | CommentedSeq):
        return node
    if id(node) in memo:
        return memo[id(node)]
    if isinstance(node, CommentedMap):
        mapping = YamlMap(node.lc.line + 1, node.lc.col + 1)
        memo[id(node)] = mapping
        for key, value in node.items():
            if key in node.lc.data:
                key_line, key_col = node.lc.key(key)
                mapping.key_marks[key] = (key_line + 1, key_col + 1)
            mapping[key] = _from_ruamel(value, memo)
        return mapping
    seq = YamlSeq(node.lc.line + 1, node.lc.col + 1)
    memo[id(node)] = seq
    for i, item in enumerate(node):
        item_line, item_col = node.lc.item(i)
        seq.item_marks.append((item_line + 1, item_col + 1))
        seq.append(_from_ruamel(item, memo))
    return seq


def _syntax_error(exc: MarkedYAMLError, name: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    col = mark.column + 1 if mark is not None else None
    return ConfigError(name, f"invalid YAML: {exc.problem or exc.context}", line, col)


def _fast_documents(text: str) -> list[Any]:
    """Every document of `text` read with libyaml; raises _Fallback when ruamel must read it."""
    if not _LIBYAML or "%YAML" in text:
        raise _Fallback
    loader = _Loader(text)
    try:
        documents = []
        while loader.check_node():
            documents.append(_Builder().value(loader.get_node()))
        return documents
    except yaml.YAMLError as exc:
        raise _Fallback from exc
    finally:
        loader.dispose()


def load_yaml(path: Path) -> Any:
    """Parse one YAML document, keeping line marks; syntax errors become a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigErrors([ConfigError(str(path), f"cannot read file: {exc.strerror}")]) from exc
    return parse_yaml(text, str(path))


def parse_yaml(text: str, name: str) -> Any:
    """One document as YamlMap/YamlSeq/scalars. Treat the result as read-only: it may be shared."""
    try:
        documents = _fast_documents(text)
    except _Fallback:
        return _ruamel_single(text, name)
    if len(documents) != 1:
        return _ruamel_single(text, name)  # empty, or several documents: ruamel decides as before
    return documents[0]


def _ruamel_single(text: str, name: str) -> Any:
    try:
        node = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        raise ConfigErrors([_syntax_error(exc, name)]) from exc
    return _from_ruamel(node)


def parse_documents(text: str, name: str, errors: list[ConfigError]) -> Iterator[Any]:
    """Every `---` document of `text`; a syntax error goes to `errors`, after the documents before it."""
    try:
        documents = _fast_documents(text)
    except _Fallback:
        pass
    else:
        yield from documents
        return
    loaded = YAML(typ="rt").load_all(text)
    while True:
        try:
            node = next(loaded)
        except StopIteration:
            return
        except MarkedYAMLError as exc:
            errors.append(_syntax_error(exc, name))
            return
        yield _from_ruamel(node)


def locate(node: Any, loc: Sequence[int | str]) -> tuple[int | None, int | None]:
    """Find the 1-based line and column of the value (or unknown key) at a pydantic `loc`."""
    line: int | None = None
    col: int | None = None
    if isinstance(node, YamlMap | YamlSeq):
        line, col = node.line, node.col
    for part in loc:
        if isinstance(node, YamlMap) and part in node:
            mark = node.key_marks.get(part)
            if mark is not None:
                line, col = mark
            node = node[part]
        elif isinstance(node, YamlSeq) and isinstance(part, int) and part < len(node):
            line, col = node.item_marks[part]
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
