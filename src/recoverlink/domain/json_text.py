"""JSON in and out as the standard library reads and writes it, but fast (orjson) on the webhook path.

orjson writes the same text for what a decoded JSON document holds (strings, 64-bit integers,
booleans, None, lists and string-keyed dicts), several times faster than the standard library,
which mattered on every webhook. What orjson refuses (integers past 64 bits, non-string keys,
lone surrogates) goes to the standard library with non-ASCII escaped, so every value json.dumps
accepts is still written, as text any driver can bind. Reading likewise: what orjson refuses
(and the standard library may still accept: NaN, huge integers, lone surrogates, or else explain
in its own words) is read again by json.loads.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def compact_json(value: Any, *, sort_keys: bool = False) -> bytes:
    """`value` as compact UTF-8 JSON, keys sorted when asked (the form a hash is taken of)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value, sort_keys=sort_keys, separators=(",", ":")).encode("ascii")


def parse_json(text: bytes) -> Any:
    """Decode JSON as json.loads does, raising its errors (UnicodeDecodeError, JSONDecodeError)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
