"""How the ITSM adapters send a JSON call and read its answer, on top of `http_calls.Caller`.

An ITSM answer counts only when it is JSON. A hibernating ServiceNow developer instance answers
200 with an HTML page, and a login proxy in front of Jira does much the same: such an answer is a
retryable failure with reason `not_json` (REFERENCE.md 3.6), never a success. Error bodies of both
systems (`{"error": {"message", "detail"}}`, `{"errorMessages": [...], "errors": {...}}`) become
the one-line detail of the failure, instead of a raw excerpt.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from recoverlink.adapters.http_calls import Answer, Caller, excerpt, excerpt_bytes
from recoverlink.domain.errors import DependencyError

_HIBERNATING = (b"instance-hibernating-page", b"instance is hibernating")


def send(
    caller: Caller,
    method: str,
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    body: Any = None,
) -> Answer:
    """Send one JSON call: `Accept` always, `Content-Type` with a body (ServiceNow refuses either missing)."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return caller.send(caller.prepare(method, url, params=params, headers=headers, json_body=body))


def document(caller: Caller, answer: Answer, expected: Collection[int] = (200,)) -> Any:
    """The JSON document of an answer whose status is one of `expected`.

    A non-2xx status is classified by `Caller.status_failure`; a 2xx that is not JSON is `not_json`
    (retryable); JSON with another 2xx status is a `bad_response` (a create answering 200 instead
    of 201 did something we cannot vouch for).
    """
    if not answer.ok:
        raise failure(caller, answer)
    parsed = json_of(caller, answer)
    if answer.status not in expected:
        wanted = " or ".join(str(status) for status in expected)
        raise caller.error(f"{answer.host} answered HTTP {answer.status}, expected {wanted}", "bad_response")
    return parsed


def no_content(caller: Caller, answer: Answer) -> None:
    """Accept a 2xx that carries nothing (Jira's 204) or JSON; a page of HTML is still `not_json`."""
    if not answer.ok:
        raise failure(caller, answer)
    if answer.status != 204 and answer.body.strip():
        json_of(caller, answer)


def json_of(caller: Caller, answer: Answer) -> Any:
    """The parsed body of a 2xx answer, if it says it is JSON and is."""
    content_type = answer.headers.get("Content-Type", "")
    if "json" not in content_type.lower():
        raise not_json(caller, answer, content_type)
    try:
        return json.loads(answer.body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise not_json(caller, answer, content_type) from exc


def not_json(caller: Caller, answer: Answer, content_type: str) -> DependencyError:
    """The retryable failure of a 2xx answer that is not JSON; says so plainly for a hibernating PDI."""
    if any(mark in answer.body for mark in _HIBERNATING):
        what = "the instance is hibernating (its HTML page came instead of JSON)"
    else:
        kind = content_type.split(";", maxsplit=1)[0].strip() or "no Content-Type"
        shown = excerpt_bytes(answer.body) or "an empty body"
        what = f"{kind} instead of JSON: {shown}"
    return caller.error(
        f"{answer.host} answered HTTP {answer.status} with {what}", "not_json", retryable=True
    )


def failure(caller: Caller, answer: Answer) -> DependencyError:
    """The classified error of a non-2xx answer, with the ITSM's own error text when it sent one."""
    detail = error_detail(answer)
    if answer.status == 401 and answer.headers.get("X-MFA_TOKEN", "").lower() == "invalid":
        detail = f"{detail or 'not authenticated'} (the user needs MFA for basic auth)"
    return caller.status_failure(answer, detail=detail)


def error_detail(answer: Answer) -> str | None:
    """ServiceNow's `error.message: error.detail` or Jira's `errorMessages` and `errors`, one line."""
    try:
        parsed = json.loads(answer.body)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    parts = _servicenow_error(parsed.get("error")) + _jira_errors(parsed)
    return excerpt("; ".join(parts)) if parts else None


def _servicenow_error(error: Any) -> list[str]:
    if not isinstance(error, dict):
        return []
    said = [
        str(error[key]) for key in ("message", "detail") if isinstance(error.get(key), str) and error[key]
    ]
    return [": ".join(said)] if said else []


def _jira_errors(parsed: Mapping[str, Any]) -> list[str]:
    messages = parsed.get("errorMessages")
    fields = parsed.get("errors")
    parts = [str(m) for m in messages if m] if isinstance(messages, list) else []
    if isinstance(fields, dict):
        parts.extend(f"{name}: {message}" for name, message in fields.items())
    return parts
