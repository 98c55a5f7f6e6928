"""An alert storm against the scale-out topology of DESIGN.md ("Scaling out"), for the reliability
test (CI size) and bench/scale.py (the issue's 10,000 alerts).

Topology: two `recoverlink serve --no-worker` replicas and two `recoverlink worker` processes on
one PostgreSQL, an Alertmanager HA pair whose members deliver to one replica each (so every
notification reaches both replicas at about the same time), and the fake ServiceNow as the ITSM of
every service.

The storm: `services` catalog services x `alertnames` alert names x `instances` instances, pushed
to both Alertmanagers (shuffled) as fast as they take them. A rule gives each (service, alertname)
its own correlation key; storm mode allows `max_new_recoveries` new recoveries per service per 5
minutes. What the correlation rules predict (README "Recoveries", domain/correlation.py), per
service, with its alert names arriving in any order:

- the first `max_new_recoveries` alert names each open a recovery (rule 5: a new failure);
- the next one finds `max_new_recoveries` recent openings and no storm parent: it opens the storm
  parent (`storm: true`), still a recovery of its own key, so its other instances join it (rule 1);
- every later alert name finds the parent open: all its episodes join the parent (rule 4) and are
  counted in its `storm_episodes`; no recovery of their own.

So, when `alertnames > max_new_recoveries`: `max_new_recoveries + 1` recoveries per service, one
storm parent per service with `storm_episodes = (alertnames - max_new_recoveries - 1) x instances`,
and one ServiceNow incident per recovery. Alertmanager's HA copies, its retries and the two
replicas change none of that: ingest is idempotent.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from tests.e2e.conftest import write_yaml
from tests.reliability.stack import (
    WEBHOOK_TOKEN,
    Recoverlink,
    api_alert,
    catalog,
    serving,
    utc_stamp,
    working,
    write_config,
)
from tests.support.alertmanager import AlertmanagerPair, running_alertmanager_pair, webhook_route
from tests.support.fake_servicenow import FakeServiceNow
from tests.support.processes import RunningProcess, wait_until

PUSH_BATCH = 250


@dataclass(frozen=True)
class StormPlan:
    services: int
    alertnames: int
    instances: int
    max_new_recoveries: int
    seed: int = 1

    @property
    def alerts(self) -> int:
        return self.services * self.alertnames * self.instances

    @property
    def recoveries_per_service(self) -> int:
        if self.alertnames <= self.max_new_recoveries:
            return self.alertnames
        return self.max_new_recoveries + 1

    @property
    def expected_recoveries(self) -> int:
        return self.services * self.recoveries_per_service

    @property
    def storm_episodes_per_parent(self) -> int:
        return max(0, self.alertnames - self.max_new_recoveries - 1) * self.instances

    def service_names(self) -> list[str]:
        return [f"storm-svc-{n:02d}" for n in range(self.services)]

    def api_alerts(self) -> list[dict[str, Any]]:
        """Every alert of the storm, shuffled (services interleave as in a real outage)."""
        starts = utc_stamp()
        alerts = [
            api_alert(
                {
                    "alertname": f"StormAlert{a}",
                    "service": service,
                    "severity": "critical",
                    "instance": f"{service}-{i}",
                },
                starts,
            )
            for service in self.service_names()
            for a in range(self.alertnames)
            for i in range(self.instances)
        ]
        random.Random(self.seed).shuffle(alerts)
        return alerts


@dataclass
class StormResult:
    plan: StormPlan
    drain_seconds: float  # first alert pushed -> every alert stored, every incident linked, outbox empty
    push_seconds: float
    recoveries: list[dict[str, Any]]
    incidents_per_recovery: Counter[int]
    incidents_total: int
    storm_episodes_metric: float
    webhook_deliveries: float  # what the Alertmanagers sent (both members, every attempt)
    stored_episodes: int
    placed_episodes: int  # episodes attached to a recovery (each to one: a unique key)
    parent_details: list[dict[str, Any]]  # GET /api/v1/recoveries/<id> of each storm parent
    notes: list[str] = field(default_factory=list)

    @property
    def parents(self) -> list[dict[str, Any]]:
        return [r for r in self.recoveries if r["storm"]]

    def per_service(self) -> Counter[str]:
        return Counter(str(r["service"]) for r in self.recoveries)

    def summary(self) -> str:
        return (
            f"storm of {self.plan.alerts:,} alerts across {self.plan.services} services: "
            f"{len(self.recoveries)} recoveries (predicted {self.plan.expected_recoveries}), "
            f"{len(self.parents)} storm parents, {self.incidents_total} incidents; pushed in "
            f"{self.push_seconds:.1f} s, drained in {self.drain_seconds:.1f} s "
            f"({self.webhook_deliveries:.0f} webhook deliveries)"
        )


@dataclass
class Topology:
    replicas: list[Recoverlink]
    workers: list[RunningProcess]
    alertmanagers: AlertmanagerPair
    servicenow: FakeServiceNow
    dsn: str

    def describe(self) -> str:
        parts = [r.process.describe() for r in self.replicas] + [w.describe() for w in self.workers]
        return "\n".join([*parts, self.alertmanagers.logs()])


def _configs(directory: Path, plan: StormPlan, servicenow: FakeServiceNow, servicenow_url: str) -> list[Path]:
    """One config per replica: the same but for their state directories (metrics, tokens)."""
    password = directory / "sn.password"
    password.write_text(servicenow.password + "\n", encoding="utf-8")
    teams = [f"storm-team-{n}" for n in range(5)]
    services = {
        name: {"owner": teams[n % len(teams)], "itsm": {"system": "servicenow"}}
        for n, name in enumerate(plan.service_names())
    }
    catalog_file = catalog(directory, services, teams)
    rules = write_yaml(
        directory / "rules" / "storm.yaml",
        {
            "rules": [
                {
                    "name": "one-recovery-per-alertname",
                    "match": 'service=~"storm-svc-.*"',
                    "correlation_key": "{{ labels.service }}/{{ labels.alertname }}",
                }
            ]
        },
    )
    settings: dict[str, Any] = {
        "catalog_file": catalog_file,
        "rules_files": [rules],
        "enrichment": {
            "storm": {"max_new_recoveries": plan.max_new_recoveries, "per": "5m", "scope": "service"}
        },
        "itsm": {
            "poll_every": "1h",
            "servicenow": {
                "url": servicenow_url,
                "auth": {"basic": {"username": servicenow.user, "password": {"file": str(password)}}},
                "timeout_seconds": 5,
            },
        },
        "worker": {"lease": "20s", "backoff_initial": "1s", "backoff_max": "2s", "max_attempts": 50},
        "database": {"pool_size": 8},
    }
    configs = []
    for name in ("replica-a", "replica-b"):
        (directory / name).mkdir(parents=True, exist_ok=True)
        configs.append(write_config(directory / name, **settings))
    return configs


@contextmanager
def storm_topology(directory: Path, plan: StormPlan, database_url: str) -> Iterator[Topology]:
    """Start everything (migrating the empty database first); stop it all at the end."""
    servicenow = FakeServiceNow()
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with ExitStack() as stack:
        servicenow_url = stack.enter_context(servicenow.serve())
        configs = _configs(directory, plan, servicenow, servicenow_url)
        replicas = [
            stack.enter_context(
                serving(f"replica-{n}", config, database_url=database_url, no_worker=True, migrate=n == 0)
            )
            for n, config in enumerate(configs)
        ]
        workers = [
            stack.enter_context(working(f"worker-{n}", config, database_url=database_url))
            for n, config in enumerate(configs)
        ]
        token_file = directory / "alertmanager.token"
        token_file.write_text(WEBHOOK_TOKEN + "\n", encoding="utf-8")
        routes = [
            webhook_route([f"{replica.url}/webhook/alertmanager"], token_file=token_file)
            for replica in replicas
        ]
        alertmanagers = stack.enter_context(running_alertmanager_pair(directory, routes))
        yield Topology(replicas, workers, alertmanagers, servicenow, dsn)


def run_storm(
    topology: Topology, plan: StormPlan, *, timeout: float, progress: Callable[[str], None] | None = None
) -> StormResult:
    """Push the storm, wait until it is drained, and collect what the store, the API, the metrics and
    the fake ServiceNow say."""
    alerts = plan.api_alerts()
    started = time.monotonic()
    for first in range(0, len(alerts), PUSH_BATCH):
        topology.alertmanagers.push(alerts[first : first + PUSH_BATCH], timeout=60)
    pushed = time.monotonic() - started
    if progress is not None:
        progress(f"pushed {len(alerts):,} alerts to both Alertmanagers in {pushed:.1f} s")
    last: dict[str, int] = {}

    def drained() -> bool:
        last.update(_progress(topology.dsn))
        return last["alerts"] == plan.alerts and last["unlinked"] == 0 and last["due_jobs"] == 0

    wait_until(
        drained,
        timeout=timeout,
        interval=0.25,
        what=f"the storm of {plan.alerts} alerts to drain",
        details=lambda: f"last seen: {last}\n{topology.describe()}",
    )
    drain = time.monotonic() - started
    replica = topology.replicas[0]
    recoveries = replica.recoveries()
    incidents = Counter(
        int(record["correlation_id"].removeprefix("recoverlink:rec-"))
        for record in list(topology.servicenow.records.values())
    )
    storm_metric = sum(
        r.metric("recoverlink_recovery_storm_episodes_total", team=f"storm-team-{n}")
        for r in topology.replicas
        for n in range(5)
    )
    return StormResult(
        plan=plan,
        drain_seconds=drain,
        push_seconds=pushed,
        recoveries=recoveries,
        incidents_per_recovery=incidents,
        incidents_total=len(topology.servicenow.records),
        storm_episodes_metric=storm_metric,
        webhook_deliveries=topology.alertmanagers.webhook_attempts(),
        stored_episodes=last["alerts"],
        placed_episodes=last["placed"],
        parent_details=[replica.recovery(int(r["id"])) for r in recoveries if r["storm"]],
    )


def _progress(dsn: str) -> dict[str, int]:
    queries = {
        "alerts": "SELECT count(*) FROM alerts",
        "placed": "SELECT count(*) FROM recovery_alerts",
        "recoveries": "SELECT count(*) FROM recoveries",
        "unlinked": "SELECT count(*) FROM recoveries WHERE incident_id IS NULL",
        "due_jobs": "SELECT count(*) FROM outbox_jobs WHERE state IN ('pending', 'running')",
        "dead_jobs": "SELECT count(*) FROM outbox_jobs WHERE state = 'dead'",
    }
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return {name: int(conn.execute(query).fetchone()[0]) for name, query in queries.items()}  # type: ignore[index]
