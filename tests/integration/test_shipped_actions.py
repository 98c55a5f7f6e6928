"""The shipped example actions (rules/, deploy/recoverlink.yaml): one of every kind, and none that
could send anything off the machine when `make run` runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from recoverlink.config.enrichment_loader import load_enrichment
from recoverlink.config.loader import load_config
from recoverlink.domain.actions import Action, ActionKind

EXAMPLE = Path(__file__).parents[2] / "deploy" / "recoverlink.yaml"


@pytest.fixture(scope="module")
def shipped() -> list[Action]:
    loaded = load_enrichment(load_config(EXAMPLE), EXAMPLE.parent, str(EXAMPLE))
    return [a for rule in loaded.enricher.ruleset.rules for a in rule.actions]


def test_the_shipped_rules_have_an_action_of_every_kind(shipped: list[Action]) -> None:
    assert {a.kind for a in shipped} == set(ActionKind)
    (chat,) = [a for a in shipped if a.kind is ActionKind.CHAT]
    assert chat.body is not None and '{"text":' in chat.body.source, "Slack's incoming-webhook shape"


def test_the_shipped_actions_call_only_loopback(shipped: list[Action]) -> None:
    hosts = load_config(EXAMPLE).actions.allowed_hosts
    assert hosts and all(host.startswith("127.0.0.1:") for host in hosts)
    assert all(a.url is not None and a.url.source.startswith("http://127.0.0.1:") for a in shipped)
