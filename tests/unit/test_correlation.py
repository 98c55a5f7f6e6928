"""Which recovery a new episode joins: same key, reopen, dependency symptom, storm, or a new one."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from recoverlink.domain.correlation import (
    Candidates,
    CorrelationOutcome,
    EpisodeToPlace,
    RecoveryCandidate,
    open_or_attach_recovery,
)
from recoverlink.domain.rules import StormScope, StormThreshold

NOW = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)

EPISODE = EpisodeToPlace(
    correlation_key="service/checkout-api",
    service_ref="component:default/checkout-api",
    depends_on=("resource:default/payments-db",),
    team="payments",
    fired_at=NOW,
    reopen_window=timedelta(hours=1),
    storm=StormThreshold(3, timedelta(minutes=5), StormScope.TEAM),
)


def candidate(id_: int, **changes: object) -> RecoveryCandidate:
    base = RecoveryCandidate(
        id=id_,
        correlation_key="service/checkout-api",
        service_ref="component:default/checkout-api",
        team="payments",
        is_open=True,
        opened_at=NOW - timedelta(minutes=10),
        fix_deployed_at=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_episode_with_the_key_of_an_open_recovery_attaches_to_it() -> None:
    decision = open_or_attach_recovery(EPISODE, Candidates(same_key=[candidate(7)]))
    assert (decision.outcome, decision.recovery_id) == (CorrelationOutcome.ATTACHED, 7)


def test_refire_within_the_reopen_window_reopens_the_same_recovery() -> None:
    fixed = candidate(7, is_open=False, fix_deployed_at=NOW - timedelta(minutes=59))
    decision = open_or_attach_recovery(EPISODE, Candidates(same_key=[fixed]))
    assert (decision.outcome, decision.recovery_id) == (CorrelationOutcome.REOPENED, 7)


def test_refire_after_the_window_opens_a_new_recovery_linked_to_the_old_one() -> None:
    fixed = candidate(7, is_open=False, fix_deployed_at=NOW - timedelta(minutes=61))
    decision = open_or_attach_recovery(EPISODE, Candidates(same_key=[fixed]))
    assert decision.outcome is CorrelationOutcome.OPENED
    assert decision.recovery_id is None
    assert decision.linked_to == 7


def test_alert_of_a_dependent_service_joins_the_dependency_as_a_symptom() -> None:
    database = candidate(3, correlation_key="service/payments-db", service_ref="resource:default/payments-db")
    decision = open_or_attach_recovery(EPISODE, Candidates(dependencies=[database]))
    assert (decision.outcome, decision.recovery_id) == (CorrelationOutcome.SYMPTOM, 3)
    assert decision.reason == "downstream symptom of resource:default/payments-db"


def test_dependency_opened_long_ago_is_not_blamed() -> None:
    database = candidate(3, service_ref="resource:default/payments-db", opened_at=NOW - timedelta(hours=2))
    decision = open_or_attach_recovery(EPISODE, Candidates(dependencies=[database]))
    assert decision.outcome is CorrelationOutcome.OPENED


def test_same_key_wins_over_a_dependency() -> None:
    database = candidate(3, service_ref="resource:default/payments-db")
    decision = open_or_attach_recovery(EPISODE, Candidates(same_key=[candidate(7)], dependencies=[database]))
    assert decision.recovery_id == 7


def test_storm_attaches_further_episodes_to_the_storm_parent() -> None:
    parent = candidate(9, correlation_key="service/other", is_storm_parent=True)
    decision = open_or_attach_recovery(EPISODE, Candidates(storm_parent=parent, recent_openings=3))
    assert (decision.outcome, decision.recovery_id) == (CorrelationOutcome.STORM, 9)
    assert decision.reason == "storm: more than 3 new recoveries per team"


def test_first_recovery_over_the_storm_threshold_becomes_the_parent() -> None:
    decision = open_or_attach_recovery(EPISODE, Candidates(recent_openings=3))
    assert decision.outcome is CorrelationOutcome.OPENED
    assert decision.becomes_storm_parent


def test_below_the_storm_threshold_a_new_recovery_opens() -> None:
    decision = open_or_attach_recovery(EPISODE, Candidates(recent_openings=2))
    assert decision.outcome is CorrelationOutcome.OPENED
    assert not decision.becomes_storm_parent


def test_without_storm_settings_there_is_never_a_storm() -> None:
    decision = open_or_attach_recovery(replace(EPISODE, storm=None), Candidates(recent_openings=10_000))
    assert decision.outcome is CorrelationOutcome.OPENED
