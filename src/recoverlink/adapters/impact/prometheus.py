"""An impact source that is one instant PromQL query (`GET /api/v1/query`, REFERENCE.md 2.1).

The samples' values add up to the source's count; the labels the config names become facts,
taken from the samples whose value is above zero. An empty vector is a normal reading: count 0,
nobody affected. Prometheus' own error answers (`"status": "error"`) are classified by their
`errorType`: bad PromQL will not get better, a timed-out or overloaded query may.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recoverlink.adapters.http_calls import Answer, Caller, excerpt
from recoverlink.config.impact import host_of
from recoverlink.domain.errors import DependencyError, ImpactSourceError
from recoverlink.domain.impact import FactKind, ImpactReading, bounded_facts
from recoverlink.domain.rules import Template

QUERY_PATH = "/api/v1/query"
# errorType values that mean "this query, now": a retry may succeed (`bad_data` never will).
_RETRYABLE_ERROR_TYPES = ("timeout", "canceled", "unavailable", "execution")

Sample = tuple[Mapping[str, str], float]


@dataclass(frozen=True)
class PrometheusImpactSource:
    """A configured PromQL source; `read` renders the query over the recovery's context and runs it."""

    name: str
    server_url: str
    query: Template
    count: str
    fact_labels: Mapping[str, FactKind]
    thresholds: Mapping[str, float]
    repeat_contacts_count: str | None
    caller: Caller

    @property
    def target(self) -> str:
        """The Prometheus server's host[:port]: every PromQL source shares its rate limit."""
        return host_of(self.server_url)

    def read(self, context: Mapping[str, Any]) -> ImpactReading:
        query = self.caller.render("query", self.query, context)
        url = self.server_url.rstrip("/") + QUERY_PATH
        answer = self.caller.send(self.caller.prepare("GET", url, params={"query": query}))
        samples = [s for s in self._samples(answer) if math.isfinite(s[1])]
        return ImpactReading(
            counts={self.count: float(sum(value for _, value in samples))},
            facts=self._facts(samples),
        )

    def _facts(self, samples: list[Sample]) -> dict[FactKind, tuple[str, ...]]:
        found: dict[FactKind, list[str]] = {}
        for metric, value in samples:
            if value <= 0:
                continue
            for label, kind in self.fact_labels.items():
                if label in metric:
                    found.setdefault(kind, []).append(metric[label])
        return bounded_facts(found)

    def _samples(self, answer: Answer) -> list[Sample]:
        document = self.caller.json_document(answer) if answer.ok else _json_or_none(answer.body)
        if isinstance(document, dict) and document.get("status") == "error":
            raise self._query_failure(answer, document)
        if not answer.ok:
            raise self.caller.status_failure(answer)
        if not isinstance(document, dict) or document.get("status") != "success":
            raise self._bad("the answer is not a Prometheus API envelope")
        return self._result(document.get("data"))

    def _result(self, data: object) -> list[Sample]:
        if not isinstance(data, dict):
            raise self._bad("the answer has no 'data' object")
        kind, result = data.get("resultType"), data.get("result")
        if kind == "vector" and isinstance(result, list):
            return [sample for item in result if (sample := self._vector_sample(item)) is not None]
        if kind == "scalar":
            return [({}, self._value(result))]
        raise self._bad(f"expected an instant vector or a scalar, got resultType {kind!r}")

    def _vector_sample(self, item: object) -> Sample | None:
        if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
            raise self._bad("a vector element has no 'metric' object")
        if "value" not in item and "histogram" in item:
            return None  # a native histogram sample has no single value to add up
        metric = {str(k): str(v) for k, v in item["metric"].items()}
        return metric, self._value(item.get("value"))

    def _value(self, pair: object) -> float:
        """A `[timestamp, "value"]` pair's value; Prometheus writes values as strings ("NaN", "+Inf")."""
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str):
            raise self._bad(f'a sample is not a [timestamp, "value"] pair: {excerpt(repr(pair))}')
        try:
            return float(pair[1])
        except ValueError as exc:
            raise self._bad(f"a sample value is not a number: {excerpt(pair[1])}") from exc

    def _query_failure(self, answer: Answer, document: Mapping[str, Any]) -> DependencyError:
        """Classify Prometheus' `{"status": "error", "errorType": ..., "error": ...}`."""
        error_type = str(document.get("errorType", ""))
        text = excerpt(str(document.get("error", ""))) or "no error text"
        if error_type == "bad_data":
            return self.caller.error(f"Prometheus refused the query: {text}", "query_error")
        if error_type in _RETRYABLE_ERROR_TYPES:
            return ImpactSourceError(
                f"impact source {self.name}: the query failed ({error_type}): {text}",
                retryable=True,
                reason=f"query_{error_type}",
                retry_after_seconds=self.caller.retry_after(answer),
            )
        if answer.ok:  # an error envelope with a 2xx status: not something a retry fixes
            return self.caller.error(f"the query failed ({error_type or 'unknown'}): {text}", "query_error")
        # internal, not_found or a newer errorType: the HTTP status says whether a retry may help.
        return self.caller.status_failure(answer, detail=f"{error_type or 'error'}: {text}")

    def _bad(self, what: str) -> DependencyError:
        return self.caller.error(what, "bad_response")


def _json_or_none(body: bytes) -> Any:
    """An error answer's JSON, if it has any: a proxy's HTML 503 is classified by its status alone."""
    try:
        return json.loads(body)
    except ValueError:
        return None
