"""ITSM call latencies against a real Request Tracker 5: what each RtAdapter operation costs.

It starts the same throw-away RT as the tests (tests/support/rt.py: Debian RT 5.0.3, SQLite,
Starlet with 2 workers, BcryptCost 4, on loopback; run as root after
`scripts/ensure-request-tracker`), then times, one call at a time through `RtAdapter` and after
`--warmup` untimed calls of each kind:

- create: `--n` new tickets in the bench queue (POST /ticket, then the read-back GET);
- find: each of them by its correlation id (one TicketSQL search);
- add_note: a comment on each (POST /ticket/:id/comment);
- read: each ticket (GET /ticket/:id);
- resolve: each, with the `close` policy (comment, PUT Status, read-back GET).

Each adapter operation is one or more REST2 calls (the `calls` column); the latency is the whole
operation, as the worker sees it. The callback scrip is left out unless `--with-scrip`, so that
resolve measures RT and not a receiver.

    .venv/bin/python bench/itsm_rt.py [--n 50] [--warmup 5] [--with-scrip]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import benchlib

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support.rt starts the RT, as it does for the test suite

from tests.support.rt import RequestTracker, request_tracker_problem, running_request_tracker  # noqa: E402

from recoverlink.adapters.itsm.rt import RtAdapter  # noqa: E402
from recoverlink.domain.itsm import IncidentDraft  # noqa: E402
from recoverlink.domain.rules import ResolutionPolicy  # noqa: E402

T = TypeVar("T")
# name, REST2 calls per operation
OPERATIONS = (("find", 1), ("create", 2), ("add_note", 1), ("read", 1), ("resolve", 3))


@dataclass
class Samples:
    """Milliseconds per operation, in the order they were taken."""

    by_operation: dict[str, list[float]]

    def time(self, name: str, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        result = call()
        self.by_operation.setdefault(name, []).append((time.perf_counter() - started) * 1000)
        return result


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def draft(run: str, index: int) -> IncidentDraft:
    return IncidentDraft(
        correlation_id=f"recoverlink:rec-{run}{index:05d}",
        title=f"Checkout errors high ({index})",
        description="5xx above 2 % since 18:00\nrunbook: https://runbooks.example/checkout",
        priority="P2",
    )


def run_operations(adapter: RtAdapter, count: int, run: str, samples: Samples | None) -> None:
    """`count` of each operation, on `count` new tickets; timed into `samples` unless None."""
    record = samples or Samples({})
    drafts = [draft(run, i) for i in range(count)]
    links = [record.time("create", partial(adapter.create_incident, one)) for one in drafts]
    for one in drafts:
        record.time("find", partial(adapter.find_incident, one.correlation_id))
    for link in links:
        record.time("add_note", partial(adapter.add_note, link, "impact: 40 failed checkouts/min"))
    for link in links:
        record.time("read", partial(adapter.read_incident, link))
    for link in links:
        record.time("resolve", partial(adapter.resolve_incident, link, ResolutionPolicy.CLOSE, "verified"))


def table(samples: Samples) -> str:
    columns = [
        ("operation", "<"),
        ("calls", ">"),
        ("n", ">"),
        ("p50 ms", ">"),
        ("p99 ms", ">"),
        ("max ms", ">"),
    ]
    rows = []
    for name, calls in OPERATIONS:
        values = sorted(samples.by_operation[name])
        cells = [percentile(values, 0.5), percentile(values, 0.99), values[-1]]
        rows.append([name, str(calls), str(len(values)), *(f"{v:.1f}" for v in cells)])
    return benchlib.render_table(columns, rows)


def describe(rt: RequestTracker) -> str:
    steps = ", ".join(
        f"{name.removesuffix('_seconds')} {seconds:.2f} s" for name, seconds in rt.timings.items()
    )
    return f"RT at {rt.url} ({steps})"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=50, help="timed calls of each operation")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls of each operation first")
    parser.add_argument(
        "--with-scrip", action="store_true", help="install the callback scrip as the tests do"
    )
    args = parser.parse_args()
    if (problem := request_tracker_problem()) is not None:
        print(f"cannot start Request Tracker: {problem}", file=sys.stderr)
        return 2
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()}", flush=True)
    run = str(int(time.time()) % 10**6)
    samples = Samples({})
    with tempfile.TemporaryDirectory(prefix="recoverlink-rt-bench-") as directory:
        with running_request_tracker(Path(directory), with_scrip=args.with_scrip) as rt:
            print(describe(rt), flush=True)
            adapter = rt.adapter()
            run_operations(adapter, args.warmup, f"{run}0", None)
            run_operations(adapter, args.n, f"{run}1", samples)
        print(f"stopped: {describe(rt)}")
    print(f"load after: {os.getloadavg()}\n")
    print(table(samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
