"""`recoverlink worker` on its own: it refuses an unmigrated store, runs the jobs `serve --no-worker`
enqueues, serves its own /metrics (with the outbox gauges read from the store) and stops on SIGTERM."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import fixture_body
from tests.e2e.conftest import child_env, metric, recoverlink_script, write_yaml
from tests.support.processes import LOOPBACK, free_port, running_process, wait_until

pytestmark = pytest.mark.e2e
TOKEN = "e2e-standalone-worker-token-0123456789"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "webhook.token").write_text(TOKEN + "\n")
    return write_yaml(
        tmp_path / "recoverlink.yaml",
        {
            "webhook": {"auth": {"bearer": {"file": str(tmp_path / "webhook.token")}}},
            "database": {"sqlite_path": str(tmp_path / "var" / "recoverlink.db")},
            "server": {"workers": 1, "threads": 2, "metrics_dir": str(tmp_path / "var" / "metrics")},
        },
    )


@pytest.fixture
def served(tmp_path: Path, config: Path) -> Iterator[str]:
    port = free_port()
    argv = [recoverlink_script(), "serve", "--config", str(config), "--migrate", "--no-worker"]
    argv += ["--listen", f"{LOOPBACK}:{port}"]
    url = f"http://{LOOPBACK}:{port}"
    with running_process(
        "serve", argv, log_dir=tmp_path / "logs", ready_url=f"{url}/-/ready", env=child_env()
    ):
        yield url


def test_a_worker_refuses_an_unmigrated_store_and_says_what_to_run(config: Path) -> None:
    done = subprocess.run(
        [recoverlink_script(), "worker", "--config", str(config)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "run `recoverlink db upgrade`" in done.stderr


def test_a_worker_on_its_own_runs_the_jobs_and_serves_its_metrics(
    tmp_path: Path, config: Path, served: str
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for name in ("firing_single.json", "resolved_single.json"):  # the fix: verification is a job
        answer = requests.post(
            f"{served}/webhook/alertmanager", json=json.loads(fixture_body(name)), headers=headers, timeout=10
        )
        assert answer.status_code == 200
    port = free_port()
    argv = [recoverlink_script(), "worker", "--config", str(config), "--metrics-listen", f"{LOOPBACK}:{port}"]
    worker_url = f"http://{LOOPBACK}:{port}"
    with running_process(
        "worker", argv, log_dir=tmp_path / "logs", ready_url=f"{worker_url}/metrics", env=child_env()
    ) as worker:
        wait_until(
            lambda: (
                metric(worker_url, "recoverlink_outbox_job_runs_total", kind="impact.verify", outcome="done")
                == 1
            ),
            timeout=15,
            what="the worker to run the verification job",
            details=worker.describe,
        )
        body = requests.get(f"{worker_url}/metrics", timeout=5).text
        assert 'recoverlink_outbox_jobs{kind="impact.verify",state="due"} 0.0' in body
        assert "recoverlink_recoveries{" not in body, "the only recovery is closed"
        assert worker.popen.poll() is None
