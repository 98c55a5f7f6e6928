"""The libyaml reader gives what ruamel.yaml's round-trip loader gave: values, marks and errors."""

from __future__ import annotations

from typing import Any

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from recoverlink.config.yamlfile import YamlMap, YamlSeq, locate, parse_documents, parse_yaml
from recoverlink.domain.errors import ConfigError, ConfigErrors

SAMPLE = """\
name: svc-0421
flags: [yes, no, on, off, y, n, true, False, ~, null, '', "x"]
numbers: {int: 12, octal: 012, hex: 0x1F, float: 1.5, exp: 1e3, under: 1_000, time: 1:20}
when: 2024-01-02
text: |
  two
  lines
folded: >
  one
  line
rules:
  - name: a
    match:
      - severity="critical"
  -   name: b
      match: '{team="x"}'
empty:
nested:
  - - 1
    - [2, {k: v}]
"""


def _marks(node: Any) -> Any:
    """Values with every mark, from either tree, to compare the two."""
    if isinstance(node, CommentedMap):
        return (
            "map",
            (node.lc.line + 1, node.lc.col + 1),
            [(k, tuple(x + 1 for x in node.lc.key(k)), _marks(v)) for k, v in node.items()],
        )
    if isinstance(node, CommentedSeq):
        return (
            "seq",
            (node.lc.line + 1, node.lc.col + 1),
            [(tuple(x + 1 for x in node.lc.item(i)), _marks(v)) for i, v in enumerate(node)],
        )
    if isinstance(node, YamlMap):
        return ("map", (node.line, node.col), [(k, node.key_marks[k], _marks(v)) for k, v in node.items()])
    if isinstance(node, YamlSeq):
        return ("seq", (node.line, node.col), [(node.item_marks[i], _marks(v)) for i, v in enumerate(node)])
    return (type(node).__mro__[-2] if isinstance(node, str) else type(node), node)


def test_values_and_marks_match_ruamel_round_trip() -> None:
    assert _marks(parse_yaml(SAMPLE, "f.yaml")) == _marks(YAML(typ="rt").load(SAMPLE))


def test_yaml_1_2_booleans_stay_strings() -> None:
    node = parse_yaml("a: yes\nb: on\nc: true\n", "f.yaml")
    assert node == {"a": "yes", "b": "on", "c": True}


def test_locate_reports_key_and_item_marks() -> None:
    node = parse_yaml(SAMPLE, "f.yaml")
    assert locate(node, ()) == (1, 1)
    assert locate(node, ("rules", 1)) == (15, 7)
    assert locate(node, ("rules", 1, "match")) == (16, 7)
    assert locate(node, ("rules", 0, "match", 0)) == (14, 9)
    assert locate(node, ("rules", 5, "name")) == (11, 1)


def _ruamel_error(text: str) -> str:
    try:
        YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        return str(exc.problem or exc.context)
    raise AssertionError("ruamel accepted it")


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",  # duplicate key
        "a: [1, 2\n",  # unclosed flow sequence
        "a: 1\n---\nb: 2\n",  # two documents where one is expected
        "a: b: c\n",
    ],
)
def test_errors_are_ruamels(text: str) -> None:
    with pytest.raises(ConfigErrors) as info:
        parse_yaml(text, "f.yaml")
    (error,) = info.value.errors
    assert error.message == f"invalid YAML: {_ruamel_error(text)}"
    assert error.line is not None


def test_merge_keys_are_read_by_ruamel() -> None:
    node = parse_yaml("base: &b {x: 1}\nuse:\n  <<: *b\n  y: 2\n", "f.yaml")
    assert node["use"] == {"x": 1, "y": 2}
    assert locate(node, ("use", "y")) == (4, 3)


def test_documents_before_a_syntax_error_are_kept() -> None:
    errors: list[ConfigError] = []
    docs = list(parse_documents("a: 1\n---\nb: [\n", "f.yaml", errors))
    assert docs == [{"a": 1}]
    assert len(errors) == 1
    assert errors[0].line is not None


def test_empty_file_is_none() -> None:
    assert parse_yaml("", "f.yaml") is None
    assert parse_yaml("# only a comment\n", "f.yaml") is None
