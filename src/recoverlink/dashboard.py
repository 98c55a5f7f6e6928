"""The Grafana dashboard of recoverlink's metrics, built in code from the metric names it shows.

`recoverlink dashboard` prints it; `deploy/grafana/dashboards/recoverlink.json` is its output (a
test keeps the two equal, and another evaluates every panel's query against a real Prometheus).
Panels: the overview (open recoveries by state and team, openings and closings), one row per
recovery-latency milestone (a heatmap of the histogram and its p50/p90/p99 from the recording
rules), the shares of recoveries, repeats, and the health of the ITSM calls and the outbox.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
UID = "recoverlink-recoveries"
TEAM_PRIORITY = 'team=~"$team", priority=~"$priority"'
WITH_SERVICE = f'{TEAM_PRIORITY}, service=~"$service"'
# The gauges read from the store are equal on every replica: max across them, then sum.
OPEN = f"max by (state, team, priority, service) (recoverlink_recoveries{{{WITH_SERVICE}}})"

LATENCIES = (
    ("Time to ownership", "recoverlink_recovery_time_to_ownership_seconds", "opened -> owner known"),
    ("Time to customer impact", "recoverlink_recovery_time_to_impact_seconds", "opened -> impact identified"),
    ("Time to incident", "recoverlink_recovery_time_to_incident_seconds", "opened -> linked incident exists"),
    (
        "Fix to CX update",
        "recoverlink_recovery_fix_to_cx_update_seconds",
        "fix deployed -> customers updated",
    ),
    (
        "Fix to verification",
        "recoverlink_recovery_fix_to_verification_seconds",
        "fix deployed -> impact verified",
    ),
    ("Resolution time", "recoverlink_recovery_resolution_seconds", "opened -> closed"),
)
SHARES = (
    ("Linked to customers", "linked_customers"),
    ("Full context", "full_context"),
    ("Single owner", "single_owner"),
    ("Manual lookup", "manual_lookup"),
)


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False
    heatmap: bool = False

    def target(self, ref: str) -> dict[str, Any]:
        target: dict[str, Any] = {"refId": ref, "datasource": DATASOURCE, "expr": self.expr}
        if self.legend:
            target["legendFormat"] = self.legend
        if self.instant:
            target["instant"] = True
        if self.heatmap:
            target["format"] = "heatmap"
        return target


@dataclass(frozen=True)
class Panel:
    kind: str  # timeseries | stat | heatmap | table | row
    title: str
    queries: tuple[Query, ...] = ()
    unit: str = ""
    width: int = 12
    height: int = 8
    description: str = ""


def _overview() -> list[Panel]:
    states = f"sum by (state) ({OPEN})"
    return [
        Panel("row", "Overview"),
        Panel("stat", "Open recoveries", (Query(f"sum({OPEN})", instant=True),), width=4),
        Panel("timeseries", "Open recoveries by state", (Query(states, "{{state}}"),), width=10),
        Panel(
            "table",
            "Open recoveries by team and state",
            (Query(f"sum by (team, state) ({OPEN})", instant=True),),
            width=10,
        ),
        Panel(
            "timeseries",
            "Recoveries opened, reopened and closed per day",
            tuple(
                Query(f"sum(increase(recoverlink_recoveries_{what}_total{{{WITH_SERVICE}}}[1d]))", what)
                for what in ("opened", "reopened", "closed")
            ),
            width=24,
        ),
    ]


def _latency(title: str, metric: str, description: str) -> list[Panel]:
    buckets = f"sum by (le) (increase({metric}_bucket{{{TEAM_PRIORITY}}}[$__rate_interval]))"
    quantiles = tuple(
        Query(f"max(team_priority:{metric}:{q}_7d{{{TEAM_PRIORITY}}})", f"{q} (7 days)")
        for q in ("p50", "p90", "p99")
    )
    return [
        Panel(
            "heatmap",
            f"{title}: distribution",
            (Query(buckets, "{{le}}", heatmap=True),),
            "s",
            description=description,
        ),
        Panel("timeseries", f"{title}: p50, p90, p99", quantiles, "s", description=description),
    ]


def _shares() -> list[Panel]:
    panels = [Panel("row", "Shares of finished recoveries (7 and 30 days)")]
    for title, name in SHARES:
        queries = tuple(
            Query(
                f'avg(team:recoverlink_recoveries_{name}:ratio_{window}{{team=~"$team"}})',
                window,
                instant=True,
            )
            for window in ("7d", "30d")
        )
        panels.append(Panel("stat", title, queries, "percentunit", width=5))
    audited = tuple(
        Query(f"avg(action:recoverlink_actions_audited:ratio_{w})", w, instant=True) for w in ("7d", "30d")
    )
    panels.append(Panel("stat", "Actions with an audit trail", audited, "percentunit", width=4))
    return panels


def _repeats_and_bounces() -> list[Panel]:
    repeats = tuple(
        Query(
            f'sum by (window) (increase(recoverlink_recovery_repeat_{what}_total{{team=~"$team"}}[7d]))',
            f"{what} {{{{window}}}}",
        )
        for what in ("alerts", "contacts")
    )
    bounces = Query(
        'sum by (team) (increase(recoverlink_recovery_escalation_bounces_total{team=~"$team"}[7d]))',
        "{{team}}",
    )
    return [
        Panel("row", "After the fix"),
        Panel("timeseries", "Repeat alerts and contacts after close (7 days)", repeats),
        Panel("timeseries", "Escalation bounces (7 days)", (bounces,)),
    ]


def _health() -> list[Panel]:
    calls = Query(
        "sum by (itsm, outcome) (rate(recoverlink_itsm_requests_total[$__rate_interval]))",
        "{{itsm}} {{outcome}}",
    )
    rate = "rate(recoverlink_itsm_request_duration_seconds_bucket[$__rate_interval])"
    latency = Query(f"histogram_quantile(0.99, sum by (le, itsm) ({rate}))", "{{itsm}} p99")
    backlog = Query("max by (kind, state) (recoverlink_outbox_jobs)", "{{kind}} {{state}}")
    behind = Query("max by (kind) (recoverlink_outbox_oldest_due_job_age_seconds)", "{{kind}}")
    webhooks = Query(
        "sum by (outcome) (rate(recoverlink_alertmanager_notifications_total[$__rate_interval]))",
        "{{outcome}}",
    )
    return [
        Panel("row", "ITSM, outbox and ingest health"),
        Panel("timeseries", "ITSM calls by outcome", (calls,), "reqps"),
        Panel("timeseries", "ITSM call latency (p99)", (latency,), "s"),
        Panel("timeseries", "Outbox jobs by state", (backlog,)),
        Panel("timeseries", "Oldest due job's wait", (behind,), "s"),
        Panel("timeseries", "Alertmanager deliveries by outcome", (webhooks,), "reqps", width=24),
    ]


def panels() -> list[Panel]:
    rows = [*_overview(), Panel("row", "Recovery latency by milestone")]
    for title, metric, description in LATENCIES:
        rows += _latency(title, metric, description)
    return rows + _shares() + _repeats_and_bounces() + _health()


def _laid_out(items: list[Panel]) -> Iterator[tuple[Panel, dict[str, int]]]:
    """Left to right, wrapping at 24 columns; a row header takes a line of its own."""
    x = y = line_height = 0
    for panel in items:
        width, height = (24, 1) if panel.kind == "row" else (panel.width, panel.height)
        if x + width > 24 or panel.kind == "row":
            x, y = 0, y + line_height
            line_height = 0
        yield panel, {"x": x, "y": y, "w": width, "h": height}
        x += width
        line_height = max(line_height, height)
        if panel.kind == "row":
            x, y, line_height = 0, y + height, 0


def _panel_json(number: int, panel: Panel, grid: dict[str, int]) -> dict[str, Any]:
    if panel.kind == "row":
        return {
            "id": number,
            "type": "row",
            "title": panel.title,
            "gridPos": grid,
            "collapsed": False,
            "panels": [],
        }
    body: dict[str, Any] = {
        "id": number,
        "type": panel.kind,
        "title": panel.title,
        "gridPos": grid,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": panel.unit} if panel.unit else {}, "overrides": []},
        "targets": [query.target(chr(ord("A") + i)) for i, query in enumerate(panel.queries)],
    }
    if panel.description:
        body["description"] = panel.description
    if panel.kind == "heatmap":
        body["options"] = {"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1}
    if panel.kind == "stat":
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    return body


def _variable(name: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "query",
        "datasource": DATASOURCE,
        "query": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
    }


def dashboard() -> dict[str, Any]:
    """The dashboard's JSON model (Grafana 10/11), datasource uid `prometheus`."""
    return {
        "uid": UID,
        "title": "recoverlink: recoveries",
        "tags": ["recoverlink"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "1m",
        "time": {"from": "now-7d", "to": "now"},
        "templating": {
            "list": [
                _variable("team", "label_values(recoverlink_recoveries_opened_total, team)"),
                _variable("priority", "label_values(recoverlink_recoveries_opened_total, priority)"),
                _variable("service", "label_values(recoverlink_recoveries_opened_total, service)"),
            ]
        },
        "annotations": {"list": []},
        "panels": [_panel_json(n, p, grid) for n, (p, grid) in enumerate(_laid_out(panels()), start=1)],
    }


def dashboard_json() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def expressions() -> list[str]:
    """Every query of every panel: what the end-to-end test evaluates against a real Prometheus."""
    return [query.expr for panel in panels() for query in panel.queries]
