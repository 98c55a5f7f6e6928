"""A throw-away Request Tracker 5 for the demo: its own site config, SQLite database and rt-server.

The same steps as the test suite's `tests/support/rt.py` (REFERENCE.md 5.0), without pytest and
with one queue: write `RT_SiteConfig.pm` (nothing under /etc is read), initialise the database,
bootstrap it through RT's Perl API (`rt_bootstrap.pl`: the Incidents queue, the CorrelationId field,
recoverlink's API user and its token, the shipped callback scrip posting to recoverlink), then
start `rt-server` as www-data in a process group of its own, under the demo's `Supervisor`.

The Debian packages come from `scripts/ensure-request-tracker` (`make demo` runs it). RT's files
belong to www-data, so the demo runs as root.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

from demo.processes import LOOPBACK, DemoError, Started, Supervisor

REPO = Path(__file__).resolve().parents[2]
SCRIP_FILE = REPO / "deploy" / "rt" / "recoverlink_scrip.pl"
BOOTSTRAP_SCRIPT = Path(__file__).with_name("rt_bootstrap.pl")
RT_SERVER = Path("/usr/share/request-tracker5/libexec/rt-server")
RT_SETUP_DATABASE = Path("/usr/sbin/rt-setup-database-5")
RT_LIB = Path("/usr/share/request-tracker5/lib")
RT_OS_USER = "www-data"  # the database, the mason cache and the mbox files are www-data's
QUEUE = "Incidents"
CUSTOM_FIELD = "CorrelationId"
API_USER = "recoverlink"
START_TIMEOUT_SECONDS = 90.0


@dataclass
class RequestTracker:
    """A running RT: where it answers, recoverlink's token, root's password, the callback secret."""

    url: str
    api_token: str
    root_password: str
    callback_secret: str
    directory: Path
    process: Started
    temporary: bool  # the directory is a temp dir of ours (removed at exit), not under the demo dir
    timings: dict[str, float] = field(default_factory=dict)

    def ticket_url(self, ticket_id: str) -> str:
        """The ticket's page in RT's web UI (sign in as root)."""
        return f"{self.url}/Ticket/Display.html?id={ticket_id}"

    def person(self) -> requests.Session:
        """REST2 as root: an engineer changing a ticket, someone other than recoverlink."""
        session = requests.Session()
        session.auth = ("root", self.root_password)
        return session

    def rest(self, path: str) -> str:
        return f"{self.url}/REST/2.0{path}"


def request_tracker_problem() -> str | None:
    """Why no throw-away RT can run here, with the fix; None when it can."""
    missing = [str(p) for p in (RT_SERVER, RT_SETUP_DATABASE, RT_LIB) if not p.exists()]
    if missing:
        return (
            f"Request Tracker 5 is not installed ({', '.join(missing)} missing): "
            "run scripts/ensure-request-tracker as root (`make demo` does it)"
        )
    if os.geteuid() != 0:
        return f"the demo's Request Tracker runs as {RT_OS_USER}: run the demo as root"
    return None


def start_request_tracker(
    supervisor: Supervisor, directory: Path, *, port: int, callback_url: str
) -> RequestTracker:
    """A fresh RT on 127.0.0.1:`port` whose scrip posts to `callback_url`; the supervisor stops it."""
    problem = request_tracker_problem()
    if problem is not None:
        raise DemoError(problem)
    directory, temporary = _rt_directory(directory)
    url = f"http://{LOOPBACK}:{port}"
    root_password = secrets.token_hex(12)
    callback_secret = secrets.token_hex(16)
    timings: dict[str, float] = {}
    env = _rt_environment(directory, url, port, callback_url, callback_secret)
    began = time.monotonic()
    _init_database(directory, env, root_password)
    timings["database_init_seconds"] = time.monotonic() - began
    began = time.monotonic()
    token = _bootstrap(directory, env, root_password)
    timings["bootstrap_seconds"] = time.monotonic() - began
    began = time.monotonic()
    argv = [str(RT_SERVER), "--server", "Starlet", "--host", LOOPBACK, "--port", str(port)]
    process = supervisor.start(
        "request-tracker",
        [*argv, "--max-workers", "2"],
        env=env,
        cwd=directory,
        user=RT_OS_USER,
        signal_group=True,  # Starlet's master and workers stop together, as the tests stop them
    )

    def ready() -> bool:
        try:
            answer = requests.get(f"{url}/REST/2.0/rt", auth=("root", root_password), timeout=2)
        except requests.RequestException:
            return False
        return answer.status_code == 200

    supervisor.wait_ready(process, ready, START_TIMEOUT_SECONDS, f"RT's REST2 at {url}")
    timings["start_seconds"] = time.monotonic() - began
    return RequestTracker(url, token, root_password, callback_secret, directory, process, temporary, timings)


def _rt_directory(preferred: Path) -> tuple[Path, bool]:
    """`preferred` when www-data can work in it, else a temp dir (a clone under a closed home)."""
    preferred.mkdir(parents=True, exist_ok=True)
    shutil.chown(preferred, RT_OS_USER, RT_OS_USER)
    preferred.chmod(0o700)
    if _rt_user_can_write(preferred):
        return preferred, False
    shutil.rmtree(preferred)
    directory = Path(tempfile.mkdtemp(prefix="recoverlink-demo-rt-"))
    shutil.chown(directory, RT_OS_USER, RT_OS_USER)
    return directory, True


def _rt_user_can_write(directory: Path) -> bool:
    """Ask the kernel as www-data: every parent must let it through."""
    probe = subprocess.run(
        ["/usr/bin/test", "-w", str(directory)],
        user=RT_OS_USER,
        group=RT_OS_USER,
        extra_groups=[],
        check=False,
        timeout=10,
    )
    return probe.returncode == 0


def _rt_environment(directory: Path, url: str, port: int, callback_url: str, secret: str) -> dict[str, str]:
    """Write RT_SiteConfig.pm and an empty site config dir; the environment that makes RT read them."""
    site_dir = directory / "RT_SiteConfig.d"
    site_dir.mkdir(exist_ok=True)
    config = directory / "RT_SiteConfig.pm"
    settings: list[tuple[str, object]] = [
        ("rtname", "recoverlink-demo"),
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
    config.chmod(0o600)  # it holds the callback secret
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
    """Run a setup command as www-data to its end; its stdout, or DemoError with its output."""
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
        raise DemoError(f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _init_database(directory: Path, env: Mapping[str, str], root_password: str) -> None:
    password_file = directory / "root-password"
    password_file.write_text(root_password, encoding="utf-8")
    shutil.chown(password_file, RT_OS_USER, RT_OS_USER)
    password_file.chmod(0o600)
    argv = [str(RT_SETUP_DATABASE), "--action", "init", "--root-password-file", str(password_file)]
    _as_rt_user(argv, env, directory, "rt-setup-database-5 --action init")


def _bootstrap(directory: Path, env: Mapping[str, str], root_password: str) -> str:
    """The queue, the custom field, rights, the API user's token and the scrip; returns the token."""
    values = {
        "RL_ROOT_PASSWORD": root_password,
        "RL_SCRIP_FILE": str(_copy_for_rt(SCRIP_FILE, directory)),
        "RL_QUEUE": QUEUE,
        "RL_CUSTOM_FIELD": CUSTOM_FIELD,
        "RL_API_USER": API_USER,
    }
    script = _copy_for_rt(BOOTSTRAP_SCRIPT, directory)
    out = _as_rt_user(["perl", str(script)], {**env, **values}, directory, "the RT bootstrap")
    token: str = json.loads(out.strip().splitlines()[-1])["token"]
    return token


def _copy_for_rt(source: Path, directory: Path) -> Path:
    """A copy www-data can read: a clone may live under a home directory closed to it."""
    copy = directory / source.name
    shutil.copyfile(source, copy)
    shutil.chown(copy, RT_OS_USER, RT_OS_USER)
    return copy
