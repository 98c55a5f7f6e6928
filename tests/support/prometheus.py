"""A real Prometheus on loopback, and exporters for it to scrape, for integration tests.

`serving_exporter(registry)` serves a `prometheus_client` registry from a thread of the test
process; `running_prometheus(directory, targets)` starts the Debian `prometheus` binary scraping
those targets every second, waits until every target is up, and stops it on exit. Both bind
127.0.0.1 on free ports (REFERENCE.md 2.2).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry, start_http_server
from ruamel.yaml import YAML

from tests.support.processes import LOOPBACK, RunningProcess, free_port, running_process, wait_until

INSTALL_HINT = (
    "apt-get install -y --no-install-recommends prometheus "
    "(`make test` does it through scripts/ensure-debian-packages)"
)


@dataclass(frozen=True)
class Exporter:
    """A registry served over HTTP; `target` is what a scrape config lists."""

    url: str
    registry: CollectorRegistry

    @property
    def target(self) -> str:
        return self.url.removeprefix("http://")


@contextmanager
def serving_exporter(registry: CollectorRegistry) -> Iterator[Exporter]:
    """Serve `registry` on a free 127.0.0.1 port until the block ends."""
    server, thread = start_http_server(0, addr=LOOPBACK, registry=registry)
    try:
        yield Exporter(url=f"http://{LOOPBACK}:{server.server_port}", registry=registry)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass(frozen=True)
class Prometheus:
    url: str
    process: RunningProcess

    def query(self, promql: str) -> Any:
        """The `data` of an instant query, as the HTTP API answers it."""
        response = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        response.raise_for_status()
        return response.json()["data"]

    def wait_for_series(self, promql: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until `promql` returns `count` series (the first scrapes have landed)."""
        return wait_until(
            lambda: _series_if(self.query(promql), count),
            timeout=timeout,
            what=f"{promql} to return {count} series",
            details=self.process.describe,
        )


def prometheus_binary() -> str:
    """The `prometheus` binary; missing is a failure, not a skip, so CI cannot pass without it."""
    path = shutil.which("prometheus") or shutil.which("prometheus", path="/usr/bin")
    if path is None:
        pytest.fail(f"prometheus is not installed: {INSTALL_HINT}", pytrace=False)
    return path


@contextmanager
def running_prometheus(
    directory: Path,
    targets: Sequence[str],
    *,
    job: str = "test-exporter",
    scrape_interval: str = "1s",
    extra_config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    wait_for_targets: bool = True,
) -> Iterator[Prometheus]:
    """Prometheus scraping `targets` (host:port) every `scrape_interval`, with its files in `directory`.

    `extra_config` is merged into the top level of prometheus.yml (rule_files, alerting, its own
    scrape_configs, ...). Without `wait_for_targets` it only waits until Prometheus is ready.
    """
    config_path = _write_config(directory, targets, job, scrape_interval, extra_config or {})
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    argv = [
        prometheus_binary(),
        f"--config.file={config_path}",
        f"--storage.tsdb.path={directory / 'prometheus-data'}",
        f"--web.listen-address={LOOPBACK}:{port}",
    ]
    with running_process(
        "prometheus", argv, log_dir=directory / "logs", ready_url=f"{url}/-/ready", env=env
    ) as process:
        prometheus = Prometheus(url=url, process=process)
        if not wait_for_targets:
            yield prometheus
            return
        wait_until(
            lambda: _all_targets_up(prometheus, len(targets)),
            timeout=20,
            what=f"Prometheus to scrape {', '.join(targets)}",
            details=process.describe,
        )
        yield prometheus


def _write_config(
    directory: Path, targets: Sequence[str], job: str, interval: str, extra: Mapping[str, Any]
) -> Path:
    config = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
        **extra,
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "prometheus.yml"
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(config, handle)
    return path


def _all_targets_up(prometheus: Prometheus, expected: int) -> bool:
    response = requests.get(f"{prometheus.url}/api/v1/targets", timeout=5)
    response.raise_for_status()
    active = response.json()["data"]["activeTargets"]
    return len(active) == expected and all(t["health"] == "up" for t in active)


def _series_if(data: dict[str, Any], count: int) -> list[dict[str, Any]] | None:
    result: list[dict[str, Any]] = data["result"]
    return result if data["resultType"] == "vector" and len(result) == count else None
