"""An index over matcher lists, so finding the rules or selectors an alert may match does not grow
linearly with their number: each list is filed under one label value it requires, when it has one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from recoverlink.domain.matchers import Matcher

# Labels most rules name; filing under them spreads the lists over many small buckets.
_PREFERRED = ("alertname", "service", "team", "job", "severity")


def _index_values(matchers: Sequence[Matcher]) -> tuple[str, frozenset[str]] | None:
    """A (label, values) pair such that any alert matching all matchers has one of the values."""
    best: tuple[str, frozenset[str]] | None = None
    best_rank = len(_PREFERRED) + 1
    for matcher in matchers:
        values = matcher.literal_values()
        if not values or "" in values:
            continue
        rank = _PREFERRED.index(matcher.name) if matcher.name in _PREFERRED else len(_PREFERRED)
        if best is None or rank < best_rank or (rank == best_rank and len(values) < len(best[1])):
            best, best_rank = (matcher.name, values), rank
    return best


@dataclass(frozen=True)
class MatcherIndex:
    """Positions of matcher lists, filed by a required (label, value) or kept for every alert."""

    by_label_value: Mapping[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)
    always: tuple[int, ...] = ()

    @classmethod
    def build(cls, matcher_lists: Sequence[Sequence[Matcher]]) -> MatcherIndex:
        buckets: dict[tuple[str, str], list[int]] = {}
        always: list[int] = []
        for position, matchers in enumerate(matcher_lists):
            key = _index_values(matchers)
            if key is None:
                always.append(position)
                continue
            name, values = key
            for value in values:
                buckets.setdefault((name, value), []).append(position)
        return cls({k: tuple(v) for k, v in buckets.items()}, tuple(always))

    def candidates(self, labels: Mapping[str, str]) -> list[int]:
        """Positions that may match these labels, in their original order."""
        found = set(self.always)
        for item in labels.items():
            bucket = self.by_label_value.get(item)
            if bucket:
                found.update(bucket)
        return sorted(found)
