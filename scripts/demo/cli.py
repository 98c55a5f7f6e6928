"""`make demo`'s command line: start the stack, run the outage, say where to look, stop everything.

Every program is started by the demo and stopped by it, by PID, on every way out: the end of
`--exit-when-done`, Ctrl-C, SIGTERM, or a failure (which prints what did not happen and the tail of
the log that says why). Once stopping has begun, further Ctrl-C or SIGTERM are ignored so that
the stop is never cut short; each program gets a grace period, then its process group is killed.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from demo import stack
from demo.narration import Narrator
from demo.processes import LOOPBACK, DemoError, Started, Supervisor
from demo.request_tracker import RequestTracker, request_tracker_problem, start_request_tracker
from demo.scenario import Running, run_outage, where_the_time_went
from demo.servers import serving_agent_desktop, serving_payments_exporter

MARKER = ".recoverlink-demo"  # a directory with it is the demo's own and may be wiped


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C does, so every `finally` stops what it started."""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/demo",
        description="Run a scripted checkout outage through Prometheus, Alertmanager, Request Tracker "
        "and recoverlink on 127.0.0.1, print each step, then keep the stack up until Ctrl-C.",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=stack.DEFAULT_DIR,
        help="where the demo keeps its files (wiped at start, kept after; default var/demo)",
    )
    parser.add_argument(
        "--exit-when-done",
        action="store_true",
        help="stop everything and exit once the recovery is closed (for tests and CI)",
    )
    parser.add_argument(
        "--free-ports",
        action="store_true",
        help="always take free ports instead of the documented defaults (9471, 9480, 9490-9493)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """0 when the recovery closed (and, without --exit-when-done, Ctrl-C stopped the demo)."""
    args = _parse(argv)
    narrator = Narrator()
    # A shell starts a background job with SIGINT ignored, and Python keeps it so: restore Ctrl-C.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(args, narrator)
    except DemoError as exc:
        narrator.say(f"\ndemo failed: {exc}")
        return 1
    except KeyboardInterrupt:
        narrator.say("demo interrupted (Ctrl-C) before the recovery closed")
        return 130
    except Terminated:
        narrator.say("demo terminated (SIGTERM) before the recovery closed")
        return 143


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def _run(args: argparse.Namespace, narrator: Narrator) -> int:
    layout = stack.Layout(args.dir.resolve())
    _preflight(layout)
    layout.prepare()
    (layout.root / MARKER).write_text("made by scripts/demo; wiped by its next run\n", encoding="utf-8")
    ports = stack.choose_ports(prefer_fixed=not args.free_ports)
    stack.render_config(layout, ports)
    narrator.say(f"recoverlink demo: a scripted checkout outage on 127.0.0.1 (files in {layout.root})")
    narrator.say("ports: " + ", ".join(f"{name} {port}" for name, port in ports.items()))
    supervisor = Supervisor(layout.logs, on_start=lambda p: narrator.step("demo", f"started {_named(p)}"))
    began = time.monotonic()
    with ExitStack() as running:
        exporter = running.enter_context(serving_payments_exporter(ports["exporter"]))
        desktop = running.enter_context(serving_agent_desktop(ports["desktop"]))
        leftovers: list[Path] = []
        # Unwound last in, first out: ignore further signals, stop the programs, then the servers.
        running.callback(_stop_everything, supervisor, leftovers, narrator)
        running.callback(_ignore_stop_signals)
        narrator.step("demo", f"payments exporter on {exporter.target}, agent desktop on {desktop.host}")
        # Alertmanager and Prometheus first: Prometheus opens its TSDB while RT is set up.
        alertmanager_url = stack.start_alertmanager(supervisor, layout, ports["alertmanager"])
        prometheus_url, prometheus = stack.start_prometheus(supervisor, layout, ports["prometheus"])
        rt = _start_rt(supervisor, layout, ports, narrator)
        if rt.temporary:
            leftovers.append(rt.directory)
        recoverlink = stack.start_recoverlink(supervisor, layout, ports["recoverlink"], rt)
        narrator.step("demo", f"recoverlink serves on {recoverlink.url} (gunicorn + its outbox worker)")
        stack.wait_scraping(supervisor, prometheus, prometheus_url)
        narrator.step("demo", f"everything is up after {time.monotonic() - began:.1f} s")
        demo = Running(narrator, recoverlink, rt, exporter, desktop, prometheus_url, alertmanager_url)
        recovery = run_outage(demo)
        narrator.say(f"\nThe recovery closed {time.monotonic() - began:.1f} s after the demo started.")
        narrator.say("Where the time went (from its milestones):")
        for line in where_the_time_went(recovery):
            narrator.say(f"  {line}")
        _where_to_look(narrator, layout, demo, recovery["id"], recovery["incident"]["id"])
        if args.exit_when_done:
            narrator.say("\n--exit-when-done: stopping everything")
            return 0
        narrator.say("\nThe stack keeps running; Ctrl-C stops every process the demo started.")
        return _keep_running(supervisor, narrator)


def _preflight(layout: stack.Layout) -> None:
    """Refuse before touching anything: missing programs, no RT, or a directory that is not ours."""
    for name in ("prometheus", "prometheus-alertmanager"):
        stack.binary(name)
    stack.recoverlink_binary()
    problem = request_tracker_problem()
    if problem is not None:
        raise DemoError(problem)
    root = layout.root
    if root.exists() and any(root.iterdir()) and not (root / MARKER).exists():
        raise DemoError(f"{root} is not empty and not a demo directory ({MARKER} missing): choose --dir")


def _start_rt(
    supervisor: Supervisor, layout: stack.Layout, ports: dict[str, int], narrator: Narrator
) -> RequestTracker:
    narrator.step("demo", "setting up a throw-away Request Tracker 5 (SQLite, queue Incidents, the scrip)")
    callback_url = f"http://{LOOPBACK}:{ports['recoverlink']}"
    rt = start_request_tracker(
        supervisor, layout.rt, port=ports["request-tracker"], callback_url=callback_url
    )
    stack.write_rt_password(layout, rt)
    took = ", ".join(f"{k.removesuffix('_seconds')} {v:.1f} s" for k, v in rt.timings.items())
    narrator.step("demo", f"Request Tracker answers on {rt.url} ({took})")
    kept = "a temp dir www-data can reach, removed at exit" if rt.temporary else "kept after the demo"
    narrator.step("demo", f"Request Tracker's files are in {rt.directory} ({kept})")
    return rt


def _where_to_look(
    narrator: Narrator, layout: stack.Layout, demo: Running, recovery_id: int, ticket: str
) -> None:
    url = demo.recoverlink.url
    operator = demo.recoverlink.operator_token_file
    query = "recoverlink_recovery_time_to_impact_seconds_count"
    lines = [
        ("board", f"{url}/board  (sign in at {url}/board/sign-in with the token in {operator})"),
        ("", f"{url}/board/recoveries/{recovery_id}  (where the time went, timeline, postmortem draft)"),
        ("status page", f"{url}/status"),
        (
            "API",
            f"{url}/api/v1/recoveries/{recovery_id}  (Authorization: Bearer <token>; OpenAPI at "
            f"{url}/api/v1/openapi.json)",
        ),
        ("", f'curl -H "Authorization: Bearer $(cat {operator})" {url}/api/v1/recoveries/{recovery_id}'),
        ("", f"admin token (jobs API): {demo.recoverlink.admin_token_file}"),
        ("metrics", f"{url}/metrics"),
        ("Prometheus", f"{demo.prometheus_url}/graph?g0.expr={query}  (scrapes recoverlink every second)"),
        ("Alertmanager", demo.alertmanager_url),
        (
            "Request Tracker",
            f"{demo.rt.ticket_url(ticket)}  (user root, password in {layout.secrets / 'rt-root.password'})",
        ),
        ("logs", f"{layout.logs}/"),
    ]
    narrator.say("\nWhere to look:")
    for name, text in lines:
        narrator.say(f"  {name:<16} {text}")


def _keep_running(supervisor: Supervisor, narrator: Narrator) -> int:
    """Until Ctrl-C or SIGTERM (0), or until a program dies on its own (1, with its log)."""
    try:
        while True:
            for process in supervisor.started:
                if not process.running():
                    narrator.say(f"\n{process.name} stopped on its own:\n{process.describe()}")
                    return 1
            time.sleep(1)
    except (KeyboardInterrupt, Terminated):
        narrator.say("\nstopping (Ctrl-C or SIGTERM)")
        return 0


def _named(process: Started) -> str:
    return f"{process.name} (pid {process.pid})"


def _ignore_stop_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _stop_everything(supervisor: Supervisor, leftovers: list[Path], narrator: Narrator) -> None:
    """Stop every program, last started first, and remove temp dirs of ours outside the demo dir."""
    supervisor.stop_all(lambda p, seconds: narrator.step("demo", f"stopped {_named(p)} in {seconds:.1f} s"))
    for directory in leftovers:
        shutil.rmtree(directory)
