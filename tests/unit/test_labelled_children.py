"""The web layer's cache of labelled metric children counts into the very samples `labels()` does."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from recoverlink.web.runtime import LabelledChildren


def test_a_cached_child_is_the_metrics_own_child_for_those_labels() -> None:
    registry = CollectorRegistry()
    counter = Counter("rl_test_deliveries_total", "test", ["outcome"], registry=registry)
    children = LabelledChildren()
    children.of(counter, outcome="accepted").inc()
    children.of(counter, outcome="accepted").inc(2)
    counter.labels(outcome="duplicate").inc()
    assert children.of(counter, outcome="accepted") is counter.labels(outcome="accepted")
    assert registry.get_sample_value("rl_test_deliveries_total", {"outcome": "accepted"}) == 3
    assert registry.get_sample_value("rl_test_deliveries_total", {"outcome": "duplicate"}) == 1


def test_children_of_two_metrics_with_the_same_labels_stay_apart() -> None:
    registry = CollectorRegistry()
    first = Histogram("rl_test_a_seconds", "test", ["code"], registry=registry)
    second = Histogram("rl_test_b_seconds", "test", ["code"], registry=registry)
    children = LabelledChildren()
    children.of(first, code="200").observe(0.5)
    assert registry.get_sample_value("rl_test_a_seconds_count", {"code": "200"}) == 1
    assert registry.get_sample_value("rl_test_b_seconds_count", {"code": "200"}) is None
    assert children.of(second, code="200") is not children.of(first, code="200")
