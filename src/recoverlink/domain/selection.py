"""An index over matcher lists, so finding the rules or selectors an alert may match does not grow
linearly with their number: each list is filed under one label value it requires (`team="payments"`,
`severity=~"critical|major"`) or, failing that, under a fixed prefix the value must start with
(`service=~"svc-04.*"`, `alertname=~"Disk.*|Node.*"`), when it has one.

Filing is only a pre-filter: every candidate is still checked against all its matchers, so a list filed
too broadly costs time, never a wrong answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain

from recoverlink.domain.matchers import Matcher

# Labels most rules name; filing under them spreads the lists over many small buckets.
_PREFERRED = ("alertname", "service", "team", "job", "severity")

_Key = tuple[bool, str, frozenset[str]]  # (by prefix, label, values or prefixes)


def _rank(name: str) -> int:
    return _PREFERRED.index(name) if name in _PREFERRED else len(_PREFERRED)


def _index_key(matchers: Sequence[Matcher]) -> _Key | None:
    """(by_prefix, label, values) such that any alert matching all matchers has a value for `label`
    that is one of `values` (or, by prefix, starts with one of them). Exact values beat prefixes; then
    the preferred label; then fewer values (or, for prefixes, a longer shortest prefix)."""
    best: _Key | None = None
    best_score: tuple[int, int, int] | None = None
    for matcher in matchers:
        values = matcher.literal_values()
        if values and "" not in values:
            key, score = (False, matcher.name, values), (0, _rank(matcher.name), len(values))
        else:
            prefixes = matcher.literal_prefixes()
            if not prefixes:
                continue
            shortest = min(len(p) for p in prefixes)
            key, score = (True, matcher.name, prefixes), (1, _rank(matcher.name), -shortest)
        if best_score is None or score < best_score:
            best, best_score = key, score
    return best


@dataclass(frozen=True)
class PrefixBuckets:
    """Positions filed by a prefix of one label's value; `lengths` are the distinct prefix lengths."""

    lengths: tuple[int, ...]
    by_prefix: Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class MatcherIndex:
    """Positions of matcher lists, filed by a required (label, value), by a required prefix of a label's
    value, or kept for every alert."""

    by_label_value: Mapping[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)
    always: tuple[int, ...] = ()
    by_label_prefix: Mapping[str, PrefixBuckets] = field(default_factory=dict)

    @classmethod
    def build(cls, matcher_lists: Sequence[Sequence[Matcher]]) -> MatcherIndex:
        buckets: dict[tuple[str, str], list[int]] = {}
        prefixed: dict[str, dict[str, list[int]]] = {}
        always: list[int] = []
        for position, matchers in enumerate(matcher_lists):
            key = _index_key(matchers)
            if key is None:
                always.append(position)
                continue
            by_prefix, name, values = key
            for value in sorted(values):
                if by_prefix:
                    prefixed.setdefault(name, {}).setdefault(value, []).append(position)
                else:
                    buckets.setdefault((name, value), []).append(position)
        by_label_prefix = {
            name: PrefixBuckets(
                tuple(sorted({len(p) for p in table})), {p: tuple(v) for p, v in table.items()}
            )
            for name, table in prefixed.items()
        }
        return cls({k: tuple(v) for k, v in buckets.items()}, tuple(always), by_label_prefix)

    def candidates(self, labels: Mapping[str, str]) -> Sequence[int]:
        """Positions that may match these labels, in their original order, each once."""
        hits: list[tuple[int, ...]] = []
        if self.always:
            hits.append(self.always)
        by_label_value = self.by_label_value
        for item in labels.items():
            bucket = by_label_value.get(item)
            if bucket:
                hits.append(bucket)
        for name, prefixes in self.by_label_prefix.items():
            value = labels.get(name)
            if not value:
                continue
            by_prefix = prefixes.by_prefix
            for length in prefixes.lengths:
                if length > len(value):
                    break
                bucket = by_prefix.get(value[:length])
                if bucket:
                    hits.append(bucket)
        if not hits:
            return ()
        if len(hits) == 1:
            return hits[0]
        # Each list is filed under one label, under values or non-nested prefixes of which an alert's
        # value hits at most one: the buckets hit are disjoint, so merging them sorted loses nothing.
        return sorted(chain.from_iterable(hits))
