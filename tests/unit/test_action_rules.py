"""Actions in rule files: loaded with their templates compiled and tried on a sample recovery, every
problem reported at its file:line, so `recoverlink check` finds what the worker would trip on."""

from __future__ import annotations

from pathlib import Path

import pytest

from recoverlink.config.rules_loader import load_rule_files
from recoverlink.config.templates import TemplateCompiler
from recoverlink.domain.actions import ActionKind
from recoverlink.domain.errors import ConfigErrors
from recoverlink.domain.rules import Rule

HEAD = """\
rules:
  - name: checkout-outage
    match: ['service="payments-api"']
    set:
      fields: {customer_message: "Card payments are failing."}
    actions:
      - name: agent-banner
        kind: agent_desktop
        on: [workaround_available, fix_deployed]
        url: http://127.0.0.1:8091/banners
"""


def load(tmp_path: Path, action_lines: str = "") -> tuple[Rule, ...]:
    path = tmp_path / "rules.yaml"
    path.write_text(HEAD + action_lines)
    return load_rule_files([path], TemplateCompiler())


def errors(tmp_path: Path, action_lines: str) -> list[str]:
    with pytest.raises(ConfigErrors) as failed:
        load(tmp_path, action_lines)
    return [e.render() for e in failed.value.errors]


def test_an_action_is_loaded_with_its_triggers_templates_and_line(tmp_path: Path) -> None:
    body = """\
        headers: {X-Source: recoverlink}
        body: |
          {"title": {{ recovery.title | tojson }}, "message": {{ fields.customer_message | tojson }},
           "incident": {{ recovery.incident.number | tojson }}}
"""
    (rule,) = load(tmp_path, body)
    (banner,) = rule.actions
    assert (banner.ref, banner.kind, banner.on, banner.method) == (
        "checkout-outage/agent-banner",
        ActionKind.AGENT_DESKTOP,
        ("workaround_available", "fix_deployed"),
        "POST",
    )
    assert banner.source is not None and banner.source.line == 7
    assert banner.headers["X-Source"].source == "recoverlink"


def test_a_template_syntax_error_is_reported_at_its_line(tmp_path: Path) -> None:
    (error,) = errors(tmp_path, "        body: '{\"title\": {{ recovery.title | tojson }'\n")
    assert error.startswith(f"{tmp_path / 'rules.yaml'}:11:")
    assert "template syntax error" in error


def test_an_unknown_filter_is_a_syntax_error_at_check_time(tmp_path: Path) -> None:
    (error,) = errors(tmp_path, "        body: '{{ recovery.title | to_json }}'\n")
    assert ":11:" in error and "No filter named 'to_json'" in error


def test_a_misspelt_name_fails_on_the_sample_recovery_at_its_line(tmp_path: Path) -> None:
    (error,) = errors(tmp_path, "        body: '{\"t\": {{ recovery.titel | tojson }}}'\n")
    assert ":11:" in error
    assert "template fails on a sample recovery" in error and "titel" in error
    assert "default('')" in error, "the hint says how to write an optional name"


def test_a_body_that_is_not_json_on_the_sample_is_reported(tmp_path: Path) -> None:
    (error,) = errors(tmp_path, "        body: '{\"title\": {{ recovery.title }}}'\n")
    assert ":11:" in error and "not JSON on a sample recovery" in error and "tojson" in error


def test_a_plain_text_body_is_not_held_to_json(tmp_path: Path) -> None:
    (rule,) = load(
        tmp_path, "        content_type: text/plain\n        body: 'Fixed: {{ recovery.title }}'\n"
    )
    assert not rule.actions[0].sends_json


def test_a_sandbox_escape_in_a_template_fails_the_check(tmp_path: Path) -> None:
    (error,) = errors(tmp_path, "        body: \"{{ ''.__class__.__mro__ }}\"\n")
    assert "SecurityError" in error and "unsafe" in error


def test_an_unknown_kind_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(HEAD.replace("kind: agent_desktop", "kind: pager"))
    with pytest.raises(ConfigErrors) as failed:
        load_rule_files([path], TemplateCompiler())
    (error,) = [e.render() for e in failed.value.errors]
    assert error.startswith(f"{path}:8:") and "rules.0.actions.0.kind" in error
    assert "'agent_desktop'" in error and "'chat'" in error


def test_an_unknown_trigger_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(HEAD.replace("on: [workaround_available, fix_deployed]", "on: [fixed]"))
    with pytest.raises(ConfigErrors) as failed:
        load_rule_files([path], TemplateCompiler())
    (error,) = [e.render() for e in failed.value.errors]
    assert ":9:" in error and "unknown trigger 'fixed'" in error and "cx_updated" in error


def test_headers_recoverlink_sets_itself_are_refused(tmp_path: Path) -> None:
    (error,) = errors(tmp_path, "        headers: {Authorization: Bearer abc}\n")
    assert "'Authorization' is set by recoverlink" in error


def test_an_action_needs_a_url_or_a_credential(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(HEAD.replace("        url: http://127.0.0.1:8091/banners\n", ""))
    with pytest.raises(ConfigErrors) as failed:
        load_rule_files([path], TemplateCompiler())
    assert "needs a 'url', or a 'credential'" in failed.value.errors[0].render()


def test_a_constant_url_must_be_http_with_a_host(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(HEAD.replace("http://127.0.0.1:8091/banners", "ftp://desk/banners"))
    with pytest.raises(ConfigErrors) as failed:
        load_rule_files([path], TemplateCompiler())
    assert "invalid URL 'ftp://desk/banners'" in failed.value.errors[0].render()


def test_action_names_are_unique_within_a_rule(tmp_path: Path) -> None:
    again = "      - {name: agent-banner, kind: chat, on: [closed], url: 'http://127.0.0.1:1/'}\n"
    (error,) = errors(tmp_path, again)
    assert "duplicate action name 'agent-banner'" in error
