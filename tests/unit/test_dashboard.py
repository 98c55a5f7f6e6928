"""The Grafana dashboard: the shipped JSON is what the code builds, and it queries only what exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

from recoverlink.dashboard import dashboard, dashboard_json, expressions
from tests.unit.test_prometheus_rules import NAME, exported_names, recorded_names

SHIPPED = Path(__file__).parents[2] / "deploy" / "grafana" / "dashboards" / "recoverlink.json"


def test_the_shipped_dashboard_is_what_the_code_builds() -> None:
    assert SHIPPED.read_text() == dashboard_json(), "regenerate: recoverlink dashboard --output " + str(
        SHIPPED
    )


def test_panels_query_only_metrics_and_recording_rules_that_exist() -> None:
    known = exported_names() | recorded_names()
    used = {name for expr in expressions() for name in NAME.findall(expr)}
    assert used - known == set()


def test_every_latency_milestone_of_design_has_a_heatmap_and_quantiles() -> None:
    titles = [p["title"] for p in dashboard()["panels"]]
    for milestone in ("ownership", "customer impact", "incident", "CX update", "verification", "Resolution"):
        assert sum(milestone.lower() in t.lower() for t in titles) >= 2, milestone


def test_the_layout_fits_the_grid_and_ids_are_unique() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24


def test_variables_team_priority_and_service_filter_the_queries() -> None:
    names = [v["name"] for v in dashboard()["templating"]["list"]]
    assert names == ["team", "priority", "service"]
    with_team = [e for e in expressions() if "$team" in e]
    assert len(with_team) >= len(expressions()) // 2
    assert all(re.search(r'service=~"\$service"', e) for e in expressions() if "recoverlink_recoveries{" in e)
    json.dumps(dashboard())  # serialisable
