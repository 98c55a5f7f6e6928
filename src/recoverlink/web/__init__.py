"""The Flask app factory: wires settings, store, metrics and blueprints. Nothing happens at import."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from flask import Flask, Response, g, request
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from recoverlink import tracing
from recoverlink.adapters.itsm import build_itsm_adapters
from recoverlink.config.enrichment_loader import LoadedEnrichment, load_enrichment
from recoverlink.config.itsm import ItsmConfig
from recoverlink.config.loader import Settings
from recoverlink.config.model import WebhookAuth
from recoverlink.config.secrets import read_secret
from recoverlink.domain.itsm import ItsmAdapter
from recoverlink.itsm_changes import change_rules
from recoverlink.logs import request_id
from recoverlink.recovery_jobs import JobPlan
from recoverlink.reload import ConfigFollower, LiveEnrichment
from recoverlink.store.engine import Store, StoreOptions, open_store
from recoverlink.telemetry import Metrics
from recoverlink.web import (
    api,
    board,
    board_actions,
    board_session,
    itsm_callbacks,
    jobs_api,
    ops,
    recoveries_api,
    status_page,
    webhook,
)
from recoverlink.web.credentials import WebhookCredentials
from recoverlink.web.errors import register_error_handlers
from recoverlink.web.pages import install_templates
from recoverlink.web.runtime import EXTENSION, ItsmRuntime, Runtime

REQUEST_ID_HEADER = "X-Request-Id"


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    store: Store | None = None,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], datetime] = utc_now,
    enrichment: LoadedEnrichment | None = None,
    follow_config: bool = False,
    itsm_adapters: Mapping[str, ItsmAdapter] | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Flask:
    """Build the app for `settings`; tests pass their own store, registry, clock, enrichment and
    ITSM adapters.

    `follow_config` starts the thread that follows config reloads announced by other processes.
    """
    config = settings.config
    if enrichment is None:
        enrichment = load_enrichment(config, settings.config_path.parent, str(settings.config_path))
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.webhook.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    rt = Runtime(
        settings=settings,
        store=store or open_store(settings.database_url, StoreOptions.from_config(config.database)),
        metrics=Metrics(registry or CollectorRegistry(), config.metrics.max_services),
        webhook_credentials=webhook_credentials(config.webhook.auth, environ or os.environ),
        alert_policy=config.webhook.alert_policy(),
        enrichment=LiveEnrichment(enrichment),
        clock=clock,
        jobs=JobPlan.from_config(config),
    )
    rt.itsm = itsm_runtime(config.itsm, environ or os.environ, rt.enrichment, itsm_adapters)
    rt.metrics.reload_succeeded(clock().timestamp())
    if follow_config:
        ConfigFollower(settings.config_path, rt.enrichment, rt.store, rt.metrics, clock=clock).start()
    app.extensions[EXTENSION] = rt
    for blueprint in (webhook.bp, ops.bp, api.bp, recoveries_api.bp, jobs_api.bp, itsm_callbacks.bp):
        app.register_blueprint(blueprint)
    _add_pages(app, settings, environ or os.environ)
    register_error_handlers(app)
    _instrument(app, rt)
    if tracer_provider is not None:
        tracing.instrument_flask(app, tracer_provider)
        tracing.instrument_engine(rt.store.engine, tracer_provider)
    return app


def _add_pages(app: Flask, settings: Settings, environ: Mapping[str, str]) -> None:
    """The board, its sign-in and forms, and the status page: HTML with their own session cookie."""
    board_session.configure_sessions(app, settings.config.board, environ)
    install_templates(app)
    pages = (board.bp, board_actions.bp, board_session.bp, status_page.bp, status_page.json_bp)
    for blueprint in pages:
        app.register_blueprint(blueprint)


def itsm_runtime(
    config: ItsmConfig,
    environ: Mapping[str, str],
    live: LiveEnrichment,
    adapters: Mapping[str, ItsmAdapter] | None = None,
) -> ItsmRuntime:
    """Adapters of the configured ITSMs (for reading callbacks) and their callback secrets."""
    secrets = {}
    for name in config.configured():
        system = config.system(name)
        if system is not None and system.callback_secret is not None:
            secrets[name] = read_secret(system.callback_secret, environ, f"itsm.{name}.callback_secret")
    if adapters is None:
        adapters = build_itsm_adapters(config, environ)
    return ItsmRuntime(adapters, secrets, change_rules(config, live))


def webhook_credentials(auth: WebhookAuth, environ: Mapping[str, str]) -> WebhookCredentials:
    bearer = read_secret(auth.bearer, environ, "webhook bearer token") if auth.bearer else None
    if auth.basic is None:
        return WebhookCredentials(bearer_token=bearer)
    password = read_secret(auth.basic.password, environ, "webhook basic-auth password")
    return WebhookCredentials(
        bearer_token=bearer, basic_username=auth.basic.username, basic_password=password
    )


def new_request_id() -> str:
    """32 random hex digits. An id correlates log lines and is no secret, so it comes from `random`
    (reseeded in each forked process): os.urandom's syscall lets go of the GIL, and under load the
    request thread then waited behind the others to get it back (0.55 ms a request, profiled)."""
    return f"{random.getrandbits(128):032x}"


def _instrument(app: Flask, rt: Runtime) -> None:
    """Give every request an id (echoed back) and observe its duration by route and code."""

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        rid = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else new_request_id()
        g.request_id_token = request_id.set(rid)

    @app.after_request
    def _finish(response: Response) -> Response:
        handler = request.url_rule.rule if request.url_rule is not None else "other"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        code = str(response.status_code)
        rt.children.of(rt.metrics.http_request_duration, handler=handler, code=code).observe(elapsed)
        rid = request_id.get()
        if rid is not None:
            response.headers[REQUEST_ID_HEADER] = rid
        return response

    @app.teardown_request
    def _forget(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            request_id.reset(token)
