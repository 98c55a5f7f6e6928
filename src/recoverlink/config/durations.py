"""Prometheus-style durations (`90s`, `5m`, `1h30m`, `2d`), as SREs already write them."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m`-style text; raises ValueError naming the accepted form."""
    text = text.strip()
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r} (use e.g. 90s, 5m, 1h30m, 2d)")
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))


def _coerce(value: object) -> object:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("write durations with a unit, e.g. 90s or 5m")
    return value


Duration = Annotated[timedelta, BeforeValidator(_coerce)]
