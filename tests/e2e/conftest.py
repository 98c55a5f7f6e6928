"""The real stack on loopback: recoverlink under gunicorn, an Alertmanager HA pair, Prometheus, an exporter.

Prometheus scrapes a gauge the test sets, evaluates one alerting rule every second and sends the
alerts to both Alertmanagers, which gossip and deliver to recoverlink with basic auth
(REFERENCE.md 1.6, 1.7, 2.2). The processes are started once per module and always stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

from tests.support.processes import (
    LOOPBACK,
    RunningProcess,
    free_port,
    free_ports,
    running_process,
    wait_until,
)

WEBHOOK_USER = "am"
WEBHOOK_PASSWORD = "e2e-basic-password"
ALERT_NAME = "CheckoutErrorsHigh"
RULE_LABELS = {"service": "checkout", "severity": "critical", "team": "payments"}
GAUGE = "rl_e2e_checkout_errors"
# The second member sends peer_timeout after the first, unless the first one's notification-log
# entry reached it by then. The entry exists once recoverlink has answered (~10 ms here) and
# travels on the next gossip tick (every 200 ms), so with 10 ms the second member delivers too:
# real HA duplicates (REFERENCE.md 1.6). With 50 ms, one run in five saw no duplicate at all.
PEER_TIMEOUT = "10ms"
# A locked database turns into 503 after this long instead of the default 5 s.
BUSY_TIMEOUT_MS = 200
# Variables that would point the processes somewhere else than the files of this test.
FOREIGN_ENV = ("PROMETHEUS_MULTIPROC_DIR", "RECOVERLINK_")


def _binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/bin")
    if path is None:
        pytest.fail(
            f"{name} is not installed; the e2e tests need the Debian packages: "
            "apt-get install -y --no-install-recommends prometheus prometheus-alertmanager "
            "(`make test` does it through scripts/ensure-debian-packages)",
            pytrace=False,
        )
    return path


def recoverlink_script() -> str:
    script = Path(sys.executable).parent / "recoverlink"
    if not script.is_file():
        pytest.fail(
            f"{script} is missing: install the project into this venv (`pip install -e '.[test]'`)",
            pytrace=False,
        )
    return str(script)


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV)}


def write_yaml(path: Path, data: Any) -> Path:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    return path


def get_json(url: str, token: str | None = None, timeout: float = 5.0) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = requests.get(url, headers=headers, timeout=timeout)
    response.raise_for_status()
    return response.json()


def metric(base_url: str, name: str, **labels: str) -> float:
    """One sample from `base_url`/metrics with exactly these labels; 0 when absent."""
    response = requests.get(f"{base_url}/metrics", timeout=5)
    response.raise_for_status()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def parse_time(value: str) -> datetime:
    """An RFC 3339 time from Alertmanager or a naive-UTC one from the store, as aware UTC."""
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# --- recoverlink -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRow:
    id: int
    fingerprint: str
    starts_at: datetime
    status: str
    labels: dict[str, str]
    first_seen_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class NotificationRow:
    id: int
    status: str
    group_key: str
    delivery_count: int
    external_url: str


@dataclass
class Recoverlink:
    url: str
    db_path: Path
    admin_token_file: Path
    process: RunningProcess

    @property
    def admin_token(self) -> str:
        return self.admin_token_file.read_text(encoding="utf-8").strip()

    def api(self, path: str) -> Any:
        return get_json(f"{self.url}{path}", token=self.admin_token)

    def notifications_total(self, outcome: str) -> float:
        """From GET /metrics, which sums every gunicorn worker (multiprocess mode)."""
        return metric(self.url, "recoverlink_alertmanager_notifications_total", outcome=outcome)

    def _read(self, query: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Read the store as an outsider would: a read-only connection of our own."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        try:
            conn.row_factory = sqlite3.Row
            return conn.execute(query, params).fetchall()
        finally:
            conn.close()

    def episodes(self, **label_filter: str) -> list[AlertRow]:
        rows = self._read(
            "SELECT id, fingerprint, starts_at, status, labels, first_seen_at, resolved_at "
            "FROM alerts ORDER BY id"
        )
        found = [
            AlertRow(
                id=row["id"],
                fingerprint=row["fingerprint"],
                starts_at=parse_time(row["starts_at"]),
                status=row["status"],
                labels=json.loads(row["labels"]),
                first_seen_at=parse_time(row["first_seen_at"]),
                resolved_at=parse_time(row["resolved_at"]) if row["resolved_at"] else None,
            )
            for row in rows
        ]
        return [e for e in found if all(e.labels.get(k) == v for k, v in label_filter.items())]

    def notifications(self, group_key_contains: str = "") -> list[NotificationRow]:
        rows = self._read(
            "SELECT id, status, group_key, delivery_count, external_url FROM notifications ORDER BY id"
        )
        return [
            NotificationRow(
                id=row["id"],
                status=row["status"],
                group_key=row["group_key"],
                delivery_count=row["delivery_count"],
                external_url=row["external_url"],
            )
            for row in rows
            if group_key_contains in row["group_key"]
        ]


@pytest.fixture(scope="module")
def e2e_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def binaries() -> dict[str, str]:
    """Every program the stack needs; a missing one fails the test with how to install it."""
    return {
        "recoverlink": recoverlink_script(),
        "alertmanager": _binary("prometheus-alertmanager"),
        "prometheus": _binary("prometheus"),
    }


@pytest.fixture(scope="module")
def recoverlink(e2e_dir: Path, binaries: dict[str, str]) -> Iterator[Recoverlink]:
    """`recoverlink serve --migrate` exactly as users run it, on a config modelled on deploy/."""
    var = e2e_dir / "var"
    password_file = e2e_dir / "secrets" / "webhook.password"
    password_file.parent.mkdir()
    password_file.write_text(WEBHOOK_PASSWORD + "\n", encoding="utf-8")
    password_file.chmod(0o600)
    admin_token_file = var / "admin.token"
    db_path = var / "recoverlink.db"
    config = write_yaml(
        e2e_dir / "recoverlink.yaml",
        {
            "webhook": {
                "auth": {"basic": {"username": WEBHOOK_USER, "password": {"file": str(password_file)}}},
                "known_severities": ["critical", "major", "warning", "minor", "info"],
            },
            "database": {"sqlite_path": str(db_path), "busy_timeout_ms": BUSY_TIMEOUT_MS},
            "server": {"workers": 2, "threads": 4, "metrics_dir": str(var / "metrics")},
            "api": {"bootstrap_admin_token": {"file": str(admin_token_file), "generate": True}},
            "logging": {"level": "INFO"},
        },
    )
    port = free_port()
    argv = [
        binaries["recoverlink"],
        "serve",
        "--config",
        str(config),
        "--migrate",
        "--listen",
        f"{LOOPBACK}:{port}",
    ]
    url = f"http://{LOOPBACK}:{port}"
    with running_process(
        "recoverlink", argv, log_dir=e2e_dir / "logs", ready_url=f"{url}/-/ready", env=child_env()
    ) as process:
        yield Recoverlink(url=url, db_path=db_path, admin_token_file=admin_token_file, process=process)


# --- Alertmanager HA pair ----------------------------------------------------------------------


@dataclass
class AlertmanagerPair:
    urls: list[str]
    processes: list[RunningProcess]

    def active_alerts(self, url: str, **labels: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode([("filter", f'{k}="{v}"') for k, v in labels.items()])
        return [a for a in get_json(f"{url}/api/v2/alerts?{query}") if a["status"]["state"] == "active"]

    def webhook_successes(self) -> float:
        """Webhook requests the pair saw answered 2xx (attempts minus failed attempts, both members)."""
        total = 0.0
        for url in self.urls:
            total += metric(url, "alertmanager_notification_requests_total", integration="webhook")
            total -= metric(url, "alertmanager_notification_requests_failed_total", integration="webhook")
        return total

    def logs(self) -> str:
        return "\n".join(p.describe() for p in self.processes)


@pytest.fixture(scope="module")
def alertmanagers(
    e2e_dir: Path, binaries: dict[str, str], recoverlink: Recoverlink
) -> Iterator[AlertmanagerPair]:
    """Two members gossiping on loopback, both delivering to recoverlink with basic auth."""
    password_file = e2e_dir / "secrets" / "alertmanager-webhook.password"
    password_file.write_text(WEBHOOK_PASSWORD + "\n", encoding="utf-8")
    config = write_yaml(
        e2e_dir / "alertmanager.yml",
        {
            "route": {
                "receiver": "recoverlink",
                # One group per shard, so each episode has its own notifications.
                "group_by": ["alertname", "service", "shard"],
                "group_wait": "1s",
                "group_interval": "2s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "recoverlink",
                    "webhook_configs": [
                        {
                            "url": f"{recoverlink.url}/webhook/alertmanager",
                            "send_resolved": True,
                            "http_config": {
                                "basic_auth": {"username": WEBHOOK_USER, "password_file": str(password_file)}
                            },
                        }
                    ],
                }
            ],
        },
    )
    web_ports = free_ports(2)
    cluster_ports = free_ports(2, udp=True)
    urls = [f"http://{LOOPBACK}:{p}" for p in web_ports]
    with ExitStack() as stack:
        processes = []
        for index, (web, cluster, other) in enumerate(
            zip(web_ports, cluster_ports, reversed(cluster_ports), strict=True)
        ):
            argv = [
                binaries["alertmanager"],
                f"--config.file={config}",
                f"--storage.path={e2e_dir / f'alertmanager-{index}'}",
                f"--web.listen-address={LOOPBACK}:{web}",
                f"--web.external-url=http://{LOOPBACK}:{web}",
                f"--cluster.listen-address={LOOPBACK}:{cluster}",
                f"--cluster.peer={LOOPBACK}:{other}",
                "--cluster.settle-timeout=2s",
                f"--cluster.peer-timeout={PEER_TIMEOUT}",
                "--log.level=debug",
            ]
            processes.append(
                stack.enter_context(
                    running_process(
                        f"alertmanager-{index}",
                        argv,
                        log_dir=e2e_dir / "logs",
                        ready_url=f"{urls[index]}/-/ready",
                        env=child_env(),
                    )
                )
            )
        pair = AlertmanagerPair(urls=urls, processes=processes)
        for url in urls:
            wait_until(
                lambda url=url: _cluster_of_two(url),
                timeout=30,
                what=f"{url}/api/v2/status to show a settled cluster of 2 peers",
                details=pair.logs,
            )
        yield pair


def _cluster_of_two(url: str) -> bool:
    cluster = get_json(f"{url}/api/v2/status")["cluster"]
    return cluster.get("status") == "ready" and len(cluster.get("peers") or []) == 2


# --- the exporter and Prometheus ---------------------------------------------------------------


@dataclass
class Exporter:
    url: str
    gauge: Gauge

    def set_errors(self, shard: str, value: float) -> None:
        self.gauge.labels(shard=shard).set(value)


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    """A gauge per shard on its own registry, served from a thread of the test process."""
    registry = CollectorRegistry()
    gauge = Gauge(GAUGE, "Checkout errors per shard, set by the e2e test.", ["shard"], registry=registry)
    server, thread = start_http_server(0, addr=LOOPBACK, registry=registry)
    try:
        yield Exporter(url=f"http://{LOOPBACK}:{server.server_port}", gauge=gauge)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class Prometheus:
    url: str
    process: RunningProcess


@pytest.fixture(scope="module")
def prometheus(
    e2e_dir: Path, binaries: dict[str, str], alertmanagers: AlertmanagerPair, exporter: Exporter
) -> Iterator[Prometheus]:
    """Scrapes the exporter every second and sends the rule's alerts to both Alertmanagers."""
    rules = write_yaml(
        e2e_dir / "rules.yml",
        {
            "groups": [
                {
                    "name": "recoverlink-e2e",
                    "rules": [
                        {
                            "alert": ALERT_NAME,
                            "expr": f"{GAUGE} > 0",
                            "labels": RULE_LABELS,
                            "annotations": {"summary": "checkout errors on shard {{ $labels.shard }}"},
                        }
                    ],
                }
            ]
        },
    )
    exporter_target = exporter.url.removeprefix("http://")
    config = write_yaml(
        e2e_dir / "prometheus.yml",
        {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "alerting": {
                "alertmanagers": [
                    {
                        "api_version": "v2",
                        "static_configs": [
                            {"targets": [u.removeprefix("http://") for u in alertmanagers.urls]}
                        ],
                    }
                ]
            },
            "scrape_configs": [
                {"job_name": "e2e-exporter", "static_configs": [{"targets": [exporter_target]}]}
            ],
        },
    )
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    argv = [
        binaries["prometheus"],
        f"--config.file={config}",
        f"--storage.tsdb.path={e2e_dir / 'prometheus'}",
        f"--web.listen-address={LOOPBACK}:{port}",
    ]
    with running_process(
        "prometheus", argv, log_dir=e2e_dir / "logs", ready_url=f"{url}/-/ready", env=child_env()
    ) as process:
        prom = Prometheus(url=url, process=process)
        wait_until(
            lambda: _scraping(prom),
            timeout=20,
            what="Prometheus to scrape the exporter",
            details=process.describe,
        )
        yield prom


def _scraping(prom: Prometheus) -> bool:
    targets = get_json(f"{prom.url}/api/v1/targets")["data"]["activeTargets"]
    return bool(targets) and all(t["health"] == "up" for t in targets)
