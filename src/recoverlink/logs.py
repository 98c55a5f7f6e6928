"""Structured logs: one JSON object per line, with the request id of the request being served and,
when tracing is on, the trace and span id of the current span."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

import orjson
from opentelemetry import trace

request_id: ContextVar[str | None] = ContextVar("recoverlink_request_id", default=None)

# Attributes every LogRecord has; anything else was passed through `extra=` and is a field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line: time, level, logger, message, request id and extra fields.

    Cheap on purpose, as every new notification logs a line: the time's text is made once per
    second, and orjson writes the line (as the standard library would, but several times faster;
    times, dataclasses and other values it has its own form for are written as str() of them).
    What orjson refuses (integers past 64 bits) the standard library writes."""

    _OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS

    def __init__(self) -> None:
        super().__init__()
        self._fallback = json.JSONEncoder(default=str, separators=(",", ":"), ensure_ascii=False).encode
        self._second: tuple[int, str] = (-1, "")

    def _encode(self, entry: dict[str, Any]) -> str:
        try:
            return orjson.dumps(entry, default=str, option=self._OPTIONS).decode()
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            return self._fallback(entry)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.utc_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid is not None:
            entry["request_id"] = rid
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self._encode(entry)

    def utc_time(self, created: float) -> str:
        """`2026-12-01T13:28:05.123+00:00` (RFC 3339, milliseconds, UTC) for a `time.time()` value,
        rounded to the microsecond first as `datetime.fromtimestamp` does."""
        second, micros = divmod(round(created * 1_000_000), 1_000_000)
        cached = self._second  # one tuple: threads sharing the formatter never see half an update
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = cached
        return f"{cached[1]}.{micros // 1000:03d}+00:00"


def configure_logging(level: str) -> None:
    """Send every logger (ours, gunicorn's, alembic's) through one JSON handler on stderr.

    Records skip what the JSON line never shows (the caller's file and line, thread and process
    names): collecting them was a third of the cost of each line."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # The logging HOWTO's "Optimization": no findCaller() per record (so no `stack_info` either).
    logging._srcfile = None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("gunicorn.error", "gunicorn.access", "alembic"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
