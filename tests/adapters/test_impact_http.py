"""HTTP lookups as impact sources: the request they send, what they read, and how they fail.

The remote is `responses` (requests' transport replaced), except for the two tests that need a
real socket: a refused connection and a server that never answers.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from recoverlink.adapters.http_calls import MAX_BODY_BYTES, retry_after_seconds
from recoverlink.adapters.impact import build_impact_sources
from recoverlink.config.impact import ImpactConfig
from recoverlink.domain.errors import ConfigErrors, ImpactSourceError
from recoverlink.domain.impact import MAX_FACT_VALUES, FactKind, ImpactReading, ImpactSource
from tests.conftest import FakeClock
from tests.support.processes import LOOPBACK, free_port

CRM = "https://crm.example"
CASES_URL = f"{CRM}/api/cases"
TOKEN = "crm-token-that-must-never-be-printed"
CONTEXT: dict[str, Any] = {
    "labels": {"service": "checkout", "region": "eu-west", "alertname": "CheckoutErrorsHigh"},
    "service": {"name": "checkout", "journeys": ["pay", "refund"]},
    "recovery": {"id": "rec-42", "opened_at": "2026-11-22T18:00:00Z"},
}
ANSWER = {"total": 12, "repeat": 3, "items": [{"segment": "business"}, {"segment": "consumer"}]}


@pytest.fixture
def remote() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def lookup_source(
    url: str = CASES_URL,
    *,
    counts: dict[str, str] | None = None,
    allowed_hosts: tuple[str, ...] = ("crm.example",),
    environ: dict[str, str] | None = None,
    clock: FakeClock | None = None,
    **http: Any,
) -> ImpactSource:
    """One `http` source named `crm`, built the way the service builds it."""
    counts = counts or {"open_cases": "total"}
    config = ImpactConfig.model_validate(
        {
            "allowed_hosts": list(allowed_hosts),
            "sources": {
                "crm": {
                    "http": {"url": url, "counts": counts, **http},
                    "thresholds": {name: 0 for name in counts},
                }
            },
        }
    )
    return build_impact_sources(config, environ or {}, clock=clock)["crm"]


def failure(source: ImpactSource, context: dict[str, Any] | None = None) -> ImpactSourceError:
    with pytest.raises(ImpactSourceError) as caught:
        source.read(CONTEXT if context is None else context)
    return caught.value


# --- what is sent ------------------------------------------------------------------------------


def test_get_renders_url_params_and_headers_from_the_context_and_sends_the_bearer_token(
    remote: responses.RequestsMock,
) -> None:
    remote.get(
        f"{CRM}/api/services/checkout/cases",
        json=ANSWER,
        match=[
            matchers.query_param_matcher({"region": "eu-west", "since": "2026-11-22T18:00:00Z"}),
            matchers.header_matcher({"X-Recovery": "rec-42", "Authorization": f"Bearer {TOKEN}"}),
        ],
    )
    source = lookup_source(
        f"{CRM}/api/services/{{{{ labels.service }}}}/cases",
        params={"region": "{{ labels.region }}", "since": "{{ recovery.opened_at }}"},
        headers={"X-Recovery": "{{ recovery.id }}"},
        auth={"bearer": {"env": "CRM_TOKEN"}},
        environ={"CRM_TOKEN": TOKEN},
    )

    assert source.read(CONTEXT).counts == {"open_cases": 12.0}
    assert len(remote.calls) == 1


def test_post_sends_the_rendered_body_as_json(remote: responses.RequestsMock) -> None:
    remote.post(
        CASES_URL,
        json=ANSWER,
        match=[matchers.json_params_matcher({"service": "checkout", "journey": "pay", "window": "1h"})],
    )
    source = lookup_source(
        method="POST",
        body={"service": "{{ service.name }}", "journey": "{{ service.journeys[0] }}", "window": "1h"},
    )

    assert source.read(CONTEXT).counts == {"open_cases": 12.0}
    assert remote.calls[0].request.headers["Content-Type"] == "application/json"


def test_basic_auth_is_sent_as_alertmanager_would(remote: responses.RequestsMock, tmp_path: Any) -> None:
    password_file = tmp_path / "crm.password"
    password_file.write_text("s3cret\n", encoding="utf-8")
    expected = "Basic " + base64.b64encode(b"recoverlink:s3cret").decode()
    remote.get(CASES_URL, json=ANSWER, match=[matchers.header_matcher({"Authorization": expected})])
    source = lookup_source(
        auth={"basic": {"username": "recoverlink", "password": {"file": str(password_file)}}}
    )

    assert source.read(CONTEXT).counts == {"open_cases": 12.0}


def test_configured_auth_wins_over_an_authorization_header_template(remote: responses.RequestsMock) -> None:
    remote.get(CASES_URL, json=ANSWER, match=[matchers.header_matcher({"Authorization": f"Bearer {TOKEN}"})])
    source = lookup_source(
        headers={"Authorization": "Bearer {{ labels.service }}"},
        auth={"bearer": {"env": "CRM_TOKEN"}},
        environ={"CRM_TOKEN": TOKEN},
    )

    assert source.read(CONTEXT).counts == {"open_cases": 12.0}


# --- what is read ------------------------------------------------------------------------------


def test_counts_and_facts_are_picked_out_of_the_answer_by_jmespath(remote: responses.RequestsMock) -> None:
    remote.get(
        CASES_URL,
        json={
            "summary": {"open": 12, "repeat_contacts": 2.5},
            "cases": [
                {"segment": "business", "channel": "voice"},
                {"segment": "consumer", "channel": "chat"},
                {"segment": "business", "channel": "voice"},
            ],
            "region": "eu-west",
            "queues": [101, 202],
        },
    )
    source = lookup_source(
        counts={"open_cases": "summary.open", "repeat_contacts": "summary.repeat_contacts"},
        facts={
            "segments": "cases[].segment",
            "channels": "cases[].channel",
            "regions": "region",
            "queues": "queues",
        },
    )

    assert source.read(CONTEXT) == ImpactReading(
        counts={"open_cases": 12.0, "repeat_contacts": 2.5},
        facts={
            FactKind.SEGMENTS: ("business", "consumer"),
            FactKind.CHANNELS: ("voice", "chat"),
            FactKind.REGIONS: ("eu-west",),
            FactKind.QUEUES: ("101", "202"),
        },
    )


def test_a_fact_expression_that_finds_nothing_gives_no_facts(remote: responses.RequestsMock) -> None:
    remote.get(CASES_URL, json={"total": 0})
    source = lookup_source(facts={"segments": "cases[].segment", "journeys": "journey"})

    assert source.read(CONTEXT) == ImpactReading(counts={"open_cases": 0.0}, facts={})


def test_facts_from_a_large_answer_are_bounded(remote: responses.RequestsMock) -> None:
    remote.get(CASES_URL, json={"total": 50, "cases": [{"segment": f"s{i}"} for i in range(50)]})
    source = lookup_source(facts={"segments": "cases[].segment"})

    facts = source.read(CONTEXT).facts

    assert facts[FactKind.SEGMENTS] == tuple(f"s{i}" for i in range(MAX_FACT_VALUES))


@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        ({"total": "12"}, '"12"'),
        ({"total": True}, "true"),
        ({"total": None}, "nothing (null)"),
        ({}, "nothing (null)"),
        ({"total": [12]}, "[12]"),
    ],
    ids=["string", "bool", "null", "missing", "list"],
)
def test_count_that_is_not_a_number_is_a_bad_response_naming_count_and_expression(
    remote: responses.RequestsMock, answer: dict[str, Any], shown: str
) -> None:
    remote.get(CASES_URL, json=answer)

    error = failure(lookup_source())

    assert (error.reason, error.retryable) == ("bad_response", False)
    assert str(error) == f"impact source crm: count open_cases (total) gave {shown}, not a number"


def test_count_that_is_not_finite_is_a_bad_response(remote: responses.RequestsMock) -> None:
    remote.get(CASES_URL, body='{"total": NaN}', content_type="application/json")

    assert failure(lookup_source()).reason == "bad_response"


def test_fact_that_is_an_object_is_a_bad_response(remote: responses.RequestsMock) -> None:
    remote.get(CASES_URL, json={"total": 1, "segment": {"name": "business"}})

    error = failure(lookup_source(facts={"segments": "segment"}))

    assert (error.reason, error.retryable) == ("bad_response", False)
    assert "fact segments (segment)" in str(error)


def test_expression_failing_on_this_answer_is_a_bad_response(remote: responses.RequestsMock) -> None:
    remote.get(CASES_URL, json={"total": "twelve"})

    error = failure(lookup_source(counts={"open_cases": "abs(total)"}))

    assert (error.reason, error.retryable) == ("bad_response", False)
    assert "abs(total) failed on the answer" in str(error)


# --- how it fails: the transport ---------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [requests.Timeout("read timed out"), requests.ReadTimeout("slow"), requests.ConnectTimeout("slow")],
    ids=["Timeout", "ReadTimeout", "ConnectTimeout"],
)
def test_timeout_is_retryable(remote: responses.RequestsMock, exc: Exception) -> None:
    remote.get(CASES_URL, body=exc)

    error = failure(lookup_source(timeout_seconds=2.5))

    assert (error.reason, error.retryable) == ("timeout", True)
    assert str(error) == "impact source crm: no answer from crm.example within 2.5 s"


def test_connection_error_is_retryable(remote: responses.RequestsMock) -> None:
    remote.get(CASES_URL, body=requests.ConnectionError("connection reset"))

    error = failure(lookup_source())

    assert (error.reason, error.retryable) == ("connect", True)
    assert str(error).startswith("impact source crm: cannot connect to crm.example")


def test_a_real_refused_connection_is_retryable() -> None:
    port = free_port()
    source = lookup_source(f"http://{LOOPBACK}:{port}/cases", allowed_hosts=(LOOPBACK,))

    error = failure(source)

    assert (error.reason, error.retryable) == ("connect", True)
    assert f"cannot connect to {LOOPBACK}:{port}" in str(error)


def test_a_real_server_that_never_answers_times_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(1)  # the kernel accepts the connection; nobody ever reads or answers
        port = listener.getsockname()[1]
        source = lookup_source(
            f"http://{LOOPBACK}:{port}/cases", allowed_hosts=(LOOPBACK,), timeout_seconds=0.3
        )

        error = failure(source)

    assert (error.reason, error.retryable) == ("timeout", True)


# --- how it fails: the status ------------------------------------------------------------------


def test_429_with_retry_after_seconds_is_retryable_after_that_long(remote: responses.RequestsMock) -> None:
    remote.get(CASES_URL, status=429, headers={"Retry-After": "120"}, body="slow down")

    error = failure(lookup_source())

    assert (error.reason, error.retryable, error.retry_after_seconds) == ("http_429", True, 120.0)
    assert str(error) == "impact source crm: crm.example answered HTTP 429: slow down (retry after 120 s)"


def test_429_with_retry_after_http_date_counts_from_the_clock(
    remote: responses.RequestsMock, clock: FakeClock
) -> None:
    when = format_datetime(clock.now + timedelta(minutes=5), usegmt=True)
    remote.get(CASES_URL, status=429, headers={"Retry-After": when})

    error = failure(lookup_source(clock=clock))

    assert (error.reason, error.retry_after_seconds) == ("http_429", 300.0)


def test_503_is_retryable_with_its_retry_after(remote: responses.RequestsMock) -> None:
    remote.get(CASES_URL, status=503, headers={"Retry-After": "30"})

    error = failure(lookup_source())

    assert (error.reason, error.retryable, error.retry_after_seconds) == ("http_503", True, 30.0)


def test_503_without_retry_after_leaves_the_backoff_to_the_worker(remote: responses.RequestsMock) -> None:
    remote.get(CASES_URL, status=503)

    error = failure(lookup_source())

    assert (error.reason, error.retryable, error.retry_after_seconds) == ("http_503", True, None)


@pytest.mark.parametrize("status", [500, 502, 504])
def test_other_5xx_are_retryable(remote: responses.RequestsMock, status: int) -> None:
    remote.get(CASES_URL, status=status, body="upstream trouble")

    error = failure(lookup_source())

    assert (error.reason, error.retryable) == ("http_5xx", True)
    assert f"answered HTTP {status}: upstream trouble" in str(error)


def test_408_is_retryable(remote: responses.RequestsMock) -> None:
    remote.get(CASES_URL, status=408)

    assert (failure(lookup_source()).reason, failure(lookup_source()).retryable) == ("http_408", True)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_are_not_retryable(remote: responses.RequestsMock, status: int) -> None:
    remote.get(CASES_URL, status=status, json={"error": "no such service"})

    error = failure(lookup_source())

    assert (error.reason, error.retryable, error.retry_after_seconds) == ("http_4xx", False, None)


def test_a_redirect_is_not_followed_and_not_retryable(remote: responses.RequestsMock) -> None:
    remote.get(CASES_URL, status=302, headers={"Location": "https://elsewhere.example/cases"})
    remote.get("https://elsewhere.example/cases", json=ANSWER)

    error = failure(lookup_source())

    assert (error.reason, error.retryable) == ("http_3xx", False)
    assert "a redirect to elsewhere.example (redirects are not followed)" in str(error)
    assert [call.request.url for call in remote.calls] == [CASES_URL]


def test_error_messages_carry_a_short_excerpt_never_the_whole_body(remote: responses.RequestsMock) -> None:
    body = "<html>" + "trace line\n" * 2000 + "</html>"
    remote.get(CASES_URL, status=404, body=body)

    message = str(failure(lookup_source()))

    assert message.startswith("impact source crm: crm.example answered HTTP 404: <html>trace line trace line")
    assert len(message) < 300
    assert "\n" not in message


def test_credentials_never_appear_in_errors_or_in_the_source(remote: responses.RequestsMock) -> None:
    remote.get(CASES_URL, status=401, body="bad token")
    source = lookup_source(auth={"bearer": {"env": "CRM_TOKEN"}}, environ={"CRM_TOKEN": TOKEN})

    error = failure(source)

    assert error.reason == "http_4xx"
    assert TOKEN not in str(error)
    assert TOKEN not in repr(source)


# --- how it fails: the answer ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "shown"),
    [("<html>oops</html>", "<html>oops</html>"), ("", "an empty body")],
    ids=["html", "empty"],
)
def test_an_answer_that_is_not_json_is_a_bad_response(
    remote: responses.RequestsMock, body: str, shown: str
) -> None:
    remote.get(CASES_URL, body=body, content_type="text/html")

    error = failure(lookup_source())

    assert (error.reason, error.retryable) == ("bad_response", False)
    assert str(error) == f"impact source crm: crm.example did not answer JSON: {shown}"


def test_an_oversized_answer_is_a_bad_response(remote: responses.RequestsMock) -> None:
    remote.get(CASES_URL, body=json.dumps({"total": 1, "pad": "x" * MAX_BODY_BYTES}))

    error = failure(lookup_source())

    assert (error.reason, error.retryable) == ("bad_response", False)
    assert "larger than" in str(error)


# --- where it may go ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "labels"),
    [
        ("https://{{ labels.crm_host }}/api/cases", {"crm_host": "evil.example"}),
        ("https://crm.example{{ labels.suffix }}/api/cases", {"suffix": "@evil.example"}),
        ("https://crm.example{{ labels.suffix }}/api/cases", {"suffix": ".evil.example"}),
        # urlsplit reads crm.example here, requests connects to evil.example: both readings are checked
        ("https://{{ labels.crm_host }}/api/cases", {"crm_host": "evil.example\\@crm.example"}),
        ("{{ labels.url }}", {"url": "ftp://crm.example/cases"}),
        ("{{ labels.url }}", {"url": "file:///etc/passwd"}),
        ("{{ labels.url }}", {"url": "crm.example/cases"}),
    ],
    ids=["other-host", "userinfo", "suffix", "backslash", "ftp", "file", "no-scheme"],
)
def test_a_url_that_renders_to_a_host_not_allowed_is_refused_without_a_call(
    remote: responses.RequestsMock, url: str, labels: dict[str, str]
) -> None:
    remote.get("https://evil.example/api/cases", json=ANSWER)

    error = failure(lookup_source(url), {"labels": labels})

    assert (error.reason, error.retryable) == ("host_not_allowed", False)
    assert "only http(s) URLs to impact.allowed_hosts may be called" in str(error)
    assert len(remote.calls) == 0


def test_an_allowed_host_with_a_port_allows_only_that_port(remote: responses.RequestsMock) -> None:
    remote.get("https://crm.example:8443/cases", json=ANSWER)
    source = lookup_source("https://crm.example:{{ labels.port }}/cases", allowed_hosts=("crm.example:8443",))

    assert source.read({"labels": {"port": "8443"}}).counts == {"open_cases": 12.0}
    assert failure(source, {"labels": {"port": "9999"}}).reason == "host_not_allowed"


def test_target_is_the_host_of_a_url_whose_host_is_literal() -> None:
    assert lookup_source("https://crm.example:8443/api/{{ labels.service }}").target == "crm.example:8443"
    assert lookup_source("https://CRM.example/api").target == "crm.example"


def test_target_of_a_url_whose_host_is_a_template_is_the_source() -> None:
    assert lookup_source("https://{{ labels.crm_host }}/api").target == "source:crm"


# --- templates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ labels.__class__.__mro__[1].__subclasses__() }}",
        "{{ range(10**9) }}",
    ],
    ids=["mro", "subclasses", "huge-range"],
)
def test_a_template_the_sandbox_refuses_fails_without_a_call(
    remote: responses.RequestsMock, template: str
) -> None:
    error = failure(lookup_source(params={"q": template}))

    assert (error.reason, error.retryable) == ("template", False)
    assert str(error).startswith("impact source crm: the params.q template failed to render:")
    assert len(remote.calls) == 0


def test_a_template_reading_below_a_missing_value_fails(remote: responses.RequestsMock) -> None:
    error = failure(lookup_source(headers={"X-Case": "{{ recovery.case.id }}"}), {"labels": {}})

    assert (error.reason, error.retryable) == ("template", False)
    assert "headers.X-Case template" in str(error)


# --- building ----------------------------------------------------------------------------------


def test_template_syntax_errors_name_the_source_and_field() -> None:
    with pytest.raises(ConfigErrors) as caught:
        lookup_source(params={"region": "{{ labels.region"}, headers={"X-Id": "{% if %}"})

    paths = [e.path for e in caught.value.errors]
    assert paths == ["impact.sources.crm.http.params.region", "impact.sources.crm.http.headers.X-Id"]
    assert "template syntax error" in caught.value.errors[0].message


def test_invalid_jmespath_names_the_count_or_fact() -> None:
    with pytest.raises(ConfigErrors) as caught:
        lookup_source(counts={"open_cases": "summary..open"}, facts={"segments": "nosuchfunction(cases)"})

    errors = {e.path: e.message for e in caught.value.errors}
    assert set(errors) == {
        "impact.sources.crm.http.counts.open_cases",
        "impact.sources.crm.http.facts.segments",
    }
    assert errors["impact.sources.crm.http.counts.open_cases"].startswith(
        "invalid JMESPath expression 'summary..open':"
    )
    assert "Unknown function: nosuchfunction()" in errors["impact.sources.crm.http.facts.segments"]


def test_a_missing_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigErrors) as caught:
        lookup_source(auth={"bearer": {"env": "CRM_TOKEN"}}, environ={})

    assert [e.render() for e in caught.value.errors] == [
        "$CRM_TOKEN: impact.sources.crm.http.auth.bearer: variable is unset or empty"
    ]


# --- Retry-After -------------------------------------------------------------------------------


def test_retry_after_reads_seconds_and_http_dates(clock: FakeClock) -> None:
    later = format_datetime(clock.now + timedelta(seconds=90), usegmt=True)
    earlier = format_datetime(clock.now - timedelta(seconds=90), usegmt=True)

    assert retry_after_seconds("45", clock.now) == 45.0
    assert retry_after_seconds(" 0 ", clock.now) == 0.0
    assert retry_after_seconds(later, clock.now) == 90.0
    assert retry_after_seconds(earlier, clock.now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5"])
def test_retry_after_that_cannot_be_read_is_ignored(clock: FakeClock, value: str | None) -> None:
    assert retry_after_seconds(value, clock.now) is None
