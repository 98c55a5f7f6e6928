"""A fake impact source: answers with the readings (or errors) a test queues, and keeps every context."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recoverlink.domain.errors import ImpactSourceError
from recoverlink.domain.impact import FactKind, ImpactReading


@dataclass
class FakeImpactSource:
    """Implements `ImpactSource`. The last queued answer repeats once the queue is down to one."""

    name: str = "checkout-failures"
    target: str = "prometheus.test:9090"
    thresholds: Mapping[str, float] = field(default_factory=lambda: {"checkout_failures_per_minute": 1.0})
    repeat_contacts_count: str | None = None
    answers: list[ImpactReading | ImpactSourceError] = field(default_factory=list)
    contexts: list[Mapping[str, Any]] = field(default_factory=list)

    def answer(self, *answers: ImpactReading | ImpactSourceError) -> FakeImpactSource:
        self.answers[:] = list(answers)
        return self

    def read(self, context: Mapping[str, Any]) -> ImpactReading:
        self.contexts.append(context)
        if not self.answers:
            raise AssertionError(f"{self.name}: the test queued no answer")
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, ImpactSourceError):
            raise answer
        return answer


def failures(per_minute: float, *segments: str) -> ImpactReading:
    """A checkout-failures reading: `per_minute` failures, in these segments."""
    facts = {FactKind.SEGMENTS: tuple(segments)} if segments else {}
    return ImpactReading(counts={"checkout_failures_per_minute": per_minute}, facts=facts)


def unreachable(name: str = "checkout-failures") -> ImpactSourceError:
    return ImpactSourceError(
        f"impact source {name}: cannot connect to prometheus.test:9090 (ConnectionRefused)",
        retryable=True,
        reason="connect",
    )
