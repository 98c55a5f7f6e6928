"""A real Alertmanager HA pair on loopback that a test feeds through its API instead of Prometheus.

`running_alertmanager_pair(directory, configs)` starts two gossiping members (each with its own
config, so each may deliver to another recoverlink replica), waits until both see a settled
cluster of two, and stops them at the end. `push()` posts alerts to both members, as Prometheus
does (`POST /api/v2/alerts`); the metrics helpers read what the members did with them.
"""

from __future__ import annotations

import shutil
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

from tests.support.processes import LOOPBACK, RunningProcess, free_ports, running_process, wait_until

INSTALL_HINT = (
    "apt-get install -y --no-install-recommends prometheus-alertmanager "
    "(`make test` does it through scripts/ensure-debian-packages)"
)
# Short enough that the second member delivers its own copy (real HA duplicates); see
# tests/e2e/conftest.py for how it was chosen.
PEER_TIMEOUT = "10ms"


def alertmanager_binary() -> str:
    path = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if path is None:
        pytest.fail(f"Alertmanager is not installed: {INSTALL_HINT}", pytrace=False)
    return path


def webhook_route(
    urls: Sequence[str],
    *,
    token_file: Path,
    group_by: Sequence[str] = ("alertname", "service"),
    group_wait: str = "1s",
    group_interval: str = "2s",
    repeat_interval: str = "1h",
) -> dict[str, Any]:
    """An Alertmanager config: one receiver `recoverlink` posting to each of `urls` with a bearer token."""
    return {
        "route": {
            "receiver": "recoverlink",
            "group_by": list(group_by),
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [
            {
                "name": "recoverlink",
                "webhook_configs": [
                    {
                        "url": url,
                        "send_resolved": True,
                        "http_config": {
                            "authorization": {"type": "Bearer", "credentials_file": str(token_file)}
                        },
                    }
                    for url in urls
                ],
            }
        ],
    }


@dataclass
class AlertmanagerPair:
    urls: list[str]
    processes: list[RunningProcess]

    def push(self, alerts: Sequence[Mapping[str, Any]], timeout: float = 10.0) -> None:
        """POST the alerts to both members, as Prometheus sends each alert to every Alertmanager."""
        for url in self.urls:
            answer = requests.post(f"{url}/api/v2/alerts", json=list(alerts), timeout=timeout)
            assert answer.status_code == 200, f"{url}: {answer.status_code} {answer.text}"

    def active_alerts(self, url: str, **labels: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode([("filter", f'{k}="{v}"') for k, v in labels.items()])
        answer = requests.get(f"{url}/api/v2/alerts?{query}", timeout=10)
        answer.raise_for_status()
        return [a for a in answer.json() if a["status"]["state"] == "active"]

    def metric_sum(self, name: str, **labels: str) -> float:
        """`name` summed over both members and over every label set that has these `labels`."""
        total = 0.0
        for url in self.urls:
            answer = requests.get(f"{url}/metrics", timeout=10)
            answer.raise_for_status()
            for family in text_string_to_metric_families(answer.text):
                for sample in family.samples:
                    if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                        total += float(sample.value)
        return total

    def webhook_attempts(self) -> float:
        return self.metric_sum("alertmanager_notification_requests_total", integration="webhook")

    def webhook_failed_attempts(self) -> float:
        return self.metric_sum("alertmanager_notification_requests_failed_total", integration="webhook")

    def logs(self) -> str:
        return "\n".join(p.describe() for p in self.processes)


@contextmanager
def running_alertmanager_pair(
    directory: Path, configs: Sequence[Mapping[str, Any]], *, peer_timeout: str = PEER_TIMEOUT
) -> Iterator[AlertmanagerPair]:
    """Two members gossiping on loopback; member i runs `configs[i]` (one config: both run it)."""
    binary = alertmanager_binary()
    if len(configs) == 1:
        configs = [configs[0], configs[0]]
    assert len(configs) == 2, "an HA pair has two members"
    web_ports = free_ports(2)
    cluster_ports = free_ports(2, udp=True)
    urls = [f"http://{LOOPBACK}:{port}" for port in web_ports]
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    with ExitStack() as stack:
        processes = []
        for index, (web, cluster, other) in enumerate(
            zip(web_ports, cluster_ports, reversed(cluster_ports), strict=True)
        ):
            config_file = directory / f"alertmanager-{index}.yml"
            with config_file.open("w", encoding="utf-8") as handle:
                yaml.dump(dict(configs[index]), handle)
            argv = [
                binary,
                f"--config.file={config_file}",
                f"--storage.path={directory / f'alertmanager-{index}'}",
                f"--web.listen-address={LOOPBACK}:{web}",
                f"--web.external-url=http://{LOOPBACK}:{web}",
                f"--cluster.listen-address={LOOPBACK}:{cluster}",
                f"--cluster.peer={LOOPBACK}:{other}",
                "--cluster.settle-timeout=2s",
                f"--cluster.peer-timeout={peer_timeout}",
                "--log.level=info",
            ]
            processes.append(
                stack.enter_context(
                    running_process(
                        f"alertmanager-{index}",
                        argv,
                        log_dir=directory / "logs",
                        ready_url=f"{urls[index]}/-/ready",
                    )
                )
            )
        pair = AlertmanagerPair(urls=urls, processes=processes)
        for url in urls:
            wait_until(
                partial(_cluster_of_two, url),
                timeout=30,
                what=f"{url}/api/v2/status to show a settled cluster of 2 peers",
                details=pair.logs,
            )
        yield pair


def _cluster_of_two(url: str) -> bool:
    answer = requests.get(f"{url}/api/v2/status", timeout=5)
    answer.raise_for_status()
    cluster = answer.json()["cluster"]
    return cluster.get("status") == "ready" and len(cluster.get("peers") or []) == 2
