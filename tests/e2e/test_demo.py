"""`make demo` end to end: scripts/demo runs its scripted outage through real Prometheus, Alertmanager,
Request Tracker 5 and recoverlink, prints every step and where to look, and leaves nothing running.

Two tests start the demo as a subprocess (`--free-ports`, its directory under `tmp_path`) and read
its output as it arrives. With `--exit-when-done` the output is the evidence (the demo prints what
recoverlink's API and RT's REST2 answered); without it the stack stays up, so the test reads the API
and RT itself, then stops the demo with SIGINT as Ctrl-C would. Either way every process the demo
printed as started must be gone afterwards, with its process group. A third test runs the
checkers of deploy/demo/'s configs, which fail in seconds where the demo would time out.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import child_env, get_json, recoverlink_script
from tests.support.alertmanager import alertmanager_binary
from tests.support.prometheus import prometheus_binary
from tests.support.rt import QUEUE, require_request_tracker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "demo"
RUN_TIMEOUT_SECONDS = 180.0  # the demo itself takes ~25 s here; the rest is a slow shared machine
STOP_TIMEOUT_SECONDS = 90.0
OUTAGE_SECONDS = 60.0  # payments down -> recovery closed; a slower demo has lost its tuned intervals
# Printed in this order whatever the timing: each step waits for the one before it.
ORDERED_STEPS = (
    "payments_api_up 0; checkout failures by segment",
    "PaymentsApiDown firing: sent to Alertmanager",
    'recovery #1 opened: "Checkout failing: payments-api is down"',
    "demo:operator   POST /api/v1/recoveries/1/transitions (workaround_available)",
    "workaround published",
    "takes RT ticket #",
    "fix in progress: RT ticket #",
    "payments_api_up 1; checkout failures back to 0",
    "PaymentsApiDown resolved",
    "recovery closed: RT ticket #",
    "queue Incidents holds 1 ticket(s)",
    "Where the time went",
    "Where to look:",
)
# Printed somewhere between the alert firing and the recovery closing.
STEPS = (
    "PaymentsApiDown active: notifies recoverlink's webhook",
    "owner known: payments, from the catalog",
    "impact source checkout-failures: affected, checkout_failures_per_minute 49; segments business, retail",
    "customer impact confirmed: checkout_failures_per_minute 49 > 1",
    "created and linked: http://127.0.0.1:",
    "its incident, RT ticket #1: in_progress",
    "fix deployed: every alert of the recovery is resolved",
    "verification of checkout-failures: back_to_normal, checkout_failures_per_minute 0",
    "impact verified back to normal: checkout-failures",
    "CX updated after the fix: the agent_desktop action succeeded",
    "banner taken down, state closed",
    "its incident, RT ticket #1: resolved",
)
WHERE_TO_LOOK = ("board", "status page", "API", "metrics", "Prometheus", "Alertmanager", "Request Tracker")
STARTED = re.compile(r"started (?P<name>[\w-]+) \(pid (?P<pid>\d+)\)")
PORTS = re.compile(r"^ports: (?P<ports>.*)$")
RT_FILES = re.compile(r"Request Tracker's files are in (?P<path>\S+) \((?P<how>[^)]*)\)")


@dataclass
class Demo:
    """The running demo: its process, and its output so far (a reader thread feeds `_arrived`)."""

    popen: subprocess.Popen[str]
    directory: Path
    lines: list[str] = field(default_factory=list)
    left_running: dict[str, int] = field(default_factory=dict)  # name -> PID still alive after the demo
    _arrived: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def read_until(self, marker: str, timeout: float = RUN_TIMEOUT_SECONDS) -> str:
        """The first line from now on that contains `marker`; fails on EOF or after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {marker!r} from the demo within {timeout:g} s:\n{self.output()}")
            try:
                line = self._arrived.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.popen.wait(timeout=STOP_TIMEOUT_SECONDS)
                pytest.fail(f"the demo exited ({self.popen.returncode}) before {marker!r}:\n{self.output()}")
            if marker in line:
                return line

    def finish(self) -> int:
        """Read to the end of the output and wait for the exit; the exit code."""
        self.read_until_eof()
        return self.popen.wait(timeout=STOP_TIMEOUT_SECONDS)

    def read_until_eof(self) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            with suppress(queue.Empty):
                if self._arrived.get(timeout=1) is None:
                    return
        pytest.fail(f"the demo's output did not end within {STOP_TIMEOUT_SECONDS:g} s:\n{self.output()}")

    def output(self) -> str:
        return "\n".join(self.lines)

    def keep_reading(self) -> None:
        """The reader thread: every line into `lines` and `_arrived`, then None at EOF."""
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))
            self._arrived.put(self.lines[-1])
        self._arrived.put(None)

    def ports(self) -> dict[str, int]:
        """The `ports:` line the demo prints first: program -> port."""
        for line in self.lines:
            if found := PORTS.match(line):
                pairs = (item.rsplit(" ", 1) for item in found["ports"].split(", "))
                return {name: int(port) for name, port in pairs}
        pytest.fail(f"the demo printed no ports line:\n{self.output()}")

    def started(self) -> dict[str, int]:
        """Every program the demo said it started: name -> PID (its process group id too)."""
        return {m["name"]: int(m["pid"]) for line in self.lines if (m := STARTED.search(line))}

    def rt_directory(self) -> tuple[Path, bool]:
        """Where the demo put RT's files, and whether it said it removes them at exit."""
        for line in self.lines:
            if found := RT_FILES.search(line):
                return Path(found["path"]), "removed at exit" in found["how"]
        pytest.fail(f"the demo did not say where Request Tracker's files are:\n{self.output()}")


@contextmanager
def running_demo(directory: Path, *flags: str) -> Iterator[Demo]:
    """`python scripts/demo --free-ports --dir DIRECTORY FLAGS...`; stopped with SIGTERM if still up."""
    prometheus_binary()  # missing Prometheus or Alertmanager: always a failure, as in tests/e2e
    alertmanager_binary()
    require_request_tracker()  # missing RT (or not root): a failure under CI, a skip elsewhere
    argv = [sys.executable, str(DEMO), "--free-ports", "--dir", str(directory), *flags]
    popen = subprocess.Popen(
        argv,
        cwd=REPO,
        env={**child_env(), "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a terminal's Ctrl-C meant for pytest does not reach the demo
    )
    demo = Demo(popen, directory)
    reader = threading.Thread(target=demo.keep_reading, name="demo-output", daemon=True)
    reader.start()
    try:
        yield demo
    finally:
        if popen.poll() is None:  # the test failed while the demo ran: the demo stops what it started
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(timeout=10)
        reader.join(timeout=10)
        # Looked at before cleaning up, so that `_assert_nothing_left` sees what the demo left.
        demo.left_running = {name: pid for name, pid in demo.started().items() if _group_alive(pid)}
        for pgid in demo.left_running.values():
            with suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)  # only groups the demo made for its own programs


def _group_alive(pgid: int) -> bool:
    """Whether any process is left in the process group the demo made for one of its programs."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _assert_nothing_left(demo: Demo) -> None:
    started = demo.started()
    assert set(started) == {"alertmanager", "prometheus", "request-tracker", "recoverlink"}, demo.output()
    assert not demo.left_running, f"still running after the demo exited: {demo.left_running}\n{demo.output()}"
    for name, pid in started.items():
        assert f"stopped {name} (pid {pid})" in demo.output()
    rt_directory, removed = demo.rt_directory()
    if removed:
        assert not rt_directory.exists(), f"the demo left RT's temp dir {rt_directory}"
    else:
        assert rt_directory.is_relative_to(demo.directory)


def _assert_every_step(demo: Demo) -> None:
    output = demo.output()
    at = -1
    for step in ORDERED_STEPS:
        found = output.find(step, at + 1)
        assert found > at, f"{step!r} missing or out of order in:\n{output}"
        at = found
    missing = [step for step in STEPS if step not in output]
    assert not missing, f"steps not printed: {missing}\n{output}"
    assert output.count("created and linked") == 1, output
    assert "ticket #1 has" in output
    for span in ("alert fired -> recovery opened", "fix deployed -> impact verified", "opened -> closed"):
        assert re.search(rf"^  {re.escape(span)} +\d+\.\d s$", output, re.MULTILINE), span
    where = output[output.index("Where to look:") :]
    for name in WHERE_TO_LOOK:
        assert re.search(rf"^  {name} +http://127\.0\.0\.1:\d+", where, re.MULTILINE), name
    secrets = demo.directory.resolve() / "secrets"
    assert f"token in {secrets / 'operator.token'}" in where
    assert f"user root, password in {secrets / 'rt-root.password'}" in where


def test_demo_exit_when_done_runs_the_whole_loop_and_stops_everything(tmp_path: Path) -> None:
    """`--exit-when-done`: every step printed in order, one RT ticket resolved, exit 0, nothing left."""
    with running_demo(tmp_path / "demo", "--exit-when-done") as demo:
        demo.read_until("--exit-when-done: stopping everything")
        code = demo.finish()
    assert code == 0, demo.output()
    _assert_every_step(demo)
    _assert_nothing_left(demo)
    # The outage itself runs on the tuned intervals of deploy/demo (1 s scrapes, `for: 2s`,
    # group_wait 1s): about 7 s here, whatever the machine's load does to the start-up around it.
    closed = re.search(r"^\S+ +\+ *(?P<seconds>\d+\.\d)s +recoverlink +recovery closed", demo.output(), re.M)
    assert closed is not None and float(closed["seconds"]) < OUTAGE_SECONDS, demo.output()
    # The closed recovery and what it measured stay in the demo's directory after the run.
    assert (tmp_path / "demo" / "recoverlink.db").is_file()
    assert (tmp_path / "demo" / "logs" / "recoverlink.log").is_file()


def test_demo_keeps_the_stack_up_until_ctrl_c(tmp_path: Path) -> None:
    """Without `--exit-when-done` the stack stays up: the API and RT agree the loop is done; SIGINT
    then stops every program the demo started and the demo exits 0."""
    directory = tmp_path / "demo"
    with running_demo(directory) as demo:
        demo.read_until("The stack keeps running; Ctrl-C stops every process the demo started.")
        ports = demo.ports()
        url = f"http://127.0.0.1:{ports['recoverlink']}"
        token = (directory / "secrets" / "operator.token").read_text(encoding="utf-8").strip()
        recoveries = get_json(f"{url}/api/v1/recoveries", token)["items"]
        assert len(recoveries) == 1, recoveries
        recovery = get_json(f"{url}/api/v1/recoveries/{recoveries[0]['id']}", token)
        assert recovery["state"] == "closed"
        assert recovery["owner"] == "payments"
        assert {
            "opened",
            "owner_known",
            "impact_identified",
            "incident_linked",
            "workaround_published",
            "fix_deployed",
            "impact_verified",
            "closed",
        } <= recovery["milestones"].keys()
        kinds = [entry["kind"] for entry in recovery["timeline"]]
        assert "impact" in kinds and "verification" in kinds, kinds
        incident = recovery["incident"]
        assert incident["status"] == "resolved", incident

        rt_url = f"http://127.0.0.1:{ports['request-tracker']}"
        password = (directory / "secrets" / "rt-root.password").read_text(encoding="utf-8").strip()
        query = urllib.parse.urlencode({"query": f"Queue = '{QUEUE}'", "fields": "Status"})
        answer = requests.get(f"{rt_url}/REST/2.0/tickets?{query}", auth=("root", password), timeout=10)
        answer.raise_for_status()
        tickets = answer.json()["items"]
        assert [(str(t["id"]), t["Status"]) for t in tickets] == [(str(incident["id"]), "resolved")]

        metrics = requests.get(f"{url}/metrics", timeout=10)
        assert metrics.status_code == 200 and "recoverlink_" in metrics.text
        assert requests.get(f"{url}/status", timeout=10).status_code == 200
        board = requests.get(f"{url}/board", timeout=10, allow_redirects=False)
        assert board.status_code in (200, 302, 303), board.status_code

        demo.popen.send_signal(signal.SIGINT)
        code = demo.finish()
    assert code == 0, demo.output()
    assert "stopping (Ctrl-C or SIGTERM)" in demo.output()
    _assert_every_step(demo)
    _assert_nothing_left(demo)


def test_demo_configs_pass_their_own_checkers() -> None:
    """deploy/demo/ as committed passes promtool, amtool and `recoverlink check`: a broken demo
    config fails here in seconds rather than as a timeout halfway through the outage."""
    configs = REPO / "deploy" / "demo"
    promtool = str(Path(prometheus_binary()).with_name("promtool"))
    amtool = str(Path(alertmanager_binary()).with_name("amtool"))
    checks = [
        [promtool, "check", "config", str(configs / "prometheus.yml")],  # and the rule file it loads
        [amtool, "check-config", str(configs / "alertmanager.yml")],
        [recoverlink_script(), "check", "--config", str(configs / "recoverlink.yaml")],
    ]
    for argv in checks:
        result = subprocess.run(
            argv, capture_output=True, text=True, env=child_env(), timeout=60, check=False
        )
        assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout}\n{result.stderr}"
