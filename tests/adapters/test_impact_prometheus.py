"""PromQL impact sources: the query they send, how they read vectors and scalars, how they fail.

The first part answers with `responses`, in the shapes of Prometheus' HTTP API (REFERENCE.md 2.1,
prometheus.io docs/prometheus/latest/querying/api); the last part runs the real `prometheus`
binary scraping an exporter that this test process serves.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from prometheus_client import CollectorRegistry, Gauge
from responses import matchers

from recoverlink.adapters.impact import build_impact_sources
from recoverlink.config.impact import ImpactConfig
from recoverlink.domain.errors import ConfigErrors, ImpactSourceError
from recoverlink.domain.impact import FactKind, ImpactReading, ImpactSource
from tests.support.prometheus import Prometheus, running_prometheus, serving_exporter

PROM = "http://prometheus.test:9090"
QUERY_URL = f"{PROM}/api/v1/query"
QUERY = 'sum by (segment, region) (rl_checkout_failures_per_minute{service="{{ labels.service }}"})'
CONTEXT: dict[str, Any] = {"labels": {"service": "checkout", "severity": "critical"}}
FACTS = {"segment": "segments", "region": "regions"}


@pytest.fixture
def remote() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def impact_config(url: str, sources: dict[str, Any], **server: Any) -> ImpactConfig:
    return ImpactConfig.model_validate({"prometheus": {"url": url, **server}, "sources": sources})


def promql(query: str = QUERY, facts: dict[str, str] | None = None) -> dict[str, Any]:
    """One source definition counting `failures_per_minute`, affected above 1."""
    return {
        "prometheus": {
            "query": query,
            "count": "failures_per_minute",
            "facts": FACTS if facts is None else facts,
        },
        "thresholds": {"failures_per_minute": 1},
    }


def promql_source(
    query: str = QUERY,
    *,
    url: str = PROM,
    facts: dict[str, str] | None = None,
    environ: dict[str, str] | None = None,
    **server: Any,
) -> ImpactSource:
    config = impact_config(url, {"checkout-failures": promql(query, facts)}, **server)
    return build_impact_sources(config, environ or {})["checkout-failures"]


def vector(*samples: tuple[dict[str, str], str]) -> dict[str, Any]:
    result = [{"metric": metric, "value": [1795429719.325, value]} for metric, value in samples]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def api_error(error_type: str, error: str) -> dict[str, Any]:
    return {"status": "error", "errorType": error_type, "error": error}


def failure(source: ImpactSource) -> ImpactSourceError:
    with pytest.raises(ImpactSourceError) as caught:
        source.read(CONTEXT)
    return caught.value


# --- what is sent ------------------------------------------------------------------------------


def test_the_query_is_rendered_from_the_context_and_sent_as_an_instant_query(
    remote: responses.RequestsMock,
) -> None:
    rendered = 'sum by (segment, region) (rl_checkout_failures_per_minute{service="checkout"})'
    remote.get(QUERY_URL, json=vector(), match=[matchers.query_param_matcher({"query": rendered})])

    promql_source().read(CONTEXT)

    assert len(remote.calls) == 1


def test_a_server_url_with_a_path_prefix_keeps_it(remote: responses.RequestsMock) -> None:
    remote.get(f"{PROM}/prometheus/api/v1/query", json=vector())

    assert promql_source(url=f"{PROM}/prometheus/").read(CONTEXT).counts == {"failures_per_minute": 0.0}


def test_the_server_credentials_are_sent_with_every_query(remote: responses.RequestsMock) -> None:
    expected = "Basic " + base64.b64encode(b"impact:pw").decode()
    remote.get(QUERY_URL, json=vector(), match=[matchers.header_matcher({"Authorization": expected})])
    source = promql_source(
        auth={"basic": {"username": "impact", "password": {"env": "PROM_PASSWORD"}}},
        environ={"PROM_PASSWORD": "pw"},
    )

    assert source.read(CONTEXT).counts == {"failures_per_minute": 0.0}


def test_the_server_secret_is_read_once_for_every_promql_source() -> None:
    config = impact_config(PROM, {"a": promql(), "b": promql()}, auth={"bearer": {"env": "PROM_TOKEN"}})

    with pytest.raises(ConfigErrors) as caught:
        build_impact_sources(config, {})

    assert [e.render() for e in caught.value.errors] == [
        "$PROM_TOKEN: impact.prometheus.auth.bearer: variable is unset or empty"
    ]


def test_target_is_the_prometheus_host_and_port() -> None:
    assert promql_source(url="http://Prometheus.internal:9090/").target == "prometheus.internal:9090"


def test_a_query_template_syntax_error_names_the_source_and_field() -> None:
    with pytest.raises(ConfigErrors) as caught:
        promql_source('sum(x{service="{{ labels.service"})')

    assert [e.path for e in caught.value.errors] == ["impact.sources.checkout-failures.prometheus.query"]


# --- what is read ------------------------------------------------------------------------------


def test_sample_values_add_up_to_the_count_and_affected_samples_give_the_facts(
    remote: responses.RequestsMock,
) -> None:
    remote.get(
        QUERY_URL,
        json=vector(
            ({"segment": "business", "region": "eu-west"}, "7.5"),
            ({"segment": "consumer", "region": "us-east"}, "2.5"),
            ({"segment": "enterprise", "region": "ap-south"}, "0"),
            ({"segment": "business", "region": "us-east"}, "1"),
        ),
    )

    assert promql_source().read(CONTEXT) == ImpactReading(
        counts={"failures_per_minute": 11.0},
        facts={FactKind.SEGMENTS: ("business", "consumer"), FactKind.REGIONS: ("eu-west", "us-east")},
    )


@pytest.mark.parametrize("odd", ["NaN", "+Inf", "-Inf"])
def test_samples_that_are_not_finite_are_ignored(remote: responses.RequestsMock, odd: str) -> None:
    remote.get(
        QUERY_URL,
        json=vector(({"segment": "business"}, "3"), ({"segment": "consumer"}, odd)),
    )

    assert promql_source().read(CONTEXT) == ImpactReading(
        counts={"failures_per_minute": 3.0}, facts={FactKind.SEGMENTS: ("business",)}
    )


def test_an_empty_vector_is_a_reading_of_zero_with_no_facts(remote: responses.RequestsMock) -> None:
    remote.get(QUERY_URL, json=vector())

    assert promql_source().read(CONTEXT) == ImpactReading(counts={"failures_per_minute": 0.0}, facts={})


def test_a_scalar_result_is_the_count(remote: responses.RequestsMock) -> None:
    remote.get(
        QUERY_URL,
        json={"status": "success", "data": {"resultType": "scalar", "result": [1795429719.338, "2"]}},
    )

    assert promql_source("scalar(sum(x))").read(CONTEXT) == ImpactReading(counts={"failures_per_minute": 2.0})


def test_two_labels_of_one_fact_kind_merge(remote: responses.RequestsMock) -> None:
    remote.get(
        QUERY_URL,
        json=vector(
            ({"queue": "billing", "skill": "refunds"}, "4"), ({"queue": "billing", "skill": "voice"}, "1")
        ),
    )
    source = promql_source(facts={"queue": "queues", "skill": "queues"})

    assert source.read(CONTEXT).facts == {FactKind.QUEUES: ("billing", "refunds", "voice")}


def test_native_histogram_samples_are_skipped(remote: responses.RequestsMock) -> None:
    answer = vector(({"segment": "business"}, "5"))
    answer["data"]["result"].append(
        {"metric": {"segment": "consumer"}, "histogram": [1795429719.3, {"count": "3", "sum": "1.5"}]}
    )
    remote.get(QUERY_URL, json=answer)

    assert promql_source().read(CONTEXT).counts == {"failures_per_minute": 5.0}


def test_warnings_do_not_change_the_reading(remote: responses.RequestsMock) -> None:
    answer = vector(({"segment": "business"}, "5"))
    answer["warnings"] = ["PromQL info: metric might not be a counter"]
    remote.get(QUERY_URL, json=answer)

    assert promql_source().read(CONTEXT).counts == {"failures_per_minute": 5.0}


# --- how it fails ------------------------------------------------------------------------------


def test_prometheus_error_bad_data_is_not_retryable(remote: responses.RequestsMock) -> None:
    text = 'invalid parameter "query": 1:5: parse error: unclosed left parenthesis'
    remote.get(QUERY_URL, status=400, json=api_error("bad_data", text))

    error = failure(promql_source())

    assert (error.reason, error.retryable) == ("query_error", False)
    assert str(error) == f"impact source checkout-failures: Prometheus refused the query: {text}"


@pytest.mark.parametrize(
    ("error_type", "status"),
    [("timeout", 503), ("canceled", 503), ("canceled", 499), ("unavailable", 503), ("execution", 422)],
)
def test_prometheus_errors_of_the_moment_are_retryable(
    remote: responses.RequestsMock, error_type: str, status: int
) -> None:
    remote.get(
        QUERY_URL, status=status, json=api_error(error_type, "query timed out in expression evaluation")
    )

    error = failure(promql_source())

    assert (error.reason, error.retryable) == (f"query_{error_type}", True)
    assert "query timed out in expression evaluation" in str(error)


def test_prometheus_internal_error_is_classified_by_its_status(remote: responses.RequestsMock) -> None:
    remote.get(QUERY_URL, status=500, json=api_error("internal", "tsdb exploded"))

    error = failure(promql_source())

    assert (error.reason, error.retryable) == ("http_5xx", True)
    assert str(error).endswith("answered HTTP 500: internal: tsdb exploded")


def test_a_proxy_503_without_json_is_retryable(remote: responses.RequestsMock) -> None:
    remote.get(QUERY_URL, status=503, body="<html>Service Unavailable</html>", headers={"Retry-After": "5"})

    error = failure(promql_source())

    assert (error.reason, error.retryable, error.retry_after_seconds) == ("http_503", True, 5.0)


def test_a_timeout_reaching_prometheus_is_retryable(remote: responses.RequestsMock) -> None:
    remote.get(QUERY_URL, body=requests.ReadTimeout("slow"))

    error = failure(promql_source(timeout_seconds=3))

    assert (error.reason, error.retryable) == ("timeout", True)
    assert str(error) == "impact source checkout-failures: no answer from prometheus.test:9090 within 3 s"


@pytest.mark.parametrize(
    "answer",
    [
        {"status": "success", "data": {"resultType": "matrix", "result": []}},
        {"status": "success", "data": {"resultType": "string", "result": [1795429719.346, "hi"]}},
        {"status": "success"},
        {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "1"]}]}},
        {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, 1]}]}},
        {
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "x"]}]},
        },
        {"data": {"resultType": "vector", "result": []}},
        ["not", "an", "envelope"],
    ],
    ids=["matrix", "string", "no-data", "no-metric", "unquoted-value", "not-a-number", "no-status", "list"],
)
def test_answers_that_are_not_an_instant_result_are_bad_responses(
    remote: responses.RequestsMock, answer: Any
) -> None:
    remote.get(QUERY_URL, json=answer)

    error = failure(promql_source())

    assert (error.reason, error.retryable) == ("bad_response", False)


def test_an_answer_that_is_not_json_is_a_bad_response(remote: responses.RequestsMock) -> None:
    remote.get(QUERY_URL, body="<html>login</html>", content_type="text/html")

    error = failure(promql_source())

    assert (error.reason, str(error)) == (
        "bad_response",
        "impact source checkout-failures: prometheus.test:9090 did not answer JSON: <html>login</html>",
    )


# --- a real Prometheus -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """The real binary scraping, every second, a gauge of checkout failures this module sets."""
    registry = CollectorRegistry()
    gauge = Gauge(
        "rl_checkout_failures_per_minute",
        "Checkout failures per minute, set by the test.",
        ["service", "segment", "region"],
        registry=registry,
    )
    gauge.labels("checkout", "business", "eu-west").set(7.5)
    gauge.labels("checkout", "consumer", "us-east").set(2.5)
    gauge.labels("checkout", "enterprise", "ap-south").set(0)
    gauge.labels("billing", "consumer", "eu-west").set(4)
    directory: Path = tmp_path_factory.mktemp("prometheus")
    with (
        serving_exporter(registry) as exporter,
        running_prometheus(directory, [exporter.target]) as prometheus,
    ):
        prometheus.wait_for_series("rl_checkout_failures_per_minute", 4)
        yield prometheus


def live_source(prometheus: Prometheus, query: str) -> ImpactSource:
    config = impact_config(prometheus.url, {"checkout-failures": promql(query)})
    return build_impact_sources(config, {})["checkout-failures"]


def test_a_real_prometheus_query_gives_the_counts_and_facts_the_exporter_set(
    live_prometheus: Prometheus,
) -> None:
    source = live_source(live_prometheus, f"sort_desc({QUERY})")

    reading = source.read(CONTEXT)

    assert reading == ImpactReading(
        counts={"failures_per_minute": 10.0},
        facts={FactKind.SEGMENTS: ("business", "consumer"), FactKind.REGIONS: ("eu-west", "us-east")},
    )


def test_a_real_prometheus_query_for_an_unaffected_service_reads_zero(live_prometheus: Prometheus) -> None:
    reading = live_source(live_prometheus, QUERY).read({"labels": {"service": "search"}})

    assert reading == ImpactReading(counts={"failures_per_minute": 0.0}, facts={})


def test_a_real_prometheus_scalar_query_is_the_count(live_prometheus: Prometheus) -> None:
    source = live_source(live_prometheus, "scalar(count(rl_checkout_failures_per_minute > 0))")

    assert source.read(CONTEXT) == ImpactReading(counts={"failures_per_minute": 3.0})


def test_bad_promql_on_a_real_prometheus_is_a_query_error(live_prometheus: Prometheus) -> None:
    source = live_source(live_prometheus, "sum(rate(rl_checkout_failures_per_minute[5m])")

    error = failure(source)

    assert (error.reason, error.retryable) == ("query_error", False)
    assert "parse error" in str(error)
