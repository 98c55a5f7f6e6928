"""Outbox decisions: backoff with jitter, Retry-After, dead-lettering, the backlog gauge's states and
the token bucket that paces calls to one target."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recoverlink.domain.outbox import (
    BacklogState,
    DeadLetter,
    JobFailure,
    JobState,
    RetryAt,
    RetryPolicy,
    TokenBucket,
    after_failure,
    backlog_state,
)

NOW = datetime(2026, 11, 22, 18, 10, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=5, initial=timedelta(seconds=10), maximum=timedelta(seconds=60))
FULL = 0.999999999  # the largest jitter: the wait is (almost) the whole step
TIMEOUT = JobFailure("read timed out after 5s", "timeout", retryable=True)


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


# --- backoff -----------------------------------------------------------------------------------


def test_backoff_doubles_after_each_failed_run_until_the_maximum() -> None:
    steps = [POLICY.backoff(attempt, FULL) for attempt in range(1, 7)]
    assert steps == [seconds(10), seconds(20), seconds(40), seconds(60), seconds(60), seconds(60)]


def test_jitter_spreads_the_wait_over_half_to_all_of_the_step() -> None:
    assert POLICY.backoff(2, 0.0) == seconds(10), "no jitter: half of the 20 s step"
    assert POLICY.backoff(2, 0.5) == seconds(15)
    assert POLICY.backoff(2, FULL) == seconds(20)
    assert POLICY.backoff(9, 0.0) == seconds(30), "half of the capped step"


def test_backoff_of_a_late_attempt_is_the_maximum_even_with_a_long_initial_wait() -> None:
    # max_attempts may be up to 100 and backoff_initial hours: 2**99 steps do not fit a timedelta.
    policy = RetryPolicy(max_attempts=100, initial=timedelta(hours=1), maximum=timedelta(hours=6))
    assert [policy.backoff(attempt, 0.0) for attempt in (36, 41, 100)] == [timedelta(hours=3)] * 3


# --- after a failure ---------------------------------------------------------------------------


def test_a_retryable_failure_is_retried_after_the_backoff() -> None:
    decision = after_failure(POLICY, 2, TIMEOUT, 0.5, NOW)
    assert decision == RetryAt(NOW + seconds(15))


def test_retry_after_is_honoured_when_longer_than_the_backoff() -> None:
    throttled = JobFailure("429 Too Many Requests", "http_429", retryable=True, retry_after_seconds=120)
    assert after_failure(POLICY, 1, throttled, 0.5, NOW) == RetryAt(NOW + seconds(120))


def test_retry_after_shorter_than_the_backoff_does_not_shorten_it() -> None:
    busy = JobFailure("503 Service Unavailable", "http_503", retryable=True, retry_after_seconds=1)
    assert after_failure(POLICY, 3, busy, 0.0, NOW) == RetryAt(NOW + seconds(20))


def test_a_failure_that_retrying_cannot_fix_is_dead_lettered_at_once_with_its_reason() -> None:
    refused = JobFailure("400 Bad Request: unknown field", "bad_request", retryable=False)
    assert after_failure(POLICY, 1, refused, 0.5, NOW) == DeadLetter("not retryable (bad_request)")


def test_the_last_attempt_is_dead_lettered_with_the_count_and_the_reason() -> None:
    assert isinstance(after_failure(POLICY, 4, TIMEOUT, 0.5, NOW), RetryAt)
    assert after_failure(POLICY, 5, TIMEOUT, 0.5, NOW) == DeadLetter("gave up after 5 attempts (timeout)")


@given(
    attempt=st.integers(1, 100),
    jitter=st.floats(0, 1, exclude_max=True),
    initial_ms=st.integers(1, 86_400_000),
    extra_ms=st.integers(0, 7 * 86_400_000),
    retry_after=st.none() | st.floats(0, 86_400),
)
def test_the_wait_is_within_half_and_all_of_the_capped_step_and_never_below_retry_after(
    attempt: int, jitter: float, initial_ms: int, extra_ms: int, retry_after: float | None
) -> None:
    initial = timedelta(milliseconds=initial_ms)
    policy = RetryPolicy(
        max_attempts=101, initial=initial, maximum=initial + timedelta(milliseconds=extra_ms)
    )
    step = timedelta(milliseconds=min(initial_ms * 2 ** (attempt - 1), initial_ms + extra_ms))
    failure = JobFailure("503", "http_503", retryable=True, retry_after_seconds=retry_after)
    decision = after_failure(policy, attempt, failure, jitter, NOW)
    assert isinstance(decision, RetryAt)
    wait = decision.due_at - NOW
    if retry_after is not None:
        assert wait >= seconds(retry_after) - timedelta(microseconds=1)
    if retry_after is None or seconds(retry_after) <= step / 2:
        assert step / 2 <= wait <= step


# --- the backlog gauge -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "has_failed", "expected"),
    [
        (JobState.PENDING, False, BacklogState.DUE),
        (JobState.RUNNING, False, BacklogState.DUE),
        (JobState.PENDING, True, BacklogState.RETRYING),
        (JobState.RUNNING, True, BacklogState.RETRYING),
        (JobState.DEAD, True, BacklogState.DEAD),
        (JobState.DEAD, False, BacklogState.DEAD),
        (JobState.DONE, False, None),
        (JobState.DONE, True, None),
        (JobState.DISCARDED, True, None),
    ],
)
def test_backlog_state_of_a_job(state: JobState, has_failed: bool, expected: BacklogState | None) -> None:
    assert backlog_state(state, has_failed) is expected


# --- the token bucket --------------------------------------------------------------------------


def test_a_bucket_lets_a_burst_through_then_says_how_long_to_wait() -> None:
    bucket = TokenBucket(per_second=2, burst=3)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(0.5)
    assert bucket.take(100.0) == pytest.approx(0.5), "a refusal takes nothing"


def test_a_bucket_refills_at_its_rate_and_never_beyond_its_burst() -> None:
    bucket = TokenBucket(per_second=2, burst=3)
    for _ in range(3):
        bucket.take(100.0)
    assert bucket.take(100.25) == pytest.approx(0.25), "half a token back after a quarter second"
    assert bucket.take(100.5) == 0.0
    assert bucket.take(100.5) == pytest.approx(0.5)
    # An hour idle refills the bucket to its burst, not to 7200 tokens.
    assert [bucket.take(3700.0) for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(0.5)]


@given(st.lists(st.floats(0, 5), min_size=1, max_size=50))
def test_a_bucket_never_lets_more_through_than_burst_plus_rate_times_elapsed(gaps: list[float]) -> None:
    bucket = TokenBucket(per_second=4, burst=2)
    now, passed = 0.0, 0
    for gap in gaps:
        now += gap
        wait = bucket.take(now)
        assert 0 <= wait <= 1 / 4 + 1e-9
        passed += wait == 0
    assert passed <= 2 + 4 * now + 1e-9
