"""Run SRE-written rule unit tests against the loaded catalog and rules, and show a diff on failure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recoverlink.config.rule_tests_file import RuleTest, RuleTestFile
from recoverlink.config.yamlfile import load_yaml, locate, validate
from recoverlink.domain.enrichment import AlertFacts, Enricher, enrichment_record
from recoverlink.domain.errors import ConfigError, ConfigErrors


@dataclass(frozen=True)
class TestCase:
    test: RuleTest
    path: str
    line: int | None


@dataclass(frozen=True)
class TestFailure:
    case: TestCase
    differences: tuple[tuple[str, Any, Any], ...]  # (key, expected, got)

    def render(self) -> str:
        where = f"{self.case.path}:{self.case.line}" if self.case.line else self.case.path
        lines = [f"FAILED {where}: {self.case.test.name}"]
        for key, expected, got in self.differences:
            lines.append(f"  {key}:")
            lines.append(f"    - expected: {expected!r}")
            lines.append(f"    + got:      {got!r}")
        return "\n".join(lines)


def load_tests(paths: Sequence[Path]) -> list[TestCase]:
    cases: list[TestCase] = []
    errors: list[ConfigError] = []
    for path in paths:
        try:
            node = load_yaml(path)
            model = validate(RuleTestFile, node, str(path))
        except ConfigErrors as exc:
            errors.extend(exc.errors)
            continue
        for i, test in enumerate(model.tests):
            cases.append(TestCase(test, str(path), locate(node, ("tests", i))[0]))
    if errors:
        raise ConfigErrors(errors)
    return cases


def run_test(enricher: Enricher, case: TestCase) -> TestFailure | None:
    alert = case.test.alert
    record = enrichment_record(enricher.enrich(AlertFacts(alert.labels, alert.annotations)))
    differences = []
    for key, expected in case.test.expect.given().items():
        got = record.get(key)
        if key in ("fields", "labels"):
            got = {k: (got or {}).get(k) for k in expected}
        if got != expected:
            differences.append((key, expected, got))
    return TestFailure(case, tuple(differences)) if differences else None
