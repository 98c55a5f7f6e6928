"""bench/ingest.py's bookkeeping: which run of a cell the table shows, and which spreads it re-runs."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).parents[2] / "bench"


@pytest.fixture(scope="module")
def ingest() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        import ingest as module
    finally:
        sys.path.remove(str(BENCH))
    return module


def run(ingest: ModuleType, rate: float, p99_ms: float, rss_mb: float, non2xx: int = 0) -> object:
    return ingest.Row(
        backend="sqlite",
        app="recoverlink",
        path="insert",
        concurrency=8,
        notifications_per_s=rate,
        alerts_per_s=3 * rate,
        p50_ms=p99_ms / 2,
        p99_ms=p99_ms,
        rss_mb=rss_mb,
        non2xx=non2xx,
        socket_errors=0,
        notes=[f"note {rate:.0f}"],
        worker_connections=[4, 4],
    )


def test_the_table_shows_the_median_run_whole_with_the_worst_rss_and_every_error(ingest: ModuleType) -> None:
    runs = [
        run(ingest, 450, 30.0, 90.0),
        run(ingest, 250, 45.0, 95.0, non2xx=1),
        run(ingest, 400, 20.0, 91.0),
    ]
    shown = ingest.median_run(runs)
    assert (shown.notifications_per_s, shown.p99_ms, shown.p50_ms) == (400, 20.0, 10.0), "one run, not a mix"
    assert (shown.rss_mb, shown.non2xx) == (95.0, 1)
    assert shown.notes == ["note 450", "note 250", "note 400"]
    assert shown.runs_per_s == [450, 250, 400]
    assert ingest.spread_line(runs) == (
        "3 runs: notif/s 250-450 (median 400, range 44% of the highest), p99 20.0-45.0 ms"
    )


def test_of_an_even_count_of_runs_the_lower_middle_one_is_shown(ingest: ModuleType) -> None:
    runs = [run(ingest, rate, 10.0, 90.0) for rate in (300, 100, 400, 200)]
    assert ingest.median_run(runs).notifications_per_s == 200


@pytest.mark.parametrize(
    ("split", "connections", "even"),
    [
        ([4, 4], 8, True),
        ([5, 3], 8, True),
        ([6, 2], 8, False),
        ([8, 0], 8, False),
        ([1, 0], 1, True),  # one connection cannot be spread
        ([20, 12], 32, True),
        ([21, 11], 32, False),
        ([], 8, True),  # not known: kept
    ],
)
def test_a_run_is_restarted_only_when_one_worker_holds_over_a_quarter_more_than_its_share(
    ingest: ModuleType, split: list[int], connections: int, even: bool
) -> None:
    assert ingest.is_spread_evenly(split, connections) is even
