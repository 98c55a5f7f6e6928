"""What the reliability tests (and bench/scale.py) share: configs, `recoverlink serve` and
`recoverlink worker` processes started as users start them, Alertmanager-shaped alerts, and reading
the API and metrics.

CI runs what the issue names (PostgreSQL down 30 s, Request Tracker down 2 minutes, a 10,000-alert
storm); `RECOVERLINK_RELIABILITY_LONG=1` (`make bench-reliability`) stretches the outages further.
The throughput figures are in `bench/scale.py` (`make bench-scale`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from tests.e2e.conftest import child_env, get_json, metric, recoverlink_script, write_yaml
from tests.support.processes import LOOPBACK, RunningProcess, free_port, running_process

WEBHOOK_TOKEN = "reliability-webhook-token-0123456789"
LONG_ENV = "RECOVERLINK_RELIABILITY_LONG"


def long_variant() -> bool:
    """True when `RECOVERLINK_RELIABILITY_LONG=1`: outages longer than the issue's."""
    return os.environ.get(LONG_ENV) == "1"


def utc_stamp(moment: datetime | None = None) -> str:
    """RFC 3339 with milliseconds, as Alertmanager writes times."""
    value = (moment or datetime.now(UTC)).astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def api_alert(labels: Mapping[str, str], starts_at: str, summary: str = "") -> dict[str, Any]:
    """One alert as Prometheus posts it to Alertmanager's `POST /api/v2/alerts`."""
    return {
        "labels": dict(labels),
        "annotations": {"summary": summary or f"{labels.get('alertname')} on {labels.get('service')}"},
        "startsAt": starts_at,
        "generatorURL": "http://prometheus.invalid/graph",
    }


def webhook_document(group_key: str, alerts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A firing Alertmanager webhook notification (payload version 4) holding `alerts`, each a dict
    with `labels`, `fingerprint` and `startsAt`."""
    full = [
        {
            "status": "firing",
            "labels": dict(a["labels"]),
            "annotations": {"summary": "reliability"},
            "startsAt": a["startsAt"],
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": a["fingerprint"],
        }
        for a in alerts
    ]
    common = dict(alerts[0]["labels"]) if alerts else {}
    return {
        "version": "4",
        "status": "firing",
        "receiver": "recoverlink",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "groupLabels": {},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid",
        "alerts": full,
    }


def catalog(directory: Path, services: Mapping[str, Mapping[str, Any]], teams: Sequence[str]) -> Path:
    """A catalog file: `services` maps a name to its entry (owner, itsm, ...); team `unplaced` is the
    fallback owner `write_config` names."""
    return write_yaml(
        directory / "catalog.yaml",
        {
            "teams": [{"name": team} for team in (*teams, "unplaced")],
            "services": [{"name": name, **entry} for name, entry in services.items()],
        },
    )


def write_config(
    directory: Path,
    *,
    catalog_file: Path | None = None,
    rules_files: Sequence[Path] = (),
    itsm: Mapping[str, Any] | None = None,
    worker: Mapping[str, Any] | None = None,
    enrichment: Mapping[str, Any] | None = None,
    database: Mapping[str, Any] | None = None,
    server: Mapping[str, Any] | None = None,
) -> Path:
    """A recoverlink.yaml modelled on deploy/, with its state in `directory/var`."""
    token_file = directory / "webhook.token"
    token_file.write_text(WEBHOOK_TOKEN + "\n", encoding="utf-8")
    var = directory / "var"
    config: dict[str, Any] = {
        "webhook": {"auth": {"bearer": {"file": str(token_file)}}},
        "database": {"sqlite_path": str(var / "recoverlink.db"), **(database or {})},
        "server": {"workers": 2, "threads": 4, "metrics_dir": str(var / "metrics"), **(server or {})},
        "api": {"bootstrap_admin_token": {"file": str(var / "admin.token"), "generate": True}},
        "logging": {"level": "INFO"},
    }
    if catalog_file is not None:
        config["catalog"] = {"files": [str(catalog_file)], "fallback_owner": "unplaced"}
    if rules_files:
        config["rules"] = {"files": [str(path) for path in rules_files]}
    if itsm is not None:
        config["itsm"] = dict(itsm)
    if worker is not None:
        config["worker"] = dict(worker)
    if enrichment is not None:
        config["enrichment"] = dict(enrichment)
    return write_yaml(directory / "recoverlink.yaml", config)


def recoverlink_env(
    database_url: str | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = child_env()
    if database_url is not None:
        env["RECOVERLINK_DATABASE_URL"] = database_url
    env.update(extra or {})
    return env


@dataclass
class Recoverlink:
    """One `recoverlink serve` we started."""

    url: str
    config: Path
    process: RunningProcess

    @property
    def admin_token(self) -> str:
        admin_file = self.config.parent / "var" / "admin.token"
        return admin_file.read_text(encoding="utf-8").strip()

    def api(self, path: str) -> Any:
        return get_json(f"{self.url}{path}", token=self.admin_token, timeout=15)

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.url, name, **labels)

    def post_webhook(self, document: Mapping[str, Any], timeout: float = 10.0) -> requests.Response:
        headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
        return requests.post(
            f"{self.url}/webhook/alertmanager", json=dict(document), headers=headers, timeout=timeout
        )

    def recoveries(self, **filters: str) -> list[dict[str, Any]]:
        """Every recovery (all pages of the list), newest first."""
        found: list[dict[str, Any]] = []
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        cursor = ""
        while True:
            page = self.api(f"/api/v1/recoveries?limit=200&{query}{cursor}")
            found.extend(page["items"])
            if not page.get("next_cursor"):
                return found
            cursor = f"&cursor={page['next_cursor']}"

    def recovery(self, recovery_id: int) -> dict[str, Any]:
        detail: dict[str, Any] = self.api(f"/api/v1/recoveries/{recovery_id}")
        return detail


@contextmanager
def serving(
    name: str,
    config: Path,
    *,
    database_url: str | None = None,
    no_worker: bool = False,
    migrate: bool = True,
    port: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Iterator[Recoverlink]:
    """`recoverlink serve --config ... [--migrate] [--no-worker]` on a free port; stopped at the end."""
    port = port or free_port()
    argv = [recoverlink_script(), "serve", "--config", str(config), "--listen", f"{LOOPBACK}:{port}"]
    argv += ["--migrate"] if migrate else []
    argv += ["--no-worker"] if no_worker else []
    url = f"http://{LOOPBACK}:{port}"
    with running_process(
        name,
        argv,
        log_dir=config.parent / "logs",
        ready_url=f"{url}/-/ready",
        env=recoverlink_env(database_url, extra_env),
        timeout=timeout,
    ) as process:
        yield Recoverlink(url=url, config=config, process=process)


@contextmanager
def working(name: str, config: Path, *, database_url: str | None = None) -> Iterator[RunningProcess]:
    """`recoverlink worker --config ...` with its own /metrics on a free port; stopped at the end."""
    port = free_port()
    listen = f"{LOOPBACK}:{port}"
    argv = [recoverlink_script(), "worker", "--config", str(config), "--metrics-listen", listen]
    with running_process(
        name,
        argv,
        log_dir=config.parent / "logs",
        ready_url=f"http://{listen}/metrics",
        env=recoverlink_env(database_url),
        timeout=60,
    ) as process:
        yield process


def children(pid: int) -> list[int]:
    """The direct children of `pid`, from /proc."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="utf-8")
    except OSError:
        return []
    return [int(child) for child in text.split()]


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_outbox_worker(pid: int) -> bool:
    """The `python -m recoverlink worker` that `serve` starts beside gunicorn."""
    argv = cmdline(pid)
    return "recoverlink" in argv and "worker" in argv


def is_alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")
