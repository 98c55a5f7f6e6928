"""The JSON log line: its fields, its clock text, and what configure_logging leaves out of records."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from recoverlink.logs import JsonFormatter, request_id

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("recoverlink.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)


def only_line(out: io.StringIO) -> dict[str, object]:
    [line] = out.getvalue().splitlines()
    entry: dict[str, object] = json.loads(line)
    return entry


def test_a_line_has_time_level_logger_message_request_id_then_the_extra_fields_in_order(
    lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = lines
    token = request_id.set("req-1")
    try:
        logger.info("notification %s", "stored", extra={"notification_id": 7, "outcome": "accepted"})
    finally:
        request_id.reset(token)
    entry = only_line(out)
    assert list(entry) == ["time", "level", "logger", "message", "request_id", "notification_id", "outcome"]
    assert entry["level"] == "info"
    assert entry["logger"] == "recoverlink.test_logs"
    assert entry["message"] == "notification stored"
    assert entry["request_id"] == "req-1"
    assert (entry["notification_id"], entry["outcome"]) == (7, "accepted")
    assert TIME.fullmatch(str(entry["time"]))


def test_outside_a_request_there_is_no_request_id_and_odd_values_become_text(
    lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = lines
    logger.warning("store unavailable", extra={"at": datetime(2026, 12, 1, tzinfo=UTC), "_private": 1})
    entry = only_line(out)
    assert "request_id" not in entry and "_private" not in entry
    assert entry["at"] == "2026-12-01 00:00:00+00:00"


def test_an_exception_is_one_field_with_its_traceback(lines: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = lines
    try:
        raise ValueError("broken")
    except ValueError:
        logger.exception("unhandled error")
    entry = only_line(out)
    assert entry["level"] == "error"
    assert str(entry["exception"]).startswith("Traceback") and "ValueError: broken" in str(entry["exception"])


@pytest.mark.parametrize(
    "created", [1_764_595_685.0, 1_764_595_685.1234, 1_764_595_685.9994, 1_764_595_686.001]
)
def test_the_time_is_utc_with_milliseconds_as_datetime_writes_it(created: float) -> None:
    formatter = JsonFormatter()
    formatter.utc_time(created - 1)  # a cached earlier second must not leak into the next one
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert formatter.utc_time(created) == expected
    assert formatter.utc_time(created) == expected, "the cached second answers alike"
