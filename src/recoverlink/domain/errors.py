"""The error tree of recoverlink. A leaf module: it imports nothing from the package.

RecoverlinkError
├── InputError                 4xx: the caller sent something that will never succeed
│   ├── PayloadInvalid         400 (field names the path, e.g. "alerts.2.startsAt")
│   ├── PayloadTooLarge        413
│   ├── Unauthorized           401
│   ├── Forbidden              403
│   ├── NotFound               404
│   └── StateConflict          409: not in this state (`current`, what is `allowed`)
│       ├── TransitionNotAllowed   a recovery's move (the allowed targets)
│       └── JobStateConflict       an operator's retry or discard of an outbox job
├── ConfigError                a config, catalog or rules file is wrong (path, line, col, hint)
│   └── ConfigErrors           several of them at once
├── DependencyError            a remote dependency failed (retryable, reason)
│   ├── ImpactSourceError      an impact source (Prometheus, HTTP lookup) failed
│   ├── ItsmError              the ITSM tool (ServiceNow, Jira, Request Tracker) failed
│   └── ActionError            a CX handoff action (agent desktop, messaging, CRM, chat...) failed
└── StoreUnavailable           503: the store could not commit; the caller should retry
"""

from __future__ import annotations

from collections.abc import Sequence


class RecoverlinkError(Exception):
    """Base of every error recoverlink raises on purpose."""

    code = "recoverlink-error"


class InputError(RecoverlinkError):
    """The request is wrong and sending it again will not help."""

    code = "input-error"
    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class PayloadInvalid(InputError):
    code = "payload-invalid"
    status = 400


class PayloadTooLarge(InputError):
    code = "payload-too-large"
    status = 413


class Unauthorized(InputError):
    code = "unauthorized"
    status = 401


class Forbidden(InputError):
    code = "forbidden"
    status = 403


class NotFound(InputError):
    code = "not-found"
    status = 404


class StateConflict(InputError):
    """The thing is not in a state that allows the request: `current`, and what is `allowed`."""

    code = "state-conflict"
    status = 409
    current: str
    allowed: tuple[str, ...]


class JobStateConflict(StateConflict):
    """An outbox job cannot be retried or discarded in its state; `allowed` lists the states it could."""

    code = "job-state-conflict"

    def __init__(self, job_id: int, current: str, action: str, allowed: Sequence[str]) -> None:
        self.job_id = job_id
        self.current = str(current)
        self.allowed = tuple(str(state) for state in allowed)
        super().__init__(
            f"job {job_id} is {self.current}: only a job that is {' or '.join(self.allowed)} can be {action}"
        )


class TransitionNotAllowed(StateConflict):
    """A recovery cannot take this event or move in its current state; `allowed` says where it can go.

    `requested` is the target state of an operator move, else the event kind. States are plain strings
    here so that this module stays a leaf.
    """

    code = "transition-not-allowed"
    status = 409

    def __init__(
        self,
        recovery_id: str | None,
        current: str,
        requested: str,
        allowed: Sequence[str],
        reason: str | None = None,
    ) -> None:
        self.recovery_id = recovery_id
        self.current = str(current)
        self.requested = str(requested)
        self.allowed = tuple(str(target) for target in allowed)
        self.reason = reason
        super().__init__(self.render())

    def render(self) -> str:
        """Say what was refused, why, and which targets the recovery can be moved to instead."""
        which = f"recovery {self.recovery_id}" if self.recovery_id else "the recovery"
        why = f": {self.reason}" if self.reason else ""
        targets = ", ".join(self.allowed) or "none"
        return (
            f"{self.requested} is not allowed for {which} in state {self.current}{why}; "
            f"allowed targets: {targets}"
        )


class ConfigError(RecoverlinkError):
    """One problem in a config, catalog or rules file, printed as `file:line:col: message`."""

    code = "config-invalid"

    def __init__(
        self,
        path: str,
        message: str,
        line: int | None = None,
        col: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = path
        self.message = message
        self.line = line
        self.col = col
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        """The `file:line:col: message (hint: ...)` form that editors and CI logs understand."""
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        text = f"{where}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class ConfigErrors(RecoverlinkError):
    """Every problem found in one validation pass, so a user fixes them all in one go."""

    code = "config-invalid"

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(e.render() for e in self.errors))


class DependencyError(RecoverlinkError):
    """A remote system failed; `retryable` says whether trying again may help. `reason` is a bounded
    label (timeout, connect, http_503, bad_response, ...); `retry_after_seconds` is what the remote
    asked for (a `Retry-After` header), if anything."""

    code = "dependency-failed"

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        reason: str,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.reason = reason
        self.retry_after_seconds = retry_after_seconds


class ImpactSourceError(DependencyError):
    """An impact source (a PromQL query, an HTTP lookup) failed."""

    code = "impact-source-failed"


class ItsmError(DependencyError):
    """A call to the ITSM tool failed; `reason` is a bounded label (timeout, connect, http_429,
    not_json, ...), also the `outcome` of `recoverlink_itsm_requests_total`."""

    code = "itsm-failed"


class ActionError(DependencyError):
    """A CX handoff action could not be sent or was refused; `reason` is a bounded label (timeout,
    connect, http_503, template, host_not_allowed, ...), also the `outcome` of
    `recoverlink_actions_total`."""

    code = "action-failed"


class StoreUnavailable(RecoverlinkError):
    """The database could not be reached or could not commit; answer 503 so callers retry."""

    code = "store-unavailable"
    status = 503
