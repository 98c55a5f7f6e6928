"""`recoverlink check` on actions against the config: credentials that exist and fit, constant URLs to
allowed hosts only, every problem at the action's file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from recoverlink.cli import main
from recoverlink.config.model import Config

RULE = """\
rules:
  - name: outage
    match: ['service="payments-api"']
    actions:
      - name: banner
        kind: agent_desktop
        on: [fix_deployed]
{action}
"""


def check(tmp_path: Path, action: str, **actions: object) -> tuple[int, str]:
    (tmp_path / "rules.yaml").write_text(RULE.format(action=action))
    config = {
        "webhook": {"auth": {"bearer": {"env": "UNUSED"}}},
        "rules": {"files": ["rules.yaml"]},
        "actions": {
            "allowed_hosts": ["desk.internal:8091"],
            "credentials": {
                "desktop": {"bearer": {"env": "DESKTOP_TOKEN"}},
                "slack": {"url": {"file": "slack.url"}},
            },
            **actions,
        },
    }
    path = tmp_path / "recoverlink.yaml"
    path.write_text(json.dumps(config))
    result = CliRunner().invoke(main, ["check", str(path)])
    return result.exit_code, result.stderr


def test_an_action_with_a_known_credential_and_an_allowed_host_passes(tmp_path: Path) -> None:
    code, err = check(tmp_path, "        url: http://desk.internal:8091/b\n        credential: desktop")
    assert code == 0, err


def test_an_unknown_credential_is_named_at_the_action_line(tmp_path: Path) -> None:
    code, err = check(tmp_path, "        url: http://desk.internal:8091/b\n        credential: dekstop")
    assert code == 1
    assert err.startswith(
        f"{tmp_path / 'rules.yaml'}:5: action 'outage/banner': unknown credential 'dekstop'"
    )
    assert "desktop, slack" in err


def test_a_constant_url_to_a_host_not_allowed_is_refused(tmp_path: Path) -> None:
    code, err = check(tmp_path, "        url: https://desk.example.com/banners")
    assert code == 1
    assert (
        ":5: action 'outage/banner': calls desk.example.com, which is not in 'actions.allowed_hosts'" in err
    )


def test_a_templated_url_is_checked_when_it_is_sent(tmp_path: Path) -> None:
    code, err = check(tmp_path, "        url: 'http://{{ labels.desk | default(\"x\") }}:8091/b'")
    assert code == 0, err


def test_a_url_credential_replaces_the_url_and_cannot_be_given_both(tmp_path: Path) -> None:
    assert check(tmp_path, "        credential: slack")[0] == 0
    code, err = check(tmp_path, "        url: http://desk.internal:8091/b\n        credential: slack")
    assert code == 1 and "credential 'slack' is a URL" in err
    code, err = check(tmp_path, "        credential: desktop")
    assert code == 1 and "has no 'url' and its credential is not a URL" in err


def test_a_template_syntax_error_in_an_action_fails_check_at_its_line(tmp_path: Path) -> None:
    code, err = check(
        tmp_path, "        url: http://desk.internal:8091/b\n        body: '{{ recovery.title '"
    )
    assert code == 1
    assert err.startswith(f"{tmp_path / 'rules.yaml'}:9:") and "template syntax error" in err


def test_a_credential_holds_exactly_one_kind_of_secret(tmp_path: Path) -> None:
    both = {"bearer": {"env": "A"}, "url": {"env": "B"}}
    code, err = check(tmp_path, "        url: http://desk.internal:8091/b", credentials={"x": both})
    assert code == 1 and "exactly one of 'bearer', 'basic' or 'url'" in err


def test_the_action_timeout_must_fit_in_the_lease_once_actions_may_call_anything() -> None:
    base = {"webhook": {"auth": {"bearer": {"env": "X"}}}, "worker": {"lease": "4s"}}
    assert Config.model_validate({**base, "actions": {"timeout_seconds": 5}})
    with pytest.raises(ValidationError, match="action timeout"):
        Config.model_validate({**base, "actions": {"timeout_seconds": 5, "allowed_hosts": ["desk:1"]}})
