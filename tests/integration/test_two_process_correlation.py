"""Two processes (as two gunicorn workers or two replicas) ingest alerts of one new failure at once."""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from recoverlink.config.enrichment_loader import load_enrichment
from recoverlink.config.loader import load_config
from recoverlink.domain.alerts import AlertPolicy
from recoverlink.ingest import RecentEpisodes, ingest_webhook
from recoverlink.store.engine import Store, open_store
from recoverlink.store.schema import recoveries, recovery_alerts

EXAMPLE = Path(__file__).parents[2] / "deploy" / "recoverlink.yaml"
NOW = datetime(2026, 11, 22, 18, 10, tzinfo=UTC)
PROCESSES = 2
DELIVERIES = 6  # per process, each a new alert of the same failure


def delivery(process: int, n: int) -> bytes:
    labels = {"alertname": "PaymentsApiHighLatency", "service": "payments-api", "severity": "warning"}
    labels["instance"] = f"payments-api-{process}-{n}:8080"
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": "payments-api latency"},
        "startsAt": "2026-11-22T18:08:59.435Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": f"{process:08x}{n:08x}",
    }
    document = {"version": "4", "status": "firing", "receiver": f"r{process}", "alerts": [alert]}
    document["groupKey"] = '{}:{alertname="PaymentsApiHighLatency"}'
    return json.dumps(document).encode()


def ingest_from_a_process(url: str, process: int, start: Any, results: Any) -> None:
    """One process: its own store and enricher, its deliveries released together with the other's."""
    store = open_store(url)
    config = load_config(EXAMPLE)
    enricher = load_enrichment(config, EXAMPLE.parent, str(EXAMPLE)).enricher
    recent = RecentEpisodes()
    start.wait()
    opened = 0
    for n in range(DELIVERIES):
        outcome = ingest_webhook(store, delivery(process, n), AlertPolicy(), enricher, NOW, recent=recent)
        opened += len(outcome.recoveries.opened)
    store.dispose()
    results.put(opened)


@pytest.mark.parametrize("round_", range(2))
def test_two_processes_ingesting_one_new_failure_at_once_open_one_recovery(store: Store, round_: int) -> None:
    spawn = multiprocessing.get_context("spawn")
    start, results = spawn.Barrier(PROCESSES), spawn.Queue()
    url = store.engine.url.render_as_string(hide_password=False)
    workers = [
        spawn.Process(target=ingest_from_a_process, args=(url, p, start, results)) for p in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    opened = sum(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    with store.read() as conn:
        stored = conn.execute(select(recoveries.c.id)).scalars().all()
        attached = conn.execute(select(func.count()).select_from(recovery_alerts)).scalar_one()
    assert len(stored) == 1 and opened == 1
    assert attached == PROCESSES * DELIVERIES
