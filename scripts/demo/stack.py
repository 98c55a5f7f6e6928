"""The demo's stack: its directory, its ports, its config files, and starting each program.

The files in `deploy/demo/` name default addresses on 127.0.0.1 (`DEFAULT_PORTS`) and keep their
data under `../../var/demo`. `render_config` copies them into `<dir>/config/`, replacing, as text,
each default address with the port the demo got (the default when it is free) and `../../var/demo`
with the demo's directory; relative names (catalog.yaml, rules/, prometheus-rules.yml) then find
the copies beside them. Every program binds 127.0.0.1 and runs under the `Supervisor`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from demo.processes import LOOPBACK, DemoError, Started, Supervisor, choose_port
from demo.request_tracker import RequestTracker

REPO = Path(__file__).resolve().parents[2]
DEPLOY_DEMO = REPO / "deploy" / "demo"
DEFAULT_DIR = REPO / "var" / "demo"
DEFAULT_DIR_TEXT = "../../var/demo"  # how deploy/demo/ names the demo's directory
DEFAULT_PORTS = {
    "recoverlink": 9471,
    "request-tracker": 9480,
    "prometheus": 9490,
    "exporter": 9491,
    "desktop": 9492,
    "alertmanager": 9493,
}
RT_TOKEN_ENV = "RECOVERLINK_DEMO_RT_TOKEN"  # noqa: S105 - the variable's name, not a secret
RT_CALLBACK_ENV = "RECOVERLINK_DEMO_RT_CALLBACK_SECRET"
# Variables that would point recoverlink or gunicorn at something other than the demo's files.
FOREIGN_ENV = ("PROMETHEUS_MULTIPROC_DIR", "RECOVERLINK_")
INSTALL_HINT = (
    "apt-get install -y --no-install-recommends prometheus prometheus-alertmanager "
    "(`make demo` does it through scripts/ensure-debian-packages)"
)


@dataclass(frozen=True)
class Layout:
    """Where the demo keeps its files; `prepare` wipes what a previous run left."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def rt(self) -> Path:
        return self.root / "rt"

    def prepare(self) -> None:
        """A fresh directory: the scripted outage is recovery #1 of an empty store."""
        if self.root.exists():
            shutil.rmtree(self.root)
        for directory in (self.root, self.secrets, self.logs):
            directory.mkdir(parents=True, exist_ok=True)
        self.secrets.chmod(0o700)


def choose_ports(*, prefer_fixed: bool) -> dict[str, int]:
    """A port per program: its documented default when free (unless not wanted), else a free one."""
    taken: set[int] = set()
    return {
        name: choose_port(default, taken=taken, prefer_fixed=prefer_fixed)
        for name, default in DEFAULT_PORTS.items()
    }


def render_config(layout: Layout, ports: Mapping[str, int]) -> None:
    """deploy/demo/ copied into `layout.config` with the demo's ports and directory."""
    replacements = {f"{LOOPBACK}:{DEFAULT_PORTS[name]}": f"{LOOPBACK}:{port}" for name, port in ports.items()}
    replacements[DEFAULT_DIR_TEXT] = str(layout.root)
    for source in sorted(DEPLOY_DEMO.rglob("*")):
        if not source.is_file():
            continue
        text = source.read_text(encoding="utf-8")
        for old, new in replacements.items():
            text = text.replace(old, new)
        target = layout.config / source.relative_to(DEPLOY_DEMO)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def binary(name: str) -> str:
    """A Debian binary the demo needs; DemoError with the install command when it is missing."""
    path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
    if path is None:
        raise DemoError(f"{name} is not installed: {INSTALL_HINT}")
    return path


def recoverlink_binary() -> str:
    """The `recoverlink` script of the venv the demo runs in (`make demo` installs it)."""
    script = Path(sys.executable).parent / "recoverlink"
    if not script.is_file():
        raise DemoError(f"{script} is missing: run `make demo` (it installs the project into .venv)")
    return str(script)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without variables that would redirect recoverlink, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV)}
    return {**env, **(extra or {})}


@dataclass(frozen=True)
class Recoverlink:
    """`recoverlink serve` (gunicorn and its outbox worker) and the tokens the demo holds."""

    url: str
    config: Path
    admin_token: str
    operator_token: str
    operator_token_file: Path
    admin_token_file: Path
    process: Started

    def api(self, path: str) -> dict[str, Any]:
        """GET an API path as admin (the demo's own view; the operator acts with its own token)."""
        answer = requests.get(
            f"{self.url}{path}", headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=5
        )
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body


def start_recoverlink(supervisor: Supervisor, layout: Layout, port: int, rt: RequestTracker) -> Recoverlink:
    """Serve with `--migrate` on the demo config, then create an operator token for the script."""
    config = layout.config / "recoverlink.yaml"
    env = child_env({RT_TOKEN_ENV: rt.api_token, RT_CALLBACK_ENV: rt.callback_secret})
    url = f"http://{LOOPBACK}:{port}"
    argv = [recoverlink_binary(), "serve", "--config", str(config), "--migrate"]
    process = supervisor.start("recoverlink", [*argv, "--listen", f"{LOOPBACK}:{port}"], env=env)
    supervisor.wait_http_ok(process, f"{url}/-/ready", timeout=60)
    create = ["tokens", "create", "--role", "operator", "--name", "demo-operator", "--config", str(config)]
    created = subprocess.run(
        [recoverlink_binary(), *create],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    if created.returncode != 0:
        raise DemoError(f"recoverlink tokens create failed ({created.returncode}):\n{created.stderr}")
    operator_file = layout.secrets / "operator.token"
    _write_secret(operator_file, created.stdout.strip())
    admin_file = layout.secrets / "admin.token"
    admin = admin_file.read_text(encoding="utf-8").strip()
    return Recoverlink(url, config, admin, created.stdout.strip(), operator_file, admin_file, process)


def _write_secret(path: Path, value: str) -> None:
    """`value` in a file only its owner reads (mode 0600 from the start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")


def write_rt_password(layout: Layout, rt: RequestTracker) -> Path:
    """Root's RT password for the person who opens RT's web UI."""
    path = layout.secrets / "rt-root.password"
    _write_secret(path, rt.root_password)
    return path


def start_alertmanager(supervisor: Supervisor, layout: Layout, port: int) -> str:
    """One Alertmanager member (no cluster), delivering to recoverlink; its URL."""
    url = f"http://{LOOPBACK}:{port}"
    argv = [
        binary("prometheus-alertmanager"),
        f"--config.file={layout.config / 'alertmanager.yml'}",
        f"--storage.path={layout.root / 'alertmanager'}",
        f"--web.listen-address={LOOPBACK}:{port}",
        f"--web.external-url={url}",
        "--cluster.listen-address=",  # a single member: no gossip port
    ]
    process = supervisor.start("alertmanager", argv, env=child_env())
    supervisor.wait_http_ok(process, f"{url}/-/ready")
    return url


def start_prometheus(supervisor: Supervisor, layout: Layout, port: int) -> tuple[str, Started]:
    """Prometheus on the demo's prometheus.yml, not waited for (`wait_scraping` does)."""
    url = f"http://{LOOPBACK}:{port}"
    argv = [
        binary("prometheus"),
        f"--config.file={layout.config / 'prometheus.yml'}",
        f"--storage.tsdb.path={layout.root / 'prometheus'}",
        f"--web.listen-address={LOOPBACK}:{port}",
    ]
    return url, supervisor.start("prometheus", argv, env=child_env())


def wait_scraping(supervisor: Supervisor, process: Started, url: str) -> None:
    """Until Prometheus is ready and has scraped every target (the payments exporter and recoverlink)."""
    supervisor.wait_http_ok(process, f"{url}/-/ready")

    def all_up() -> bool:
        answer = requests.get(f"{url}/api/v1/targets", timeout=5)
        targets = answer.json()["data"]["activeTargets"]
        return bool(targets) and all(t["health"] == "up" for t in targets)

    supervisor.wait_ready(process, all_up, 30, "Prometheus to scrape every target")
