"""`recoverlink check`, `test` and `explain` against the shipped examples and broken files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from recoverlink.cli import main

ROOT = Path(__file__).parents[2]
EXAMPLE_CONFIG = ROOT / "deploy" / "recoverlink.yaml"
FIXTURES = ROOT / "tests" / "fixtures"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env={"RECOVERLINK_CONFIG": str(EXAMPLE_CONFIG)})
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def example_copy(tmp_path: Path) -> Path:
    """The shipped deploy/ and rules/ folders, copied so a test can break them."""
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    return tmp_path / "deploy" / "recoverlink.yaml"


def test_check_accepts_the_shipped_examples() -> None:
    code, out, err = run("check")
    assert code == 0, err
    assert out.startswith(f"SUCCESS: {EXAMPLE_CONFIG}: config valid; catalog ")


def test_check_reports_a_broken_rule_at_its_line_and_exits_1(example_copy: Path) -> None:
    rules = example_copy.parents[1] / "rules" / "20-identity.yaml"
    rules.write_text(rules.read_text().replace('service="identity-api"', 'service=~"identity-("'))
    code, _, err = run("check", str(example_copy))
    assert code == 1
    first = err.splitlines()[0]
    assert first.startswith(f"{rules}:4:")
    assert "invalid regex" in first


def test_check_names_an_unknown_team_with_a_hint(example_copy: Path) -> None:
    rules = example_copy.parents[1] / "rules" / "90-defaults.yaml"
    rules.write_text(rules.read_text().replace("owner: sre", "owner: srre"))
    code, _, err = run("check", str(example_copy))
    assert code == 1
    assert "rule 'infrastructure-to-sre': unknown team 'srre' (hint: did you mean \"sre\"?" in err


def test_check_reports_template_syntax_errors(example_copy: Path) -> None:
    rules = example_copy.parents[1] / "rules" / "20-identity.yaml"
    rules.write_text(rules.read_text().replace("{{ annotations.summary }}", "{{ annotations.summary }"))
    code, _, err = run("check", str(rules))
    assert code == 1
    assert "template syntax error" in err
    assert err.startswith(f"{rules}:")


def test_check_refuses_an_unknown_kind_of_file(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("hello: world\n")
    code, _, err = run("check", str(path))
    assert code == 1
    assert "not a file recoverlink checks" in err


def test_shipped_rule_tests_pass() -> None:
    code, out, err = run("test")
    assert code == 0, err
    assert out.startswith("SUCCESS: ")
    assert "rule tests passed" in out


def test_failing_rule_test_prints_a_diff(tmp_path: Path) -> None:
    test_file = tmp_path / "wrong_test.yaml"
    test_file.write_text(
        "tests:\n"
        "  - name: wrong owner\n"
        "    alert:\n"
        "      labels: {alertname: PaymentsApiDown, service: payments-api, severity: critical}\n"
        "    expect:\n"
        "      owner: identity\n"
        "      priority: P1\n"
    )
    code, _, err = run("test", str(test_file))
    assert code == 1
    assert f"FAILED {test_file}:2: wrong owner" in err
    assert "  owner:\n    - expected: 'identity'\n    + got:      'payments'" in err
    assert "priority" not in err
    assert "FAILED: 1 of 1 rule tests failed" in err


def test_explain_shows_each_rule_and_why(tmp_path: Path) -> None:
    code, out, err = run("explain", str(FIXTURES / "alertmanager" / "firing_single.json"))
    assert code == 0, err
    assert "MATCH rule checkout-outage: all matchers match; stop" in out
    assert "service: payments-api" in out
    assert "priority: P1" in out


def test_explain_json_matches_the_api_shape() -> None:
    code, out, _ = run("explain", "--json", str(FIXTURES / "alertmanager" / "firing_group.json"))
    assert code == 0
    document = json.loads(out)
    assert len(document["alerts"]) == 3
    assert document["alerts"][0]["enrichment"]["ruleset_version"] == document["ruleset_version"]


def test_explain_of_a_single_alert_file(tmp_path: Path) -> None:
    alert = tmp_path / "alert.json"
    alert.write_text(json.dumps({"labels": {"alertname": "X", "service": "nope"}}))
    code, out, _ = run("explain", str(alert))
    assert code == 0
    assert "no catalog entity named 'nope'" in out


def test_explain_of_a_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    alert = tmp_path / "alert.json"
    alert.write_text("{}")
    code, _, err = run("explain", str(alert))
    assert code == 1
    assert f"{alert}: labels: Field required" in err


def test_importing_the_cli_does_not_load_prometheus_client() -> None:
    """prometheus_client picks its value class at import: it must not load before serve sets up
    the multiprocess directory."""
    code = "import sys, recoverlink.cli; print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
