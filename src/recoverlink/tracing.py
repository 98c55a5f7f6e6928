"""OpenTelemetry tracing, off by default, configured by the standard `OTEL_*` variables.

`OTEL_TRACES_EXPORTER=otlp` (endpoint from `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or `console` turns it on; `OTEL_SDK_DISABLED=true` keeps it
off. Each process (a gunicorn worker after the fork, the outbox worker) sets up its own provider
once. Flask, requests and SQLAlchemy are instrumented; a job carries the trace context of the
transaction that enqueued it (its `traceparent`), so one trace follows an alert from the webhook
through the outbox to the ITSM call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from sqlalchemy import Engine

from recoverlink.store.sqlite_cursor import TRACED

log = logging.getLogger(__name__)
EXCLUDED_URLS = "metrics,-/healthy,-/ready"
_EXPORTERS = ("otlp", "console")


def wanted_exporter(environ: Mapping[str, str]) -> str | None:
    """`otlp` or `console` when the environment asks for traces, else None (the default: off)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    chosen = [e.strip().lower() for e in environ.get("OTEL_TRACES_EXPORTER", "none").split(",")]
    return next((e for e in chosen if e in _EXPORTERS), None)


def configure_tracing(environ: Mapping[str, str], process: str) -> TracerProvider | None:
    """Install this process's tracer provider when tracing is on; None (and nothing installed) when off."""
    exporter_name = wanted_exporter(environ)
    if exporter_name is None:
        return None
    exporter: SpanExporter
    if exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter()
    resource = Resource.create({SERVICE_NAME: environ.get("OTEL_SERVICE_NAME") or "recoverlink"})
    provider = TracerProvider(resource=Resource.create({"recoverlink.process": process}).merge(resource))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    RequestsInstrumentor().instrument(tracer_provider=provider)
    log.info("tracing on", extra={"exporter": exporter_name, "traced_process": process})
    return provider


def instrument_engine(engine: Engine, provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=provider)
    # The store's hot statements on SQLite bypass SQLAlchemy's cursor events unless told otherwise.
    engine.update_execution_options(**{TRACED: True})


def instrument_flask(app: object, provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FlaskInstrumentor().instrument_app(  # type: ignore[no-untyped-call]
        app, excluded_urls=EXCLUDED_URLS, tracer_provider=provider
    )


def flush(provider: TracerProvider | None) -> None:
    """Export what is buffered (a worker stopping must not lose its last spans)."""
    if provider is not None:
        provider.force_flush(timeout_millis=5000)
        provider.shutdown()
