"""One outbound HTTP call, and how its failures are classified for the worker.

Impact sources, ITSM adapters and CX actions go through `Caller`: one session, a timeout, the credentials, no
redirects, a capped body. Every failure becomes a `DependencyError` of the caller's kind
(`ImpactSourceError`, `ItsmError`) with a bounded `reason` (a metric label) and `retryable`, like
Alertmanager's `Retrier.Check`: timeouts, connection errors, 408, 429 and 5xx may pass; other 4xx,
3xx and bad answers will not. Messages name who called ("impact source checkout-failures",
"servicenow") and say what happened in one line; they never carry credentials or a whole body.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from jinja2 import TemplateError

from recoverlink.config.impact import host_of
from recoverlink.domain.errors import DependencyError, ImpactSourceError
from recoverlink.domain.rules import Template

# An impact answer is a handful of counts and labels, an ITSM answer one record or a short list:
# anything bigger is a misconfigured call.
MAX_BODY_BYTES = 1024 * 1024
EXCERPT_CHARS = 200
_CHUNK_BYTES = 64 * 1024
# What a template expression can raise while rendering (the sandbox's SecurityError is a
# TemplateError; `{{ 1/0 }}` or an oversized range raise plain Python errors).
_RENDER_ERRORS = (TemplateError, ArithmeticError, LookupError, TypeError, ValueError)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Answer:
    """A remote's answer, read in full (up to MAX_BODY_BYTES)."""

    host: str
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class Caller:
    """How one source or ITSM calls out: a shared session, its timeout, its credentials, a clock for
    Retry-After, and the error kind its failures raise."""

    who: str  # named in every message: "impact source checkout-failures", "servicenow"
    session: requests.Session
    timeout_seconds: float
    authorization: str | None = field(default=None, repr=False)  # the Authorization header; a secret
    clock: Callable[[], datetime] = utc_now
    error_type: type[DependencyError] = ImpactSourceError

    def prepare(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
    ) -> requests.PreparedRequest:
        """The request exactly as it will be sent; its `url` is what a host check must look at.

        `json_body` is serialised by requests; `data` is a body already encoded (an action's
        rendered template), sent as it is."""
        all_headers = dict(headers or {})
        if self.authorization is not None:
            all_headers["Authorization"] = self.authorization
        request = requests.Request(method, url, params=params, headers=all_headers, json=json_body, data=data)
        try:
            return self.session.prepare_request(request)
        except (requests.RequestException, ValueError) as exc:
            raise self.error(f"cannot build the request: {type(exc).__name__}", "bad_request") from exc

    def send(self, prepared: requests.PreparedRequest) -> Answer:
        """Send without following redirects; a transport failure raises a classified error."""
        url = prepared.url or ""
        settings = self.session.merge_environment_settings(url, {}, True, None, None)
        try:
            with self.session.send(
                prepared, timeout=self.timeout_seconds, allow_redirects=False, **settings
            ) as response:
                body = self._read_body(response)
                return Answer(host_of(url), response.status_code, response.headers, body)
        except requests.RequestException as exc:
            raise transport_failure(
                self.who, host_of(url), self.timeout_seconds, exc, self.error_type
            ) from exc

    def _read_body(self, response: requests.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(_CHUNK_BYTES):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise self.error(f"the answer is larger than {MAX_BODY_BYTES} bytes", "bad_response")
            chunks.append(chunk)
        return b"".join(chunks)

    def error(self, what: str, reason: str, *, retryable: bool = False) -> DependencyError:
        """An error that names who called."""
        return self.error_type(f"{self.who}: {what}", retryable=retryable, reason=reason)

    def render(self, what: str, template: Template, context: Mapping[str, Any]) -> str:
        """Render one of the source's templates; a failure (the sandbox refusing) is not retryable."""
        try:
            return template.render(context)
        except _RENDER_ERRORS as exc:
            detail = excerpt(str(exc)) or type(exc).__name__
            raise self.error(f"the {what} template failed to render: {detail}", "template") from exc

    def status_failure(self, answer: Answer, detail: str | None = None) -> DependencyError:
        """The error for a non-2xx answer; `detail` replaces the body excerpt (Prometheus' error text)."""
        reason, retryable = status_reason(answer.status)
        said = f"{answer.host} answered HTTP {answer.status}"
        if 300 <= answer.status < 400:
            location = host_of(answer.headers.get("Location", "")) or "the same host"
            said += f", a redirect to {location} (redirects are not followed)"
        elif text := detail if detail is not None else excerpt_bytes(answer.body):
            said += f": {text}"
        retry_after = self.retry_after(answer) if retryable else None
        if retry_after is not None:
            said += f" (retry after {retry_after:g} s)"
        return self.error_type(
            f"{self.who}: {said}", retryable=retryable, reason=reason, retry_after_seconds=retry_after
        )

    def retry_after(self, answer: Answer) -> float | None:
        return retry_after_seconds(answer.headers.get("Retry-After"), self.clock())

    def json_document(self, answer: Answer) -> Any:
        """The answer's JSON document; anything else is a bad answer that a retry will not fix."""
        try:
            return json.loads(answer.body)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are ValueErrors
            shown = excerpt_bytes(answer.body) or "an empty body"
            raise self.error(f"{answer.host} did not answer JSON: {shown}", "bad_response") from exc


def status_reason(status: int) -> tuple[str, bool]:
    """The bounded reason and retryability of an HTTP status that is not a success."""
    # 5xx, 408 and 429 are the remote's trouble and may pass; other 4xx will fail the same way again.
    if status in (408, 429, 503):
        return f"http_{status}", True
    if 500 <= status < 600:
        return "http_5xx", True
    if 400 <= status < 500:
        return "http_4xx", False
    if 300 <= status < 400:
        return "http_3xx", False
    return "bad_response", False


def transport_failure(
    who: str,
    host: str,
    timeout_seconds: float,
    exc: requests.RequestException,
    error_type: type[DependencyError] = ImpactSourceError,
) -> DependencyError:
    """Timeouts and connection errors may pass; a request that cannot be sent at all will not."""
    where = f"{who}:"
    # ConnectTimeout is both a Timeout and a ConnectionError: it counts as a timeout.
    if isinstance(exc, requests.Timeout):
        return error_type(
            f"{where} no answer from {host} within {timeout_seconds:g} s", retryable=True, reason="timeout"
        )
    if isinstance(exc, requests.ConnectionError):
        return error_type(
            f"{where} cannot connect to {host} ({_cause(exc)})", retryable=True, reason="connect"
        )
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidHeader):
        return error_type(
            f"{where} cannot send the request ({_cause(exc)})", retryable=False, reason="bad_request"
        )
    return error_type(f"{where} the call to {host} failed ({_cause(exc)})", retryable=True, reason="request")


def _cause(exc: requests.RequestException) -> str:
    """The name of the underlying failure (urllib3's MaxRetryError keeps it in `reason`)."""
    first = exc.args[0] if exc.args else None
    reason = getattr(first, "reason", None)
    return type(reason if isinstance(reason, BaseException) else exc).__name__


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A `Retry-After` header (delta-seconds or an HTTP-date) as seconds from `now`; None if unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC without saying so
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def excerpt(text: str) -> str:
    """One line of at most EXCERPT_CHARS characters, for a message."""
    line = " ".join(text.split())
    return line if len(line) <= EXCERPT_CHARS else line[: EXCERPT_CHARS - 3] + "..."


def excerpt_bytes(body: bytes) -> str:
    return excerpt(body[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace"))


def is_number(value: object) -> bool:
    """A finite JSON number; bool is not a number here, though Python says it is."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
