"""Judging impact readings against thresholds, and keeping impact facts bounded."""

from __future__ import annotations

from recoverlink.domain.impact import (
    MAX_FACT_LENGTH,
    MAX_FACT_VALUES,
    FactKind,
    ImpactReading,
    assess,
    bounded_facts,
    reading_record,
)


def test_count_above_threshold_means_customers_are_affected() -> None:
    reading = ImpactReading(counts={"checkout_failures_per_minute": 12.5})

    assessment = assess(reading, {"checkout_failures_per_minute": 1})

    assert assessment.affected
    assert assessment.breaches == ("checkout_failures_per_minute 12.5 > 1",)
    assert assessment.reading is reading


def test_count_equal_to_threshold_is_not_a_breach() -> None:
    assessment = assess(ImpactReading(counts={"open_cases": 5}), {"open_cases": 5})

    assert not assessment.affected
    assert assessment.breaches == ()


def test_missing_count_is_not_a_breach() -> None:
    reading = ImpactReading(counts={"open_cases": 0})

    assessment = assess(reading, {"open_cases": 3, "repeat_contacts": 0})

    assert not assessment.affected
    assert assessment.breaches == ()


def test_every_breached_threshold_is_listed_in_threshold_order() -> None:
    reading = ImpactReading(counts={"a": 2.0, "b": 0.5, "c": 100.0})

    assessment = assess(reading, {"c": 10, "b": 1, "a": 0.25})

    assert assessment.breaches == ("c 100 > 10", "a 2 > 0.25")


def test_empty_reading_is_unaffected() -> None:
    assert not assess(ImpactReading(), {"failures": 0}).affected


def test_bounded_facts_drop_duplicates_and_blanks_keeping_first_seen_order() -> None:
    facts = bounded_facts(
        {FactKind.SEGMENTS: ["business", " consumer ", "business", "", "  ", None, "consumer"]}
    )

    assert facts == {FactKind.SEGMENTS: ("business", "consumer")}


def test_bounded_facts_take_a_single_value_as_one_fact() -> None:
    assert bounded_facts({FactKind.REGIONS: "eu-west"}) == {FactKind.REGIONS: ("eu-west",)}


def test_bounded_facts_turn_numbers_into_text() -> None:
    assert bounded_facts({FactKind.QUEUES: [7, 2.5]}) == {FactKind.QUEUES: ("7", "2.5")}


def test_bounded_facts_keep_at_most_the_cap_per_kind() -> None:
    values = [f"segment-{i}" for i in range(MAX_FACT_VALUES + 15)]

    facts = bounded_facts({FactKind.SEGMENTS: values})

    assert facts[FactKind.SEGMENTS] == tuple(values[:MAX_FACT_VALUES])


def test_bounded_facts_cut_long_values_and_dedupe_what_remains() -> None:
    long = "x" * (MAX_FACT_LENGTH + 50)

    facts = bounded_facts({FactKind.JOURNEYS: [long, long + "tail"]})

    assert facts == {FactKind.JOURNEYS: ("x" * MAX_FACT_LENGTH,)}


def test_bounded_facts_leave_out_kinds_with_no_values() -> None:
    assert bounded_facts({FactKind.CHANNELS: [], FactKind.INTENTS: [""], FactKind.QUEUES: None}) == {}


def test_reading_record_is_plain_json() -> None:
    reading = ImpactReading(counts={"failures": 3.0}, facts={FactKind.SEGMENTS: ("business",)})

    assert reading_record(reading) == {"counts": {"failures": 3.0}, "facts": {"segments": ["business"]}}
