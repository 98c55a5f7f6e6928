"""`recoverlink check` warns about secrets written into the YAML where the model cannot refuse them:
literal tokens in headers, user info and query parameters of URLs. The file still validates."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from recoverlink.cli import main

RULES = """\
rules:
  - name: outage
    match: ['service="payments-api"']
    actions:
      - name: banner
        kind: agent_desktop
        on: [fix_deployed]
        url: http://desk.internal:8091/b?api_key=abc123
        headers: {X-Api-Token: s3cr3t-value, X-Source: recoverlink, X-Session: "{{ recovery.id }}"}
"""


def run_check(tmp_path: Path, impact: dict[str, object]) -> tuple[int, str, str]:
    (tmp_path / "rules.yaml").write_text(RULES)
    config = {
        "webhook": {"auth": {"bearer": {"env": "UNUSED"}}},
        "rules": {"files": ["rules.yaml"]},
        "actions": {"allowed_hosts": ["desk.internal:8091"]},
        "impact": impact,
    }
    path = tmp_path / "recoverlink.yaml"
    path.write_text(json.dumps(config))
    result = CliRunner().invoke(main, ["check", str(path)])
    return result.exit_code, result.stdout, result.stderr


def test_literal_secrets_in_actions_and_lookups_are_warned_about_but_do_not_fail(tmp_path: Path) -> None:
    impact = {
        "allowed_hosts": ["crm.internal"],
        "sources": {
            "cases": {
                "http": {
                    "url": "https://bot:hunter2@crm.internal/api/cases",
                    "headers": {"Authorization": "Bearer abc", "Accept": "application/json"},
                    "params": {"token": "t0k3n", "service": "{{ service.name }}"},
                    "counts": {"open_cases": "length(cases)"},
                },
                "thresholds": {"open_cases": 1},
            }
        },
    }
    code, out, err = run_check(tmp_path, impact)
    assert code == 0, err
    assert out.startswith("SUCCESS: ")
    warnings = [line for line in err.splitlines() if line.startswith("WARNING: ")]
    assert len(warnings) == 5, err
    rules = str(tmp_path / "rules.yaml")
    assert f"WARNING: {rules}:5: action outage/banner: query parameter 'api_key' looks like a secret" in err
    assert "header 'X-Api-Token' looks like a secret" in err
    assert "X-Session" not in err, "a template names no secret itself"
    assert "impact.sources.cases.http.url: a password in the URL's user info" in err
    assert "impact.sources.cases.http.headers: header 'Authorization' looks like a secret" in err
    assert "impact.sources.cases.http.params: parameter 'token' looks like a secret" in err
    assert "hunter2" not in err and "t0k3n" not in err, "the warning never repeats the secret"


def test_the_shipped_config_has_no_secret_in_its_yaml() -> None:
    result = CliRunner().invoke(
        main, ["check", "--config", str(Path(__file__).parents[2] / "deploy" / "recoverlink.yaml")]
    )
    assert result.exit_code == 0, result.stderr
    assert "WARNING" not in result.stderr
