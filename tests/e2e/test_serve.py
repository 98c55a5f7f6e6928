"""`recoverlink serve` with several workers: one /metrics for all, and reloads that reach every worker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import fixture_body
from tests.e2e.conftest import child_env, metric, recoverlink_script
from tests.support.processes import LOOPBACK, RunningProcess, free_port, running_process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
ROOT = Path(__file__).parents[2]
FOLLOW_DEADLINE_SECONDS = 2.0


@dataclass
class Served:
    url: str
    config_dir: Path
    process: RunningProcess

    @property
    def admin(self) -> dict[str, str]:
        token = (self.config_dir.parent / "var" / "admin.token").read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    @property
    def webhook(self) -> dict[str, str]:
        token = (self.config_dir.parent / "var" / "webhook.token").read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    def versions_seen(self, requests_count: int = 30) -> set[str]:
        """The rule-set versions answering explain, over fresh connections spread across workers."""
        body = json.dumps({"labels": {"alertname": "X", "service": "payments-api"}})
        seen = set()
        for _ in range(requests_count):
            answer = requests.post(f"{self.url}/api/v1/explain", data=body, headers=self.admin, timeout=5)
            answer.raise_for_status()
            seen.add(answer.json()["ruleset_version"])
        return seen


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The shipped example config and rules, served by two gunicorn workers."""
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    port = free_port()
    argv = [
        recoverlink_script(),
        "serve",
        "--config",
        str(tmp_path / "deploy" / "recoverlink.yaml"),
        "--migrate",
    ]
    argv += ["--listen", f"{LOOPBACK}:{port}", "--workers", "2", "--threads", "2"]
    url = f"http://{LOOPBACK}:{port}"
    with running_process(
        "recoverlink", argv, log_dir=tmp_path / "logs", ready_url=f"{url}/-/ready", env=child_env()
    ) as process:
        yield Served(url, tmp_path / "deploy", process)


def edit_rule_summary(served: Served, text: str) -> None:
    path = served.config_dir.parent / "rules" / "90-defaults.yaml"
    content = path.read_text()
    marker = "every-alert-has-a-summary"
    path.write_text(content.replace(marker, f"{marker}-{text}"))


def test_one_scrape_shows_the_sum_over_all_workers(served: Served) -> None:
    document = json.loads(fixture_body("firing_single.json"))
    for n in range(40):
        document["alerts"][0]["fingerprint"] = f"{n:016x}"
        answer = requests.post(
            f"{served.url}/webhook/alertmanager", json=document, headers=served.webhook, timeout=5
        )
        assert answer.status_code == 200
    name = "recoverlink_alertmanager_notifications_total"
    for _ in range(10):
        assert metric(served.url, name, outcome="accepted") == 40
    assert metric(served.url, "recoverlink_alerts_received_total", status="firing", result="new") == 40
    assert metric(served.url, "recoverlink_config_last_reload_successful") == 1


def test_reload_reaches_every_worker_within_two_seconds(served: Served) -> None:
    (before,) = served.versions_seen()
    edit_rule_summary(served, "v2")
    answer = requests.post(f"{served.url}/-/reload", headers=served.admin, timeout=10)
    assert answer.status_code == 200
    after = answer.json()["version"]
    assert after != before
    time.sleep(FOLLOW_DEADLINE_SECONDS)
    assert served.versions_seen() == {after}


def test_failed_reload_changes_nothing_in_any_worker(served: Served) -> None:
    (before,) = served.versions_seen()
    rules = served.config_dir.parent / "rules" / "90-defaults.yaml"
    rules.write_text(rules.read_text() + "  - name: broken\n    match: ['service=~\"(\"']\n")
    answer = requests.post(f"{served.url}/-/reload", headers=served.admin, timeout=10)
    assert answer.status_code == 400
    assert "invalid regex" in answer.json()["error"]["errors"][0]
    time.sleep(FOLLOW_DEADLINE_SECONDS)
    assert served.versions_seen() == {before}
    assert metric(served.url, "recoverlink_config_last_reload_successful") == 0


def test_sighup_to_the_server_reloads_every_worker(served: Served) -> None:
    (before,) = served.versions_seen()
    edit_rule_summary(served, "hup")
    os.kill(served.process.pid, signal.SIGHUP)
    time.sleep(FOLLOW_DEADLINE_SECONDS)
    seen = served.versions_seen()
    assert len(seen) == 1
    assert seen != {before}
    assert served.process.popen.poll() is None, "SIGHUP must not stop the server"


def test_a_worker_restarted_while_the_rules_are_broken_keeps_serving_the_good_ones(served: Served) -> None:
    (before,) = served.versions_seen()
    rules = served.config_dir.parent / "rules" / "90-defaults.yaml"
    rules.write_text(rules.read_text() + "  - name: broken\n    match: ['service=~\"(\"']\n")
    children = Path(f"/proc/{served.process.pid}/task/{served.process.pid}/children").read_text().split()
    # The outbox worker is `python -m recoverlink worker ...`; gunicorn's workers are forks of the master.
    gunicorn_workers = [
        int(pid)
        for pid in children
        if b"worker" not in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    ]
    assert len(gunicorn_workers) == 2
    for pid in gunicorn_workers:
        os.kill(pid, signal.SIGKILL)  # the master boots new ones, which must not read the broken files
    time.sleep(FOLLOW_DEADLINE_SECONDS)
    assert served.process.popen.poll() is None, "the server is still up"
    assert served.versions_seen() == {before}
