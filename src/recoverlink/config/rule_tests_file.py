"""The YAML shape of rule unit tests (`rules/tests/*.yaml`), as `promtool test rules` has for Prometheus."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from recoverlink.config.base import Strict


class TestAlert(Strict):
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)


class Expectation(Strict):
    """What the enrichment must say; only the keys given are compared (fields/labels as subsets)."""

    service: str | None = None
    owner: str | None = None
    tier: str | None = None
    priority: str | None = None
    impact: int | None = None
    urgency: int | None = None
    correlation_key: str | None = None
    resolution: str | None = None
    journeys: list[str] | None = None
    segments: list[str] | None = None
    matched_rules: list[str] | None = None
    actions: list[str] | None = None  # "rule/action" of the CX handoffs, in order
    misses: list[str] | None = None
    fields: dict[str, str] | None = None
    labels: dict[str, str] | None = None

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class RuleTest(Strict):
    name: str = Field(min_length=1)
    alert: TestAlert
    expect: Expectation


class RuleTestFile(Strict):
    tests: list[RuleTest] = Field(min_length=1)
