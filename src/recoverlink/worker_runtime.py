"""Wire a worker process: store, metrics, impact sources, job handlers, reloads, signals.

`recoverlink worker` runs this; `recoverlink serve` starts it as a child of gunicorn's master (see
`server.JobWorkerProcess`). Alone, a worker serves its own /metrics; under `serve` it writes to the
shared multiprocess directory instead, so the server's /metrics shows it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import FrameType

from prometheus_client import CollectorRegistry, start_http_server

from recoverlink import heap
from recoverlink.action_jobs import LiveActions, SendAction
from recoverlink.action_plan import ACTION_SEND
from recoverlink.adapters.actions import build_action_sender
from recoverlink.adapters.impact import build_impact_sources
from recoverlink.adapters.itsm import build_itsm_adapters
from recoverlink.config.enrichment_loader import LoadedEnrichment
from recoverlink.config.loader import Settings
from recoverlink.domain.errors import ConfigErrors
from recoverlink.domain.itsm import ItsmAdapter
from recoverlink.follow_up_jobs import FollowUp
from recoverlink.impact_jobs import ImpactJobs, ImpactLookup, ImpactVerify
from recoverlink.itsm_changes import Reconciler, change_rules
from recoverlink.itsm_jobs import ItsmJobs, OpenIncident, ReopenIncident, ResolveIncident, UpdateIncident
from recoverlink.itsm_plan import ITSM_NOTE, ITSM_OPEN, ITSM_REOPEN, ITSM_RESOLVE
from recoverlink.recovery_jobs import FOLLOW_UP, IMPACT_LOOKUP, IMPACT_VERIFY, JobPlan
from recoverlink.reload import ConfigFollower, LiveEnrichment, load_from_disk
from recoverlink.stale_episodes import stale_sweep
from recoverlink.store.engine import Store
from recoverlink.store_gauges import OutboxGauges, RecoveryStateGauge
from recoverlink.telemetry import Metrics, multiprocess_dir
from recoverlink.tracing import configure_tracing, flush, instrument_engine
from recoverlink.worker import JobHandler, Worker, WorkerOptions

log = logging.getLogger(__name__)
STALE_SWEEP_SECONDS = 30.0
INVALID_CONFIG_RETRY_SECONDS = 5.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def job_handlers(
    settings: Settings,
    store: Store,
    metrics: Metrics,
    environ: Mapping[str, str],
    itsm: Mapping[str, ItsmAdapter],
    *,
    live: LiveEnrichment,
) -> dict[str, JobHandler]:
    """The handler of every job kind recoverlink enqueues."""
    plan = JobPlan.from_config(settings.config)
    jobs = ImpactJobs(build_impact_sources(settings.config.impact, environ), plan, metrics)
    incidents = ItsmJobs(itsm, store, plan, metrics)
    sender = build_action_sender(settings.config.actions, environ)
    actions = LiveActions(lambda: live.current.enricher.ruleset)
    return {
        IMPACT_LOOKUP: ImpactLookup(jobs),
        IMPACT_VERIFY: ImpactVerify(jobs),
        FOLLOW_UP: FollowUp(jobs),
        ITSM_OPEN: OpenIncident(incidents),
        ITSM_NOTE: UpdateIncident(incidents),
        ITSM_RESOLVE: ResolveIncident(incidents),
        ITSM_REOPEN: ReopenIncident(incidents),
        ACTION_SEND: SendAction(sender, actions, store, plan, metrics),
    }


def build_worker(
    settings: Settings,
    store: Store,
    metrics: Metrics,
    live: LiveEnrichment,
    *,
    environ: Mapping[str, str],
    clock: Callable[[], datetime] = utc_now,
    name: str | None = None,
) -> Worker:
    config = settings.config
    sweep = stale_sweep(store, lambda: live.current.enricher.ruleset, metrics, clock)
    itsm = build_itsm_adapters(config.itsm, environ)
    maintenance = [(STALE_SWEEP_SECONDS, sweep)]
    if itsm:
        every = config.itsm.poll_every
        rules = change_rules(config.itsm, live)
        reconciler = Reconciler(
            store, itsm, rules, JobPlan.from_config(config), metrics, clock=clock, every=every
        )
        maintenance.append((every.total_seconds(), reconciler.poll))
    return Worker(
        store,
        job_handlers(settings, store, metrics, environ, itsm, live=live),
        WorkerOptions.from_config(config.worker),
        metrics,
        clock=clock,
        name=name or f"{socket.gethostname()}:{os.getpid()}",
        maintenance=maintenance,
    )


def run_worker(
    settings: Settings,
    store: Store,
    *,
    metrics_listen: str | None,
    parent_pid: int | None,
    environ: Mapping[str, str],
) -> None:
    """Run until SIGTERM or SIGINT (or until the parent process is gone, when one is named)."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, settings.config.metrics.max_services)
    provider = configure_tracing(environ, "worker")
    if provider is not None:
        instrument_engine(store.engine, provider)
    stop = threading.Event()
    _stop_on_signals(stop)
    if parent_pid is not None:
        _stop_with_parent(parent_pid, stop)
    loaded = _valid_enrichment(settings, stop)
    if loaded is None:
        return
    live = LiveEnrichment(loaded)
    metrics.reload_succeeded(utc_now().timestamp())
    follower = ConfigFollower(settings.config_path, live, store, metrics, clock=utc_now)
    worker = build_worker(settings, store, metrics, live, environ=environ)
    if metrics_listen and multiprocess_dir() is None:
        _serve_metrics(metrics_listen, registry, store, settings.config.metrics.max_services)
    heap.settle()
    follower.start()
    try:
        worker.run(stop)
    finally:
        follower.stop()
        store.dispose()
        flush(provider)


def _valid_enrichment(settings: Settings, stop: threading.Event) -> LoadedEnrichment | None:
    """The catalog and rules on disk; while they do not validate (someone is editing them), wait and
    look again rather than exit: jobs wait in the outbox meanwhile. None when told to stop."""
    said = None
    while not stop.is_set():
        try:
            return load_from_disk(settings.config_path)
        except ConfigErrors as exc:
            errors = [e.render() for e in exc.errors]
            if errors != said:
                log.error(
                    "catalog or rules do not validate; waiting for valid files", extra={"errors": errors}
                )
                said = errors
        stop.wait(INVALID_CONFIG_RETRY_SECONDS)
    return None


def _stop_on_signals(stop: threading.Event) -> None:
    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping: finishing running jobs", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    # Reloads reach a worker through the store (every process follows announced versions).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _stop_with_parent(parent_pid: int, stop: threading.Event) -> None:
    """A worker started by `serve` must not outlive it, even when the server was killed -9."""

    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent_pid:
                log.warning("parent process is gone; stopping", extra={"parent_pid": parent_pid})
                stop.set()

    threading.Thread(target=watch, name="recoverlink-parent-watch", daemon=True).start()


def _serve_metrics(listen: str, registry: CollectorRegistry, store: Store, max_services: int) -> None:
    host, _, port = listen.rpartition(":")
    registry.register(RecoveryStateGauge(store, max_services))
    registry.register(OutboxGauges(store, utc_now))
    start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    log.info("serving worker metrics", extra={"listen": listen})
