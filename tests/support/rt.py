"""A throw-away Request Tracker 5 on loopback, for the RT tests and the ITSM bench (REFERENCE.md 5.0).

`running_request_tracker(directory)` writes its own `RT_SiteConfig.pm` (nothing under /etc
matters), initialises a fresh SQLite database, bootstraps it through RT's Perl API (queues, the
correlation custom field, recoverlink's API user with one token, the shipped callback scrip),
starts `rt-server` as www-data in a process group of its own, and stops that group at the end.
The scrip posts to a `CallbackReceiver` of the test process. The `request_tracker` fixture runs
one RT per test session.

The Debian packages come from `scripts/ensure-request-tracker` (which `make test` runs). Without
them the RT tests fail under CI (`CI` is set) and are skipped elsewhere, naming that script.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from recoverlink.adapters.itsm.rt import RtAdapter
from recoverlink.config.itsm import RtConfig
from tests.support.processes import LOOPBACK, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
SCRIP_FILE = REPO / "deploy" / "rt" / "recoverlink_scrip.pl"
BOOTSTRAP_SCRIPT = Path(__file__).with_name("rt_bootstrap.pl")
RT_SERVER = Path("/usr/share/request-tracker5/libexec/rt-server")
RT_SETUP_DATABASE = Path("/usr/sbin/rt-setup-database-5")
RT_LIB = Path("/usr/share/request-tracker5/lib")
RT_OS_USER = "www-data"  # the database, the mason cache and the mbox files are www-data's
INSTALL_HINT = "run scripts/ensure-request-tracker as root (`make test` does it)"

QUEUE = "Incidents"  # recoverlink creates here: every right, the correlation field
UNLINKED_QUEUE = "Unlinked"  # the API user may create here, but QUEUE_ONLY_FIELD does not apply
CLOSED_QUEUE = "General"  # RT's own queue: the API user can see it but not create in it
CUSTOM_FIELD = "CorrelationId"  # applied to all queues
QUEUE_ONLY_FIELD = "IncidentsOnlyId"  # applied to QUEUE only
API_USER = "recoverlink"
TOKEN_ENV = "RECOVERLINK_TEST_RT_TOKEN"
START_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 20.0


@dataclass
class CallbackReceiver:
    """A tiny HTTP server of the test process that keeps every POST the scrip sends."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    def keep(self, headers: Mapping[str, str], body: bytes) -> None:
        with self._arrived:
            self.received.append((dict(headers), body))
            self._arrived.notify_all()

    def wait_for(
        self, matches: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> tuple[dict[str, str], bytes]:
        """The first delivery whose JSON body `matches`; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for headers, body in self.received:
                    if matches(json.loads(body)):
                        return headers, body
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no matching callback within {timeout:g} s; got {len(self.received)}")
                self._arrived.wait(left)


@contextmanager
def receiving_callbacks() -> Iterator[CallbackReceiver]:
    """Serve a `CallbackReceiver` on a free 127.0.0.1 port until the block ends; it answers 204."""
    receiver = CallbackReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            receiver.keep({k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
            self.send_response(HTTPStatus.NO_CONTENT)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test's output is not a web server's access log."""

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    receiver.url = f"http://{LOOPBACK}:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, name="rt-callbacks", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass(frozen=True)
class RequestTracker:
    """A running RT: its URL, the API user's token, root's password (a person), the callbacks."""

    url: str
    api_token: str
    root_password: str
    callback_secret: str
    callbacks: CallbackReceiver
    pid: int
    log_path: Path
    timings: Mapping[str, float]  # seconds per setup step, for the bench and the report

    @property
    def environ(self) -> dict[str, str]:
        return {TOKEN_ENV: self.api_token}

    def config(self, **overrides: Any) -> RtConfig:
        """The `itsm.rt` config of recoverlink's API user on this RT (`overrides` replace keys)."""
        values: dict[str, Any] = {
            "url": self.url,
            "auth": {"token": {"env": TOKEN_ENV}},
            "queue": QUEUE,
            "custom_field": CUSTOM_FIELD,
            "api_user": API_USER,
            "timeout_seconds": 10,
        }
        return RtConfig.model_validate({**values, **overrides})

    def adapter(self, session: requests.Session | None = None, **overrides: Any) -> RtAdapter:
        return RtAdapter.from_config(self.config(**overrides), self.environ, session or requests.Session())

    def person(self) -> requests.Session:
        """REST2 as root with basic auth: someone other than recoverlink changing tickets."""
        session = requests.Session()
        session.auth = ("root", self.root_password)
        return session

    def rest(self, path: str) -> str:
        return f"{self.url}/REST/2.0{path}"


def request_tracker_problem() -> str | None:
    """Why no throw-away RT can run here (packages missing, not root), with the fix; None if it can."""
    missing = [str(p) for p in (RT_SERVER, RT_SETUP_DATABASE, RT_LIB) if not p.exists()]
    if missing:
        return f"Request Tracker 5 is not installed ({', '.join(missing)} missing): {INSTALL_HINT}"
    if os.geteuid() != 0:
        return f"a throw-away RT runs as {RT_OS_USER}, so the RT tests must run as root"
    return None


def require_request_tracker() -> None:
    """Fail under CI (`CI` is set), skip elsewhere, when no throw-away RT can run here."""
    problem = request_tracker_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(problem, pytrace=False)
    pytest.skip(problem)


@contextmanager
def running_request_tracker(
    directory: Path, *, with_scrip: bool = True, callback_url: str | None = None
) -> Iterator[RequestTracker]:
    """A fresh RT whose files are all in `directory`, stopped on exit. Its scrip posts to the test's
    receiver, or to `callback_url` (a recoverlink's `/webhook/itsm/rt`) when given.

    The directory becomes www-data's, so its parents must let www-data through (/tmp does).
    """
    require_request_tracker()
    directory.mkdir(parents=True, exist_ok=True)
    shutil.chown(directory, RT_OS_USER, RT_OS_USER)
    directory.chmod(0o700)
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    root_password = secrets.token_hex(12)
    callback_secret = secrets.token_hex(16)
    timings: dict[str, float] = {}
    with receiving_callbacks() as callbacks:
        target = (callback_url or callbacks.url) if with_scrip else ""
        env = _rt_environment(directory, url, port, target, callback_secret)
        with _timed(timings, "database_init_seconds"):
            _init_database(directory, env, root_password)
        with _timed(timings, "bootstrap_seconds"):
            token = _bootstrap(directory, env, root_password, with_scrip)
        started = time.monotonic()
        popen, log_path = _start_server(directory, env, port)
        try:
            _wait_ready(popen, log_path, url, root_password)
            timings["start_seconds"] = time.monotonic() - started
            yield RequestTracker(
                url, token, root_password, callback_secret, callbacks, popen.pid, log_path, timings
            )
        finally:
            timings["stop_seconds"] = _stop_server(popen)


@pytest.fixture(scope="session")
def request_tracker() -> Iterator[RequestTracker]:
    """One RT for the whole session, with the callback scrip installed."""
    # Not under pytest's tmp_path: its root is 0700 root's, and www-data must reach the directory.
    with (
        tempfile.TemporaryDirectory(prefix="recoverlink-rt-") as directory,
        running_request_tracker(Path(directory)) as rt,
    ):
        yield rt


# --- the steps ----------------------------------------------------------------------------------


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    timings[name] = time.monotonic() - started


def _rt_environment(directory: Path, url: str, port: int, callback_url: str, secret: str) -> dict[str, str]:
    """Write RT_SiteConfig.pm and an empty site config dir; the environment that makes RT read them."""
    site_dir = directory / "RT_SiteConfig.d"
    site_dir.mkdir(exist_ok=True)
    config = directory / "RT_SiteConfig.pm"
    settings: list[tuple[str, object]] = [
        ("rtname", "recoverlink-test"),
        ("Organization", "recoverlink.invalid"),
        ("WebPath", ""),
        ("WebDomain", LOOPBACK),
        ("WebPort", port),
        ("WebBaseURL", url),
        ("DatabaseType", "SQLite"),
        ("DatabaseName", str(directory / "rt.db")),
        ("LogToSTDERR", "warning"),
        ("LogToSyslog", None),
        ("MailCommand", "mbox"),  # no mail leaves: it goes to mbox files under /var/lib/request-tracker5
        ("BcryptCost", 4),  # the default 12 adds ~210 ms to every authenticated call
        ("Timezone", "UTC"),
        ("RecoverlinkURL", callback_url),
        ("RecoverlinkSecret", secret),
        ("RecoverlinkCustomField", CUSTOM_FIELD),
    ]
    lines = [f"Set(${name}, {_perl(value)});" for name, value in settings]
    config.write_text("\n".join([*lines, "1;", ""]), encoding="utf-8")
    for path in (site_dir, config):
        shutil.chown(path, RT_OS_USER, RT_OS_USER)
    return {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(directory),
        "LANG": "C.UTF-8",
        "RT_SITE_CONFIG": str(config),
        "RT_SITE_CONFIG_DIR": str(site_dir),
    }


def _perl(value: object) -> str:
    """A Perl literal: undef, a number, or a single-quoted string."""
    if value is None:
        return "undef"
    if isinstance(value, int):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _as_rt_user(argv: list[str], env: Mapping[str, str], cwd: Path, what: str) -> str:
    """Run a setup command as www-data; its stdout, or a failure that shows its output."""
    result = subprocess.run(
        argv,
        env=dict(env),
        cwd=cwd,
        user=RT_OS_USER,
        group=RT_OS_USER,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}", pytrace=False)
    return result.stdout


def _init_database(directory: Path, env: Mapping[str, str], root_password: str) -> None:
    password_file = directory / "root-password"
    password_file.write_text(root_password, encoding="utf-8")
    shutil.chown(password_file, RT_OS_USER, RT_OS_USER)
    password_file.chmod(0o600)
    argv = [str(RT_SETUP_DATABASE), "--action", "init", "--root-password-file", str(password_file)]
    _as_rt_user(argv, env, directory, "rt-setup-database-5 --action init")


def _bootstrap(directory: Path, env: Mapping[str, str], root_password: str, with_scrip: bool) -> str:
    """Queues, custom fields, rights, the API user's token and the scrip; returns the token."""
    script = _copy_for_rt(BOOTSTRAP_SCRIPT, directory)
    values = {
        "RL_ROOT_PASSWORD": root_password,
        "RL_SCRIP_FILE": str(_copy_for_rt(SCRIP_FILE, directory)) if with_scrip else "",
        "RL_QUEUE": QUEUE,
        "RL_UNLINKED_QUEUE": UNLINKED_QUEUE,
        "RL_CUSTOM_FIELD": CUSTOM_FIELD,
        "RL_QUEUE_ONLY_FIELD": QUEUE_ONLY_FIELD,
        "RL_API_USER": API_USER,
    }
    out = _as_rt_user(["perl", str(script)], {**env, **values}, directory, "the RT bootstrap")
    token: str = json.loads(out.strip().splitlines()[-1])["token"]
    return token


def _copy_for_rt(source: Path, directory: Path) -> Path:
    """A copy www-data can read: a clone may live under a home directory closed to it."""
    copy = directory / source.name
    shutil.copyfile(source, copy)
    shutil.chown(copy, RT_OS_USER, RT_OS_USER)
    return copy


def _start_server(directory: Path, env: Mapping[str, str], port: int) -> tuple[subprocess.Popen[bytes], Path]:
    """rt-server as www-data, in a new session: its process group holds it and its workers only."""
    argv = [str(RT_SERVER), "--server", "Starlet", "--host", LOOPBACK, "--port", str(port)]
    argv += ["--max-workers", "2"]
    log_path = directory / "rt-server.log"
    with log_path.open("ab") as log_file:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=directory,
            user=RT_OS_USER,
            group=RT_OS_USER,
            extra_groups=[],
            start_new_session=True,
        )
    return popen, log_path


def _wait_ready(popen: subprocess.Popen[bytes], log_path: Path, url: str, root_password: str) -> None:
    """Until GET /REST/2.0/rt answers 200; an early exit or a timeout fails with the log's tail."""

    def details() -> str:
        return log_path.read_text(encoding="utf-8", errors="replace")[-3000:]

    def ready() -> bool:
        if popen.poll() is not None:
            pytest.fail(f"rt-server exited with {popen.returncode}:\n{details()}", pytrace=False)
        try:
            answer = requests.get(f"{url}/REST/2.0/rt", auth=("root", root_password), timeout=2)
        except requests.RequestException:
            return False
        return answer.status_code == 200

    wait_until(ready, timeout=START_TIMEOUT_SECONDS, what=f"RT at {url}", details=details)


def _stop_server(popen: subprocess.Popen[bytes]) -> float:
    """TERM the server's process group, wait, then KILL it; returns how long the stop took."""
    started = time.monotonic()
    pgid = popen.pid  # start_new_session: the group id is our child's PID
    if popen.poll() is None:
        _signal_group(pgid, signal.SIGTERM)
        try:
            popen.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            popen.wait(timeout=STOP_GRACE_SECONDS)
    _signal_group(pgid, signal.SIGKILL)  # workers that outlived the master share its group
    return time.monotonic() - started


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, signum)
