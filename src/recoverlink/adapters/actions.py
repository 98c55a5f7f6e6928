"""Send one CX handoff action: render its request over the recovery, check where it goes, send it.

Everything that can fail before the first call is done once, by `build_action_sender`: the
credentials' secrets are read (all problems reported at once as `ConfigErrors`). A send renders the
URL, headers and body in the strict action sandbox, refuses a URL whose host is not in
`actions.allowed_hosts` (checked again after requests has normalised it), refuses a JSON body that
does not parse, and adds `Idempotency-Key` so a receiver can drop a retry's duplicate. Failures are
`ActionError`s classified as `Caller` classifies them; a template failure (the sandbox refusing
`{{ ''.__class__ }}` among them) is `template`, not retryable.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from recoverlink.adapters.http_calls import Caller, excerpt, utc_now
from recoverlink.config.actions import ActionCredential, ActionsConfig
from recoverlink.config.impact import host_of, is_allowed_host
from recoverlink.config.secrets import read_secret
from recoverlink.domain.actions import Action
from recoverlink.domain.errors import ActionError, ConfigError, ConfigErrors
from recoverlink.domain.rules import Constant

IDEMPOTENCY_HEADER = "Idempotency-Key"
_TEMPLATE_MARKS = ("{", "}", "%")


@dataclass(frozen=True)
class SentAction:
    """What the receiver answered (a 2xx); the audit entry and the job's result keep it."""

    host: str
    status: int


@dataclass(frozen=True)
class _Secrets:
    """A credential as it is sent: an Authorization header, or the URL itself."""

    authorization: str | None = field(default=None, repr=False)
    url: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ActionSender:
    """Sends actions with the configured credentials, timeout and allowed hosts."""

    allowed_hosts: tuple[str, ...]
    timeout_seconds: float
    credentials: Mapping[str, _Secrets]
    session: requests.Session
    clock: Callable[[], datetime] = utc_now

    def target(self, action: Action) -> str:
        """The rate-limit key: the host of a literal URL, else `action:<rule/action>`."""
        secret_url = self._secrets(action).url
        if secret_url is not None:
            return host_of(secret_url)
        if isinstance(action.url, Constant):
            netloc = urlsplit(action.url.source).netloc
            if netloc and not any(mark in netloc for mark in _TEMPLATE_MARKS):
                return host_of(action.url.source)
        return f"action:{action.ref}"

    def send(self, action: Action, context: Mapping[str, Any], idempotency_key: str) -> SentAction:
        """Render and send; raises `ActionError` when the request is refused or fails."""
        caller = self._caller(action)
        url = self._url(action, caller, context)
        headers = {name: caller.render(f"headers.{name}", t, context) for name, t in action.headers.items()}
        headers[IDEMPOTENCY_HEADER] = idempotency_key
        body = self._body(action, caller, context)
        if body is not None:
            headers["Content-Type"] = action.content_type
        prepared = caller.prepare(action.method, url, headers=headers, data=body)
        self._check_host(caller, prepared.url or "", secret=action.url is None)
        answer = caller.send(prepared)
        if not answer.ok:
            raise caller.status_failure(answer)
        return SentAction(answer.host, answer.status)

    def _secrets(self, action: Action) -> _Secrets:
        return self.credentials.get(action.credential or "", _Secrets())

    def _caller(self, action: Action) -> Caller:
        if action.credential is not None and action.credential not in self.credentials:
            raise ActionError(
                f"action {action.ref}: credential {action.credential!r} is not configured "
                "(actions.credentials)",
                retryable=False,
                reason="unknown_credential",
            )
        return Caller(
            who=f"action {action.ref}",
            session=self.session,
            timeout_seconds=self.timeout_seconds,
            authorization=self._secrets(action).authorization,
            clock=self.clock,
            error_type=ActionError,
        )

    def _url(self, action: Action, caller: Caller, context: Mapping[str, Any]) -> str:
        if action.url is None:
            url = self._secrets(action).url
            if url is None:
                raise caller.error("has no url, and its credential is not a URL", "bad_request")
        else:
            url = caller.render("url", action.url, context)
        self._check_host(caller, url, secret=action.url is None)
        return url

    def _body(self, action: Action, caller: Caller, context: Mapping[str, Any]) -> bytes | None:
        if action.body is None:
            return None
        text = caller.render("body", action.body, context)
        if action.sends_json:
            try:
                json.loads(text)
            except ValueError as exc:
                raise caller.error(f"the rendered body is not JSON: {excerpt(str(exc))}", "template") from exc
        return text.encode("utf-8")

    def _check_host(self, caller: Caller, url: str, *, secret: bool) -> None:
        scheme = urlsplit(url).scheme
        if scheme in ("http", "https") and is_allowed_host(url, list(self.allowed_hosts)):
            return
        # A credential's URL is a secret: name its host only, never the URL.
        if scheme:
            shown = f"{scheme}://{host_of(url)}"
        else:
            shown = "the credential's URL" if secret else repr(excerpt(url))
        raise caller.error(
            f"refusing to call {shown}: only http(s) URLs to actions.allowed_hosts may be called",
            "host_not_allowed",
        )


def build_action_sender(
    config: ActionsConfig,
    environ: Mapping[str, str],
    session: requests.Session | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    read_secrets: bool = True,
) -> ActionSender:
    """Read every credential's secret once; raises ConfigErrors naming `actions.credentials.<name>`.

    `read_secrets=False` reads none (what `recoverlink check` does where secrets are absent)."""
    errors: list[ConfigError] = []
    credentials: dict[str, _Secrets] = {}
    for name, credential in config.credentials.items():
        if not read_secrets:
            credentials[name] = _Secrets()
            continue
        try:
            credentials[name] = _read(credential, environ, f"actions.credentials.{name}")
        except ConfigErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise ConfigErrors(errors)
    return ActionSender(
        allowed_hosts=tuple(config.allowed_hosts),
        timeout_seconds=config.timeout_seconds,
        credentials=credentials,
        session=session or requests.Session(),
        clock=clock or utc_now,
    )


def _read(credential: ActionCredential, environ: Mapping[str, str], where: str) -> _Secrets:
    if credential.bearer is not None:
        return _Secrets(authorization="Bearer " + read_secret(credential.bearer, environ, f"{where}.bearer"))
    if credential.basic is not None:
        password = read_secret(credential.basic.password, environ, f"{where}.basic.password")
        pair = f"{credential.basic.username}:{password}".encode()
        return _Secrets(authorization="Basic " + base64.b64encode(pair).decode("ascii"))
    assert credential.url is not None  # the model guarantees exactly one
    return _Secrets(url=read_secret(credential.url, environ, f"{where}.url"))
