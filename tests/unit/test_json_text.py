"""compact_json writes what json.dumps writes, so dedup keys stored by earlier versions still match."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from recoverlink.domain.json_text import compact_json, parse_json

# What a decoded webhook body holds: text (any code point a UTF-8 body can carry), 64-bit
# integers, booleans, None, lists and string-keyed objects.
_TEXT = st.text(st.characters(exclude_categories=["Cs"]))
_SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _TEXT
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)


def _standard(value: Any, sort_keys: bool) -> bytes:
    return json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False).encode()


@given(_DOCUMENTS)
def test_decoded_documents_are_written_byte_for_byte_as_the_standard_library_writes_them(value: Any) -> None:
    assert compact_json(value, sort_keys=True) == _standard(value, sort_keys=True)
    assert compact_json(value) == _standard(value, sort_keys=False)


def test_what_orjson_refuses_is_still_written_as_valid_json() -> None:
    value = {"huge": 2**70, 1: "an integer key", "lone": "\ud800"}
    text = compact_json(value, sort_keys=False)
    assert json.loads(text) == {"huge": 2**70, "1": "an integer key", "lone": "\ud800"}
    assert text.isascii()


def _outcome(decode: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "value", decode(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return "error", (type(exc), str(exc))


@given(_DOCUMENTS.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=64))
def test_parse_json_reads_and_refuses_exactly_what_json_loads_does(data: bytes) -> None:
    assert _outcome(parse_json, data) == _outcome(json.loads, data)


def test_what_only_the_standard_library_reads_is_still_read() -> None:
    assert parse_json(b'{"n": 123456789012345678901234567890, "s": "\\ud800"}') == {
        "n": 123456789012345678901234567890,
        "s": "\ud800",
    }
