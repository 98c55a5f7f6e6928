"""The shipped Prometheus rules and scrape config: valid for promtool, unit-tested, and naming only
metrics recoverlink exports (DESIGN.md's table is a contract)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from recoverlink.telemetry import Metrics

PROMETHEUS = Path(__file__).parents[2] / "deploy" / "prometheus"
RULES = PROMETHEUS / "recoverlink.rules.yml"
# Read from the store at scrape time (store_gauges.py), not registered on the registry.
STORE_GAUGES = {
    "recoverlink_recoveries",
    "recoverlink_outbox_jobs",
    "recoverlink_outbox_oldest_due_job_age_seconds",
}
NAME = re.compile(r"\b(recoverlink_[a-z_]+|[a-z_]+:recoverlink_[a-z_]+:[a-z0-9_]+)\b")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(binary).exists():
        pytest.fail("promtool is missing: apt-get install prometheus (`make test` does it)", pytrace=False)
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)


def exported_names() -> set[str]:
    """Every series name recoverlink's registry and store gauges export (with _bucket, _sum, ...)."""
    names = set(STORE_GAUGES)
    for metric in Metrics(CollectorRegistry()).registry.collect():
        names.add(metric.name)
        names.update(sample.name for sample in metric.samples)
        if metric.type == "counter":
            names.add(metric.name + "_total")
        if metric.type == "histogram":
            names.update(f"{metric.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return names


def recorded_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def test_the_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_rules_unit_tests_pass() -> None:
    done = promtool("test", "rules", str(PROMETHEUS / "recoverlink.rules_test.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_example_scrape_config_is_valid() -> None:
    done = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_summary_a_description_and_a_runbook_that_exists() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    runbooks = (PROMETHEUS / "runbooks.md").read_text()
    alerts = [rule for group in groups for rule in group["rules"] if "alert" in rule]
    assert {a["alert"] for a in alerts} >= {
        "RecoverlinkDown",
        "RecoverlinkOutboxDeadJobs",
        "RecoverlinkOutboxBehind",
        "RecoverlinkConfigReloadFailed",
        "RecoverlinkItsmErrors",
        "RecoverlinkEnrichmentMissesHigh",
    }
    for alert in alerts:
        annotations = alert["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(annotations), alert["alert"]
        anchor = annotations["runbook_url"].split("#")[1]
        assert f"## {alert['alert']}" in runbooks and anchor == alert["alert"].lower()


def test_the_rules_name_only_metrics_recoverlink_exports() -> None:
    known = exported_names() | recorded_names()
    groups = yaml.safe_load(RULES.read_text())["groups"]
    used = {name for group in groups for rule in group["rules"] for name in NAME.findall(rule["expr"])}
    assert used - known == set()
