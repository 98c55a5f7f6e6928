"""The webhook path's own cost, in one process: no gunicorn, no sockets, no other process.

Builds the app as `recoverlink serve` does (the example config, SQLite in a temp dir, metrics in
multiprocess mode, JSON logs), then calls its WSGI entry point with prebuilt requests, one thread,
and prints CPU per request (the best and the median of rounds of 1,000). The paths are those of
bench/ingest.py: `duplicate` (the same 3-alert group again and again) and `insert` (3 new alerts
per request). What bench/ingest.py's throughput hides (VM noise, the other process, the load
generator) is not in these figures, so they compare two trees of code well.

    .venv/bin/python bench/ingest_inprocess.py duplicate|insert [--requests 5000] [--warmup 200] 2>/dev/null

(stderr carries the app's JSON log lines, one per new notification, as under gunicorn.)

Instruction counts, which are the same from run to run: run it under
`valgrind --tool=callgrind --callgrind-out-file=/dev/null` with `--requests 1` and with
`--requests 301` (PYTHONHASHSEED=0, same --warmup), and divide the difference of the two
"Collected" totals by 300.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import ingest  # noqa: E402  (bench/ingest.py: the config and bodies it serves)

_MARKER = re.compile(r"@FP(\d+)@")


def build_app(tmp: Path) -> tuple[Any, str]:
    """The app of the example config on a fresh SQLite database, and its webhook token."""
    config_path, config = ingest.recoverlink_config(tmp, "127.0.0.1:9")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOVERLINK_")}
    subprocess.run(
        [str(ingest.BIN / "recoverlink"), "db", "upgrade", "--config", str(config_path)],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    metrics = tmp / "metrics"
    metrics.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)  # before prometheus_client is imported
    from recoverlink import heap
    from recoverlink.bootstrap import ensure_token_files
    from recoverlink.config.loader import load_settings
    from recoverlink.logs import configure_logging
    from recoverlink.web import create_app

    settings = load_settings(config_path, env)
    ensure_token_files(settings)
    configure_logging(settings.config.logging.level)
    app = create_app(settings, environ=env, follow_config=True)
    heap.settle()  # as `recoverlink serve` does once its app is built
    token = Path(config["webhook"]["auth"]["bearer"]["file"]).read_text().strip()
    return app, token


def bodies(tmp: Path, path: str, count: int) -> list[bytes]:
    """`count` request bodies of the path (new fingerprints in each for `insert`)."""
    text = ingest.write_bodies(tmp)[path].read_text()
    if path == "duplicate":
        return [text.encode()] * count
    return [_with_new_fingerprints(text, n).encode() for n in range(count)]


def _with_new_fingerprints(template: str, n: int) -> str:
    """Request `n` of the insert template: its @FP<k>@ markers (bench/ingest.py) as new fingerprints."""
    return _MARKER.sub(lambda m: f"{n:013x}{int(m[1]):03x}", template)


def requester(app: Any, token: str) -> tuple[Callable[[bytes], Any], Callable[[Any], None]]:
    """A function that prebuilds a request's WSGI environ from a body, and one that runs it."""
    from werkzeug.test import EnvironBuilder

    headers = {"Authorization": f"Bearer {token}", "User-Agent": "Alertmanager/0.25.0"}

    def environ(body: bytes) -> Any:
        builder = EnvironBuilder(
            path=ingest.WEBHOOK, method="POST", data=body, headers=headers, content_type="application/json"
        )
        return builder.get_environ()

    def call(env: Any) -> None:
        status: list[str] = []
        for _ in app.wsgi_app(env, lambda s, h, e=None: status.append(s)):
            pass
        if not status[0].startswith("200"):
            raise SystemExit(f"webhook answered {status[0]}")

    return environ, call


def rounds(call: Callable[[Any], None], environs: Iterable[Any], size: int = 1000) -> list[float]:
    """CPU ms per request of each round of `size` requests."""
    items = list(environs)
    out = []
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        began = time.process_time()
        for env in chunk:
            call(env)
        out.append((time.process_time() - began) / len(chunk) * 1e3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", choices=ingest.PATHS)
    parser.add_argument("--requests", type=int, default=5000, help="measured requests (default 5000)")
    parser.add_argument("--warmup", type=int, default=200, help="requests before measuring (default 200)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rl-inprocess-") as tmp:
        app, token = build_app(Path(tmp))
        environ, call = requester(app, token)
        environs = [environ(b) for b in bodies(Path(tmp), args.path, args.warmup + args.requests)]
        for env in environs[: args.warmup]:
            call(env)
        per = rounds(call, environs[args.warmup :])
    print(
        f"{args.path}: {args.requests} requests, CPU per request: best round {min(per):.3f} ms, "
        f"median {statistics.median(per):.3f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
