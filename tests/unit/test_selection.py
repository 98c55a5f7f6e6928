"""The matcher index only pre-filters: the lists it hands out are, in order and once each, a superset of
the lists whose matchers all match."""

from __future__ import annotations

import re
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from recoverlink.domain.matchers import Matcher, MatchType, matches_all, parse_matchers
from recoverlink.domain.selection import MatcherIndex

LABELS = ("alertname", "service", "env", "job")
ALPHABET = "ab.-"


def index(*texts: str) -> MatcherIndex:
    return MatcherIndex.build([parse_matchers(text) for text in texts])


def test_equality_and_alternatives_are_filed_under_their_values() -> None:
    idx = index('alertname="Down"', 'severity=~"critical|major"', 'env!="dev"')
    assert idx.always == (2,)
    assert list(idx.candidates({"alertname": "Down", "severity": "major"})) == [0, 1, 2]
    assert list(idx.candidates({"alertname": "Up", "severity": "info"})) == [2]


def test_wildcard_regexes_are_filed_under_their_literal_prefixes() -> None:
    idx = index('service=~"svc-04.*"', 'alertname=~"Disk.*|Node.+"', 'instance=~"10\\.1\\..*"')
    assert idx.always == ()
    assert list(idx.candidates({"service": "svc-0421", "alertname": "NodeDown"})) == [0, 1]
    assert list(idx.candidates({"service": "svc-0521", "instance": "10.1.2.3:9100"})) == [2]
    assert list(idx.candidates({"service": "svc-0", "alertname": "Disk"})) == [1]
    assert list(idx.candidates({})) == []


def test_exact_values_are_preferred_over_prefixes() -> None:
    idx = index('service=~"svc-.*", alertname="Down"')
    assert list(idx.candidates({"service": "svc-1", "alertname": "Up"})) == []
    assert list(idx.candidates({"service": "other", "alertname": "Down"})) == [0]


def test_nested_prefixes_give_a_list_once() -> None:
    idx = index('alertname=~"Disk.*|DiskIO.*"', 'alertname=~"DiskIO.*"')
    assert list(idx.candidates({"alertname": "DiskIOSaturation"})) == [0, 1]


def test_regexes_without_a_certain_prefix_are_tried_on_every_alert() -> None:
    idx = index(
        'service=~".*-api"', 'service=~"(a|b).*"', 'service=~"a[bc].*"', 'service=~"a.*b"', 'job=~"x|.*"'
    )
    assert idx.always == (0, 1, 2, 3, 4)
    assert list(idx.candidates({"service": "zzz"})) == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------- property: index == brute force

_literal = st.text(ALPHABET, max_size=3)


@st.composite
def matchers(draw: st.DrawFn) -> Matcher:
    name = draw(st.sampled_from(LABELS))
    kind = draw(st.sampled_from(("eq", "ne", "alternatives", "prefixes", "other", "nre")))
    if kind in ("eq", "ne"):
        return Matcher(name, MatchType.EQUAL if kind == "eq" else MatchType.NOT_EQUAL, draw(_literal))
    if kind == "alternatives":  # plain alternatives, possibly with "" among them
        values = draw(st.lists(st.text("ab-", max_size=3), min_size=1, max_size=3))
        return Matcher(name, MatchType.REGEX, "|".join(values))
    if kind == "prefixes":  # `lit.*|lit.+|lit`, escaped, possibly an empty literal
        parts = draw(st.lists(st.tuples(_literal, st.sampled_from(("", ".*", ".+"))), min_size=1, max_size=3))
        return Matcher(name, MatchType.REGEX, "|".join(re.escape(lit) + tail for lit, tail in parts))
    pattern = draw(st.sampled_from((".*", ".+", "a.*b", "(a|b).*", "a[b.].*", ".*-", "a.*?", "a\\..*|b")))
    return Matcher(name, MatchType.REGEX if kind == "other" else MatchType.NOT_REGEX, pattern)


matcher_lists = st.lists(st.lists(matchers(), max_size=3), max_size=12)
label_sets = st.dictionaries(st.sampled_from(LABELS), st.text(ALPHABET, max_size=4), max_size=4)


def brute_force(lists: Sequence[Sequence[Matcher]], labels: dict[str, str]) -> list[int]:
    return [position for position, matchers in enumerate(lists) if matches_all(matchers, labels)]


@settings(max_examples=400)
@given(matcher_lists, st.lists(label_sets, min_size=1, max_size=5))
def test_candidates_are_sorted_unique_and_cover_every_match(
    lists: list[list[Matcher]], alerts: list[dict[str, str]]
) -> None:
    idx = MatcherIndex.build(lists)
    for labels in alerts:
        candidates = list(idx.candidates(labels))
        assert candidates == sorted(set(candidates))
        assert set(brute_force(lists, labels)) <= set(candidates)
        assert [p for p in candidates if matches_all(lists[p], labels)] == brute_force(lists, labels)
