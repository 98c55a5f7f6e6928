"""Outbox decisions: what happens to a job after it failed, and how calls to one target are paced.

Pure: the worker passes in the attempt count, the failure, a random number for jitter and the time;
the store carries the decision out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class JobState(StrEnum):
    """Where a job is in its life; only `pending` and `running` jobs are ever claimed."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"  # dead-lettered: out of attempts, or a failure that retrying cannot fix
    DISCARDED = "discarded"  # an operator gave up on it


class BacklogState(StrEnum):
    """The `state` label of `recoverlink_outbox_jobs`."""

    DUE = "due"  # waiting for its first run, or running it
    RETRYING = "retrying"  # failed at least once and will be tried again
    DEAD = "dead"


def backlog_state(state: JobState, has_failed: bool) -> BacklogState | None:
    """How a job counts in the backlog gauge; None for finished jobs."""
    if state is JobState.DEAD:
        return BacklogState.DEAD
    if state in (JobState.PENDING, JobState.RUNNING):
        return BacklogState.RETRYING if has_failed else BacklogState.DUE
    return None


@dataclass(frozen=True)
class JobFailure:
    """Why one run failed, as the adapter classified it."""

    message: str
    reason: str  # bounded: timeout, connect, http_503, bad_response, lease_expired, ...
    retryable: bool
    retry_after_seconds: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped, for at most `max_attempts` runs."""

    max_attempts: int
    initial: timedelta
    maximum: timedelta

    def backoff(self, attempt: int, jitter: float) -> timedelta:
        """The wait after failed run number `attempt` (1-based); `jitter` in [0, 1) spreads it over
        [half, full] of the exponential step, so workers that failed together do not retry together."""
        # Double only while below the cap: initial * 2**(attempt - 1) overflows a timedelta for late
        # attempts (backoff_initial of an hour, max_attempts up to 100).
        step = self.initial
        for _ in range(attempt - 1):
            if step >= self.maximum:
                break
            step *= 2
        return min(step, self.maximum) * (0.5 + jitter / 2)


@dataclass(frozen=True)
class RetryAt:
    due_at: datetime


@dataclass(frozen=True)
class DeadLetter:
    why: str


def after_failure(
    policy: RetryPolicy, attempts: int, failure: JobFailure, jitter: float, now: datetime
) -> RetryAt | DeadLetter:
    """Retry with backoff (never sooner than the remote's Retry-After), or dead-letter the job."""
    if not failure.retryable:
        return DeadLetter(f"not retryable ({failure.reason})")
    if attempts >= policy.max_attempts:
        return DeadLetter(f"gave up after {attempts} attempts ({failure.reason})")
    wait = policy.backoff(attempts, jitter)
    if failure.retry_after_seconds is not None:
        wait = max(wait, timedelta(seconds=failure.retry_after_seconds))
    return RetryAt(now + wait)


class TokenBucket:
    """A rate limit: `per_second` on average, `burst` at once. Time is passed in (monotonic seconds)."""

    def __init__(self, per_second: float, burst: int) -> None:
        self.per_second = per_second
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at: float | None = None

    def take(self, now: float) -> float:
        """Take a token and return 0, or return the seconds until one is available (nothing taken)."""
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.per_second
