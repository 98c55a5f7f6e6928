"""Enrichment benchmark: one alert against generated catalogs and rule sets, and the reload of that config.

For each cell of services x rules it writes real recoverlink YAML into a temp dir (catalog files with
36 teams, some systems and resources, and N services, 1,000 per file; rule files of 100 rules; a config
naming them), then:

- loads it the way `POST /-/reload` does (`recoverlink.reload.load_from_disk`), `--loads` times (fewer
  once a cell's loads passed `--load-budget` seconds), and reports the median;
- enriches a few thousand generated alerts one call at a time (`time.perf_counter_ns` around
  `enricher.enrich(AlertFacts(...))`, after a warm-up) and reports p50, p99 and max in microseconds;
  then times `--repeat` more passes and reports the p99 over alerts of each alert's fastest call,
  which says what the slow alerts cost when another process is not stealing the CPU;
- for the largest cell, also `enricher.explain(...)` p50 (informational).

Generated services look like a real catalog: `svc-0421`, owners among the teams, tiers, journeys,
`depends_on`, ITSM routing, impact sources; 5 % place alerts by a `selector` (plain alternatives,
`{app=..., env="prod"}`, or a wildcard regex on `job`). Generated rules mix matchers as real rule sets
do: 1-3 matchers per rule, about half equality on service/alertname/team, a third regex (mostly with
wildcards, which the index cannot file, some plain alternatives such as "critical|major"), the rest
negative; a quarter of rules carry Jinja templates; 15 % say `continue`. Alerts name a catalog service
mostly, an unknown one or none sometimes. Everything is seeded, so runs repeat.

The table also shows what the index does: rule candidates per alert, rules and selectors the index
cannot file (tried on every alert), and rules matched per alert.

Target: p99 under 200 us per alert at 10,000 services and 2,000 rules; reload of that config under 2 s.

    .venv/bin/python bench/enrich.py [--services 100,1000,10000] [--rules 50,500,2000]
        [--alerts 3000] [--warmup 500] [--repeat 3] [--loads 3] [--load-budget 30] [--seed 7]
        [--profile] [--keep]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import math
import os
import platform
import pstats
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recoverlink.config.enrichment_loader import LoadedEnrichment
from recoverlink.domain.enrichment import AlertFacts, Enricher
from recoverlink.reload import load_from_disk


def words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


TARGET_SERVICES = 10_000
TARGET_RULES = 2_000
TARGET_P99_US = 200.0
TARGET_LOAD_S = 2.0

Alert = tuple[dict[str, str], dict[str, str]]  # labels, annotations

SERVICES_PER_FILE = 1_000
RULES_PER_FILE = 100

TEAM_WORDS = words(
    "payments identity checkout search catalog pricing billing ledger crm contact-center notifications "
    "messaging delivery logistics warehouse inventory orders returns fraud risk loyalty marketing ads "
    "recommendations media storage network platform data-eng ml-infra observability security mobile web "
    "partners support"
)
ALERTNAMES = words(
    "HighLatency HighErrorRate TargetDown InstanceDown PodCrashLooping PodNotReady "
    "DeploymentReplicasMismatch ContainerOOMKilled CPUThrottlingHigh MemoryPressure DiskFull "
    "DiskWillFillIn4Hours DiskIOSaturation NodeDown NodeNotReady NodeFilesystemAlmostFull NodeHighLoad "
    "NodeClockSkew PostgresReplicationLag PostgresTooManyConnections PostgresDown RedisDown "
    "RedisMemoryHigh KafkaConsumerLag KafkaUnderReplicatedPartitions QueueBacklog CertificateExpiringSoon "
    "HTTP5xxRate HTTP4xxSpike SLOBurnRateFast SLOBurnRateSlow JobFailed CronJobMissed ProbeFailed "
    "LoginFailures PaymentDeclinesHigh CacheHitRateLow ThreadPoolExhausted GCPauseLong Watchdog"
)
ALERT_PREFIXES = ("Disk", "Node", "Postgres", "Redis", "Kafka", "HTTP", "SLO", "Pod", "Job", "Cron")
SEVERITIES = ("critical", "major", "warning", "minor", "info")
SEVERITY_WEIGHTS = (10, 10, 45, 20, 15)
ENVS = ("prod", "staging", "dev")
ENV_WEIGHTS = (70, 20, 10)
CLUSTERS = ("prod-eu-1", "prod-eu-2", "prod-us-1", "staging-eu-1", "test-1", "test-2")
JOURNEYS = words("checkout login search browse support billing onboarding delivery returns payouts")
SEGMENTS = words("retail business enterprise partners internal")
IMPACT_SOURCES = words("checkout-failures contact-center-queue open-cx-cases login-failures billing-failures")
TIERS = ("tier-1", "tier-2", "tier-3")
TIER_WEIGHTS = (15, 35, 50)

TEMPLATES = (
    "{{ service.name }} {{ labels.instance }}",
    "{{ annotations.summary | default(labels.alertname) }}",
    "{{ labels.alertname }} on {{ labels.instance | default('all instances') }} ({{ labels.env }})",
    "{{ team.display_name or team.name }}: {{ labels.alertname }}",
    "{{ service.name or 'unknown service' }} in {{ labels.cluster | default('?') }}",
    "{% if labels.severity == 'critical' %}Customers affected{% else %}Degraded{% endif %}",
    "{{ service.runbook_url }}#{{ labels.alertname | lower }}",
)
CORRELATION_TEMPLATES = (
    "{{ labels.alertname }}/{{ labels.cluster | default('none') }}",
    "service/{{ service.name or labels.instance }}",
)


# --------------------------------------------------------------------------- generation

PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9 ._-]*[A-Za-z0-9.]")


def yq(text: str) -> str:
    """A YAML scalar for `text`: single-quoted when possible (as people write matchers), else JSON."""
    if PLAIN.fullmatch(text):
        return text
    if "'" not in text and "\n" not in text:
        return f"'{text}'"
    return json.dumps(text)


@dataclass
class Service:
    name: str
    owner: str
    tier: str
    selector: list[str] | None = None
    alias: str | None = None  # a service label value the selector accepts besides the name
    app_label: bool = False  # the selector reads {app="<name>", env="prod"}


@dataclass
class World:
    """What the generated catalog and rules contain, for generating alerts against them."""

    teams: list[str]
    services: list[Service]
    resources: list[str]
    systems: list[str]
    name_width: int
    matcher_mix: Counter[str] = field(default_factory=Counter)
    rules_with_templates: int = 0
    rules_with_continue: int = 0


def service_name(i: int, width: int) -> str:
    return f"svc-{i:0{width}d}"


def make_world(rng: random.Random, n_services: int) -> World:
    width = max(4, len(str(n_services - 1)))
    teams = [TEAM_WORDS[i] if i < len(TEAM_WORDS) else f"team-{i:02d}" for i in range(36)]
    systems = [f"sys-{word}" for word in rng.sample(TEAM_WORDS, max(3, min(30, n_services // 300)))]
    resources = [f"db-{i:03d}" for i in range(max(2, n_services // 50))]
    services = []
    for i in range(n_services):
        svc = Service(service_name(i, width), rng.choice(teams), rng.choices(TIERS, TIER_WEIGHTS)[0])
        if rng.random() < 0.05:  # 5 % place alerts by a selector instead of the service label
            kind = rng.random()
            if kind < 0.6:
                svc.alias = f"{svc.name}-canary"
                svc.selector = [f'service=~"{svc.name}|{svc.alias}"']
            elif kind < 0.85:
                svc.app_label = True
                svc.selector = [f'app="{svc.name}"', 'env="prod"']
            else:
                svc.selector = [f'job=~"{svc.name}-.*"']
        services.append(svc)
    return World(teams, services, resources, systems, width)


def write_catalog(rng: random.Random, world: World, directory: Path) -> None:
    directory.mkdir(parents=True)
    lines = ["# generated by bench/enrich.py", "teams:"]
    for team in world.teams:
        lines += [
            f"  - name: {team}",
            f"    display_name: {team.replace('-', ' ').title()}",
            f'    contacts: {{email: {team}@example.com, chat: "#{team}-oncall", pager: {team}-primary}}',
        ]
    lines.append("services:")
    for system in world.systems:
        lines += [f"  - name: {system}", "    kind: system", f"    owner: {rng.choice(world.teams)}"]
    for resource in world.resources:
        lines += [
            f"  - name: {resource}",
            "    kind: resource",
            f"    owner: {rng.choice(world.teams)}",
            "    tier: tier-1",
            "    description: PostgreSQL cluster",
        ]
    (directory / "00-teams.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for start in range(0, len(world.services), SERVICES_PER_FILE):
        chunk = world.services[start : start + SERVICES_PER_FILE]
        lines = ["# generated by bench/enrich.py", "services:"]
        for index, svc in enumerate(chunk, start):
            lines += service_lines(rng, world, svc, index)
        path = directory / f"services-{start // SERVICES_PER_FILE:03d}.yaml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def service_lines(rng: random.Random, world: World, svc: Service, index: int) -> list[str]:
    lines = [
        f"  - name: {svc.name}",
        f"    owner: {svc.owner}",
        f"    tier: {svc.tier}",
        f"    lifecycle: {rng.choices(('production', 'experimental', 'deprecated'), (90, 7, 3))[0]}",
    ]
    if rng.random() < 0.7:
        lines.append(f"    system: {rng.choice(world.systems)}")
    depends: list[str] = []
    if index > 0 and rng.random() < 0.5:
        earlier = rng.sample(range(index), min(index, rng.randint(1, 3)))
        depends = [world.services[j].name for j in earlier]
    if rng.random() < 0.3:
        depends.append(f"resource:{rng.choice(world.resources)}")
    if depends:
        lines.append(f"    depends_on: [{', '.join(depends)}]")
    if rng.random() < 0.8:
        lines.append(f"    journeys: [{', '.join(rng.sample(JOURNEYS, rng.randint(1, 2)))}]")
        lines.append(f"    segments: [{', '.join(rng.sample(SEGMENTS, rng.randint(1, 2)))}]")
    lines.append(f"    runbook_url: https://runbooks.example.com/{svc.name}")
    if rng.random() < 0.5:
        lines.append(f"    dashboard_url: https://grafana.example.com/d/{svc.name}")
    itsm = rng.random()
    if itsm < 0.6:
        lines.append(f"    itsm: {{system: servicenow, assignment_group: {svc.owner.title()} Ops}}")
    elif itsm < 0.85:
        lines.append(f"    itsm: {{system: jira, project: {svc.owner[:4].upper()}}}")
    else:
        lines.append(f"    itsm: {{system: rt, queue: {svc.owner.title()}}}")
    if rng.random() < 0.7:
        lines.append(f"    impact_sources: [{', '.join(rng.sample(IMPACT_SOURCES, rng.randint(1, 2)))}]")
    if rng.random() < 0.3:
        lines.append(f"    verified_by: {rng.choice(world.teams)}")
    if svc.selector is not None:
        lines.append(f"    selector: [{', '.join(yq(m) for m in svc.selector)}]")
    lines.append(f"    description: Generated service {index} of team {svc.owner}")
    return lines


def equality_matcher(rng: random.Random, world: World) -> str:
    label = rng.choices(("service", "alertname", "team"), (45, 35, 20))[0]
    if label == "service":
        return f'service="{rng.choice(world.services).name}"'
    if label == "alertname":
        return f'alertname="{rng.choice(ALERTNAMES)}"'
    return f'team="{rng.choice(world.teams)}"'


def _alternatives(rng: random.Random, world: World) -> str:
    """Plain alternatives, which the index files under each value."""
    kind = rng.randrange(3)
    if kind == 0:
        return (
            f'service=~"{"|".join(s.name for s in rng.sample(world.services, min(3, len(world.services))))}"'
        )
    if kind == 1:
        return f'alertname=~"{"|".join(rng.sample(ALERTNAMES, rng.randint(2, 4)))}"'
    return f'severity=~"{"|".join(rng.sample(SEVERITIES[:3], 2))}"'


def _wildcard(rng: random.Random, world: World) -> str:
    """A regex with wildcards, which no index can file: it is evaluated for every alert."""
    kind = rng.randrange(4)
    if kind == 0:  # svc-04.*: a block of services, e.g. one team's range
        return f'service=~"{rng.choice(world.services).name[: 4 + world.name_width - 2]}.*"'
    if kind == 1:
        prefixes = rng.sample(ALERT_PREFIXES, rng.randint(1, 3))
        return f'alertname=~"{"|".join(p + ".*" for p in prefixes)}"'
    if kind == 2:
        return f'instance=~"10\\.{rng.randrange(4)}\\.{rng.randrange(8)}\\..*"'
    return f'cluster=~"{rng.choice(("prod", "staging"))}-.*"'


def regex_matcher(rng: random.Random, world: World) -> tuple[str, bool]:
    """A regex matcher and whether it is plain alternatives (30 %)."""
    if rng.random() < 0.3:
        return _alternatives(rng, world), True
    return _wildcard(rng, world), False


NEGATIVE_MATCHERS = (
    'env!="dev"',
    'severity!~"info|none"',
    'team!=""',
    'cluster!~"test-.*"',
    'alertname!="Watchdog"',
    'service!=""',
    'env!~"dev|staging"',
)


def rule_matchers(rng: random.Random, world: World) -> list[str]:
    """1-3 matchers: the first one positive, so no rule is a catch-all; overall about 1/2 equality,
    1/3 regex, 1/6 negative."""
    count = rng.choices((1, 2, 3), (35, 40, 25))[0]
    matchers: list[str] = []
    for position in range(count):
        weights = (60, 40, 0) if position == 0 else (40, 27, 33)
        kind = rng.choices(("equality", "regex", "negative"), weights)[0]
        if kind == "equality":
            text = equality_matcher(rng, world)
        elif kind == "regex":
            text, literal = regex_matcher(rng, world)
            kind = "regex (alternatives)" if literal else "regex (wildcard)"
        else:
            text = rng.choice(NEGATIVE_MATCHERS)
        label = text.split("=")[0].split("!")[0]
        if any(m.startswith(label) for m in matchers):  # one matcher per label, as people write them
            continue
        world.matcher_mix[kind] += 1
        matchers.append(text)
    return matchers


def rule_lines(rng: random.Random, world: World, index: int) -> list[str]:
    matchers = rule_matchers(rng, world)
    lines = [f"  - name: r{index:04d}-{rng.choice(ALERTNAMES).lower()}"]
    lines.append(f"    match: [{', '.join(yq(m) for m in matchers)}]")
    fields: dict[str, str] = {}
    if rng.random() < 0.25:
        world.rules_with_templates += 1
        keys = rng.sample(("summary", "customer_message", "agent_workaround", "details"), rng.randint(1, 2))
        fields = {key: rng.choice(TEMPLATES) for key in keys}
        if rng.random() < 0.3:
            lines.append(f"    correlation_key: {yq(rng.choice(CORRELATION_TEMPLATES))}")
    elif rng.random() < 0.5:
        fields["customer_message"] = "Some customers may see errors. We are on it."
    labels = {"journey": rng.choice(JOURNEYS)} if rng.random() < 0.3 else {}
    optional = (
        (0.15, lambda: [f"    owner: {rng.choice(world.teams)}"]),
        (0.10, lambda: [f"    impact: {rng.choice(('high', 'medium', 'low'))}"]),
        (0.10, lambda: [f"    urgency: {rng.choice(('high', 'medium', 'low'))}"]),
        (0.05, lambda: [f"    priority: P{rng.randint(1, 4)}"]),
        (0.03, lambda: ["    resolution: monitor", "    reopen_window: 2h"]),
    )
    for chance, make in optional:
        if rng.random() < chance:
            lines += make()
    if fields or labels:
        lines.append("    set:")
        for key, values in (("fields", fields), ("labels", labels)):
            if values:
                lines.append(f"      {key}:")
                lines += [f"        {name}: {yq(value)}" for name, value in values.items()]
    if rng.random() < 0.15:
        world.rules_with_continue += 1
        lines.append("    continue: true")
    return lines


def write_rules(rng: random.Random, world: World, directory: Path, n_rules: int) -> None:
    directory.mkdir(parents=True)
    for start in range(0, n_rules, RULES_PER_FILE):
        lines = ["# generated by bench/enrich.py", "rules:"]
        for index in range(start, min(n_rules, start + RULES_PER_FILE)):
            lines += rule_lines(rng, world, index)
        path = directory / f"{start // RULES_PER_FILE:03d}-generated.yaml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


CONFIG = """\
# generated by bench/enrich.py
webhook:
  auth:
    bearer: {env: RECOVERLINK_BENCH_TOKEN}
catalog:
  files: [catalog/*.yaml]
  fallback_owner: platform
rules:
  files: [rules/*.yaml]
enrichment:
  resolution: close
  reopen_window: 1h
  stale_after: 8h
  impact_by_tier: {tier-1: 1, tier-2: 2, tier-3: 3}
  urgency_by_severity: {critical: 1, major: 1, warning: 2, minor: 3, info: 3}
  storm: {max_new_recoveries: 10, per: 5m, scope: team}
"""


def write_config(rng: random.Random, directory: Path, n_services: int, n_rules: int) -> tuple[Path, World]:
    world = make_world(rng, n_services)
    write_catalog(rng, world, directory / "catalog")
    write_rules(rng, world, directory / "rules", n_rules)
    config_path = directory / "recoverlink.yaml"
    config_path.write_text(CONFIG, encoding="utf-8")
    return config_path, world


def make_alerts(rng: random.Random, world: World, count: int) -> list[Alert]:
    """Labels and annotations as Alertmanager sends them; most name a catalog service, some do not."""
    alertname_weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(ALERTNAMES))]
    alerts = []
    for _ in range(count):
        alertname = rng.choices(ALERTNAMES, alertname_weights)[0]
        env = rng.choices(ENVS, ENV_WEIGHTS)[0]
        labels = {
            "alertname": alertname,
            "severity": rng.choices(SEVERITIES, SEVERITY_WEIGHTS)[0],
            "env": env,
            "cluster": rng.choice([c for c in CLUSTERS if c.startswith(env)] or list(CLUSTERS[4:])),
            "instance": f"10.{rng.randrange(4)}.{rng.randrange(8)}.{rng.randrange(256)}:9100",
            "prometheus": "monitoring/k8s",
        }
        svc = rng.choice(world.services)
        placement = rng.random()
        if alertname.startswith(("Node", "Disk")) and placement < 0.5:
            pass  # an infrastructure alert without a service label
        elif placement < 0.05:
            labels["service"] = f"legacy-{rng.randrange(100):02d}"  # not in the catalog
        else:
            labels["service"] = svc.alias if svc.alias and rng.random() < 0.5 else svc.name
            labels["job"] = f"{svc.name}-{rng.choice(('http', 'grpc', 'worker'))}"
            if svc.app_label:
                labels["app"] = svc.name
            if rng.random() < 0.8:
                labels["team"] = svc.owner
        if "team" not in labels and rng.random() < 0.3:
            labels["team"] = rng.choice(world.teams)
        notes = {
            "summary": f"{alertname} on {labels['instance']}",
            "description": f"{alertname} has been firing for 5 minutes in {labels['cluster']}.",
        }
        if rng.random() < 0.5:
            notes["runbook_url"] = f"https://runbooks.example.com/alerts/{alertname}"
        alerts.append((labels, notes))
    return alerts


# --------------------------------------------------------------------------- measurement


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Row:
    services: int
    rules: int
    load_s: float
    loads: list[float]
    p50_us: float
    p99_us: float
    max_us: float
    best_p99_us: float  # p99 over alerts of each alert's fastest of `--repeat` further calls
    mean_candidates: float
    unindexed_rules: int
    unindexed_selectors: int
    mean_matched: float
    explain_p50_us: float | None = None
    mix: str = ""


def time_loads(config_path: Path, count: int, budget_s: float) -> tuple[list[float], LoadedEnrichment]:
    """Load `count` times the way a reload does, fewer once the loads of this cell exceed `budget_s`."""
    times: list[float] = []
    loaded = None
    while len(times) < count and (not times or sum(times) < budget_s):
        gc.collect()
        start = time.perf_counter()
        loaded = load_from_disk(config_path)
        times.append(time.perf_counter() - start)
    assert loaded is not None
    return times, loaded


def time_enrich(enricher: Enricher, alerts: list[Alert], warmup: int, clock: Any) -> list[int]:
    """One timed `enrich(AlertFacts(...))` per alert, after `warmup` untimed calls."""
    enrich = enricher.enrich
    for i in range(warmup):
        labels, notes = alerts[i % len(alerts)]
        enrich(AlertFacts(labels, notes, f"{i:016x}"))
    gc.collect()
    samples = []
    for i, (labels, notes) in enumerate(alerts):
        fingerprint = f"{i:016x}"
        start = clock()
        enrich(AlertFacts(labels, notes, fingerprint))
        samples.append(clock() - start)
    return samples


def time_explain(enricher: Enricher, alerts: list[Alert]) -> list[int]:
    clock = time.perf_counter_ns
    samples = []
    for i, (labels, notes) in enumerate(alerts):
        facts = AlertFacts(labels, notes, f"{i:016x}")
        start = clock()
        enricher.explain(facts)
        samples.append(clock() - start)
    return samples


def index_stats(enricher: Enricher, alerts: list[Alert]) -> tuple[float, float]:
    """Mean rule candidates the index hands to the matcher loop, and mean rules matched, per alert."""
    candidates = sum(len(enricher._rule_index.candidates(labels)) for labels, _ in alerts)
    matched = sum(len(enricher.enrich(AlertFacts(*alert)).matched_rules) for alert in alerts)
    return candidates / len(alerts), matched / len(alerts)


def describe_mix(world: World, n_rules: int) -> str:
    total = sum(world.matcher_mix.values())
    mix = ", ".join(f"{kind} {100 * n / total:.0f} %" for kind, n in sorted(world.matcher_mix.items()))
    return (
        f"{total / n_rules:.1f} matchers/rule: {mix}; rules with templates "
        f"{100 * world.rules_with_templates / n_rules:.0f} %, with continue "
        f"{100 * world.rules_with_continue / n_rules:.0f} %"
    )


def run_cell(args: argparse.Namespace, root: Path, n_services: int, n_rules: int, largest: bool) -> Row:
    rng = random.Random(f"{args.seed}-{n_services}-{n_rules}")
    directory = root / f"s{n_services}-r{n_rules}"
    config_path, world = write_config(rng, directory, n_services, n_rules)
    loads, loaded = time_loads(config_path, args.loads, args.load_budget)
    enricher = loaded.enricher
    assert len(enricher.ruleset.rules) == n_rules, "every generated rule loads"
    alerts = make_alerts(rng, world, args.alerts)
    samples = sorted(time_enrich(enricher, alerts, args.warmup, time.perf_counter_ns))
    passes = [time_enrich(enricher, alerts, 0, time.perf_counter_ns) for _ in range(args.repeat)]
    best = sorted(min(times) for times in zip(*passes, strict=True)) if passes else samples
    mean_candidates, mean_matched = index_stats(enricher, alerts)
    row = Row(
        services=n_services,
        rules=n_rules,
        load_s=statistics.median(loads),
        loads=loads,
        p50_us=percentile(samples, 0.50) / 1000,
        p99_us=percentile(samples, 0.99) / 1000,
        max_us=samples[-1] / 1000,
        best_p99_us=percentile(best, 0.99) / 1000,
        mean_candidates=mean_candidates,
        unindexed_rules=len(enricher._rule_index.always),
        unindexed_selectors=len(enricher._selector_index.always),
        mean_matched=mean_matched,
        mix=describe_mix(world, n_rules),
    )
    if largest:
        explained = sorted(time_explain(enricher, alerts[: args.explain_alerts]))
        row.explain_p50_us = percentile(explained, 0.5) / 1000
    if largest and args.profile:
        profile(enricher, alerts, config_path)
    if not args.keep:
        shutil.rmtree(directory)
    return row


def profile(enricher: Enricher, alerts: list[Alert], config_path: Path) -> None:
    facts = [AlertFacts(*alert) for alert in alerts]
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(3):
        for fact in facts:
            enricher.enrich(fact)
    profiler.disable()
    print(f"\n--- cProfile: enrich x {3 * len(facts)} alerts (largest cell), by own time", flush=True)
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(20)
    profiler = cProfile.Profile()
    profiler.enable()
    load_from_disk(config_path)
    profiler.disable()
    print("--- cProfile: one load_from_disk (largest cell), by cumulative time", flush=True)
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(40)


# --------------------------------------------------------------------------- report


def print_table(rows: list[Row]) -> None:
    header = (
        "services",
        "rules",
        "load s",
        "enrich p50 us",
        "p99 us",
        "max us",
        "p99 best-of us",
        "cand/alert",
        "unindexed rules",
        "unindexed sel",
        "matched/alert",
        "explain p50 us",
    )
    body = [
        (
            f"{r.services:,}",
            f"{r.rules:,}",
            f"{r.load_s:.2f}",
            f"{r.p50_us:.1f}",
            f"{r.p99_us:.1f}",
            f"{r.max_us:.0f}",
            f"{r.best_p99_us:.1f}",
            f"{r.mean_candidates:.1f}",
            f"{r.unindexed_rules}",
            f"{r.unindexed_selectors}",
            f"{r.mean_matched:.2f}",
            f"{r.explain_p50_us:.0f}" if r.explain_p50_us is not None else "-",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in body)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in body:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))


def print_verdict(rows: list[Row]) -> bool:
    cell = next((r for r in rows if r.services == TARGET_SERVICES and r.rules == TARGET_RULES), None)
    if cell is None:
        print(f"\ntarget ({TARGET_SERVICES:,} services x {TARGET_RULES:,} rules): not measured in this run")
        return True
    p99_ok = cell.p99_us < TARGET_P99_US
    load_ok = cell.load_s < TARGET_LOAD_S
    print(f"\ntarget at {TARGET_SERVICES:,} services x {TARGET_RULES:,} rules:")
    verdict = "yes" if p99_ok else "NO"
    print(f"  enrich p99 {cell.p99_us:.1f} us < {TARGET_P99_US:.0f} us: {verdict}", end="")
    print(f" (p99 of each alert's fastest of the repeated calls: {cell.best_p99_us:.1f} us)")
    loads = ", ".join(f"{t:.2f}" for t in cell.loads)
    verdict = "yes" if load_ok else "NO"
    print(f"  reload {cell.load_s:.2f} s (median of {loads}) < {TARGET_LOAD_S:.0f} s: {verdict}")
    print(f"  target holds: {'yes' if p99_ok and load_ok else 'NO'}")
    return p99_ok and load_ok


def _sizes(text: str) -> list[int]:
    values = [int(part.replace("_", "").replace(",", "")) for part in text.split(",") if part.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("give positive integers separated by commas")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--services", type=_sizes, default=[100, 1_000, 10_000], help="catalog sizes")
    parser.add_argument("--rules", type=_sizes, default=[50, 500, 2_000], help="rule counts")
    parser.add_argument("--alerts", type=int, default=3_000, help="measured alerts per cell (default 3000)")
    parser.add_argument("--warmup", type=int, default=500, help="warm-up enrich calls per cell (default 500)")
    parser.add_argument("--loads", type=int, default=3, help="config loads per cell; the median is shown")
    parser.add_argument(
        "--explain-alerts", type=int, default=300, help="alerts for explain p50 (largest cell)"
    )
    parser.add_argument(
        "--load-budget",
        type=float,
        default=30.0,
        help="no further load of a cell once its loads took this many seconds (default 30)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="further timed passes; 'p99 best-of' is the p99 of each alert's fastest call (default 3)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile enrich and load in the largest cell")
    parser.add_argument("--keep", action="store_true", help="keep the generated YAML in the temp dir")
    args = parser.parse_args(argv)
    if args.alerts < 100 or args.loads < 1 or args.explain_alerts < 1 or min(args.warmup, args.repeat) < 0:
        parser.error("--alerts must be >= 100, --loads and --explain-alerts >= 1, --warmup and --repeat >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"python {platform.python_version()} on {platform.machine()}, seed {args.seed}, {args.alerts} alerts"
    )
    print(f"load average before: {', '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} CPUs)")
    root = Path(tempfile.mkdtemp(prefix="rl-bench-enrich-"))
    rows: list[Row] = []
    try:
        # Imports and first-use caches (pydantic, jinja2, ruamel) are not part of a reload.
        warm = random.Random(args.seed)
        load_from_disk(write_config(warm, root / "warm-up", 20, 10)[0])
        cells = [(s, r) for s in args.services for r in args.rules]
        largest = max(cells, key=lambda cell: (cell[0] * cell[1], cell))
        for n_services, n_rules in cells:
            started = time.perf_counter()
            row = run_cell(args, root, n_services, n_rules, (n_services, n_rules) == largest)
            rows.append(row)
            print(
                f"  {n_services:>6,} services x {n_rules:>5,} rules: load {row.load_s:.2f} s, "
                f"p50 {row.p50_us:.1f} us, p99 {row.p99_us:.1f} us ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        print(f"load average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
        print(f"\nmatcher mix ({rows[-1].services:,} x {rows[-1].rules:,}): {rows[-1].mix}\n")
        print_table(rows)
        ok = print_verdict(rows)
    finally:
        if args.keep:
            print(f"\ngenerated files kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
