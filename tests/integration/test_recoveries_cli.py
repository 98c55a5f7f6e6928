"""`recoverlink recoveries list|show`: read the store the config names, print tables or JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from recoverlink.cli import main
from recoverlink.config.enrichment_loader import LoadedEnrichment
from recoverlink.store.engine import Store
from recoverlink.web import create_app
from tests.conftest import FakeClock, make_settings
from tests.integration.test_recoveries_api import Recoveries, example_enrichment


@pytest.fixture(scope="module")
def loaded() -> LoadedEnrichment:
    return example_enrichment()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "recoverlink.yaml"
    path.write_text("webhook:\n  auth:\n    bearer: {env: RL_TEST_TOKEN}\n")
    return path


@pytest.fixture
def rec(store: Store, loaded: LoadedEnrichment, clock: FakeClock) -> Recoveries:
    return Recoveries(store, loaded, clock)


def run(store: Store, *args: str) -> tuple[int, str, str]:
    """Run the CLI against the test's store (SQLite file or PostgreSQL database)."""
    url = store.engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(main, list(args), env={"RECOVERLINK_DATABASE_URL": url})
    return result.exit_code, result.stdout, result.stderr


def table(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


def test_list_prints_a_table_newest_first(rec: Recoveries, config_file: Path) -> None:
    rec.seed_mix()
    code, out, err = run(rec.store, "recoveries", "list", "--config", str(config_file))
    assert code == 0, err
    header, *rows = table(out)
    assert header[:7] == ["ID", "STATE", "PRIO", "TEAM", "SERVICE", "OPENED", "(UTC)"]
    assert [row[:5] for row in rows] == [
        ["3", "opened", "unknown", "sre", "-"],
        ["2", "fix_deployed", "P2", "payments", "payments-api"],
        ["1", "opened", "P1", "payments", "payments-api"],
    ]
    assert rows[1][7] == "0/3", "firing of all alerts"
    assert " ".join(rows[2][8:]) == "Checkout failing: payments-api is down"


def test_list_filters_and_limits(rec: Recoveries, config_file: Path) -> None:
    rec.seed_mix()
    base = ("recoveries", "list", "--config", str(config_file))
    _, out, _ = run(rec.store, *base, "--state", "opened", "--team", "payments")
    assert [row[0] for row in table(out)[1:]] == ["1"]
    _, out, _ = run(rec.store, *base, "--service", "payments-api", "--limit", "1")
    assert [row[0] for row in table(out)[1:-1]] == ["2"]
    assert out.splitlines()[-1] == "(more than 1: raise --limit or narrow the filters)"
    _, out, _ = run(rec.store, *base, "--team", "nobody")
    assert out.strip() == "no recoveries match"
    code, _, err = run(rec.store, *base, "--state", "reopened")
    assert code == 2
    assert "'reopened' is not one of" in err


def test_list_json_is_the_api_item_shape(rec: Recoveries, config_file: Path) -> None:
    rec.seed_mix()
    code, out, _ = run(
        rec.store, "recoveries", "list", "--json", "--state", "fix_deployed", "--config", str(config_file)
    )
    assert code == 0
    (item,) = json.loads(out)["items"]
    assert (item["id"], item["state"], item["alert_counts"]) == (
        2,
        "fix_deployed",
        {"firing": 0, "resolved": 3},
    )
    assert set(item["milestones"]) == {"opened", "owner_known", "fix_deployed"}


def test_show_prints_summary_milestone_waits_alerts_and_timeline(rec: Recoveries, config_file: Path) -> None:
    rec.deliver("firing_group.json")
    rec.clock.now += timedelta(minutes=12, seconds=30)
    rec.deliver("resolved_group.json")
    code, out, err = run(rec.store, "recoveries", "show", "1", "--config", str(config_file))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "recovery 1: Payments slow on payments-api-1:8080"
    assert "  state           fix_deployed since 2026-11-22 18:22:30Z" in lines
    assert "  team            payments (owner: payments, 0 escalation bounce(s))" in lines
    milestones = {row[0]: row[1:] for row in table(out[out.index("milestones") :].split("\n\n")[0])[1:]}
    assert milestones["opened"] == ["2026-11-22", "18:10:00Z"]
    assert milestones["owner_known"] == ["2026-11-22", "18:10:00Z", "0s", "0s"]
    assert milestones["fix_deployed"] == ["2026-11-22", "18:22:30Z", "12m", "30s", "12m", "30s"]
    assert "alerts: 0 firing, 3 resolved" in lines
    alerts = lines[lines.index("alerts: 0 firing, 3 resolved") + 1 : lines.index("timeline") - 1]
    assert len(alerts) == 3
    assert all(line.split()[0] == "resolved" and line.split()[2] == "member" for line in alerts)
    timeline = lines[lines.index("timeline") + 1 :]
    assert timeline[0].endswith("alertmanager/alertmanager  opened  - -> opened  new failure")
    assert timeline[-1].endswith("transition  opened -> fix_deployed  alerts_resolved")


def test_show_json_is_the_api_detail(rec: Recoveries, config_file: Path) -> None:
    rec.deliver("firing_single.json")
    code, out, _ = run(rec.store, "recoveries", "show", "1", "--json", "--config", str(config_file))
    assert code == 0
    shown: dict[str, Any] = json.loads(out)
    assert (shown["id"], shown["incident"], shown["enrichment"]["owner"]) == (1, None, "payments")
    assert [a["fingerprint"] for a in shown["alerts"]] == ["a1d644f09ee6a3f0"]
    assert shown["timeline"][0]["kind"] == "opened"


def test_show_marks_stale_alerts_and_operator_changes(
    rec: Recoveries, config_file: Path, store: Store, loaded: LoadedEnrichment
) -> None:
    # The CLI judges staleness by the real clock: last seen a day ago is past the 8 h stale_after.
    rec.clock.now = datetime.now(UTC) - timedelta(days=1)
    rec.deliver("firing_single.json")
    app = create_app(
        make_settings(config_file.parent, str(store.engine.url)),
        store=store,
        environ={},
        enrichment=loaded,
        clock=rec.clock,
    )
    rec.client = app.test_client()
    body = {"target": "workaround_available", "reason": "kb article", "workaround": "Offer PayPal"}
    assert rec.move(body).status_code == 200
    assert rec.patch({"owner": "crm"}).status_code == 200
    _, out, _ = run(rec.store, "recoveries", "show", "1", "--config", str(config_file))
    assert out.count("STALE") == 1
    assert "  workaround      Offer PayPal" in out
    assert "  team            payments (owner: crm, 1 escalation bounce(s))" in out
    moved = "transition  opened -> workaround_available  workaround_published: kb article"
    assert f"operator/operator-on-call  {moved}" in out
    assert "operator/operator-on-call  workaround  'Offer PayPal'" in out


def test_show_of_an_unknown_recovery_says_so(rec: Recoveries, config_file: Path) -> None:
    code, out, err = run(rec.store, "recoveries", "show", "5", "--config", str(config_file))
    assert (code, out) == (1, "")
    assert err.strip() == "error: recovery 5 not found"
