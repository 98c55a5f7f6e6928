"""Run the app under gunicorn, the way `recoverlink serve` and `make run` do.

The Flask app is built in each worker after the fork (no preload), so no database connection or
metric value file is shared between processes.

On a TCP address every worker listens itself (SO_REUSEPORT), so the kernel spreads new connections
over the workers. With one shared socket, whichever worker woke first took them: a sender's few
keep-alive connections (Alertmanager's, a load test's) could all end up in one worker, leaving the
other idle while that one ran out of CPU under its GIL.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger
from gunicorn.util import parse_address

from recoverlink import heap
from recoverlink.config.loader import Settings
from recoverlink.domain.errors import RecoverlinkError

if TYPE_CHECKING:  # prometheus_client must not load before PROMETHEUS_MULTIPROC_DIR is set
    from recoverlink.reload import LiveEnrichment

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger(__name__)


class ListenAddressUnavailable(RecoverlinkError):
    """The address to serve on is taken (another recoverlink, say) or cannot be bound."""

    code = "listen-address-unavailable"


def tcp_address(listen: str) -> tuple[str, int] | None:
    """(host, port) of a TCP `listen` address; None for a Unix socket, an fd or what gunicorn rejects."""
    try:
        parsed = parse_address(listen)
    except RuntimeError:
        return None  # gunicorn says what is wrong with it when it starts
    return parsed if isinstance(parsed, tuple) else None


def spreads_connections(listen: str, environ: Mapping[str, str]) -> bool:
    """Whether each worker should listen on `listen` itself (SO_REUSEPORT): a fixed TCP port that
    gunicorn binds, not a systemd-passed socket, a Unix socket or port 0 (a port per worker)."""
    address = tcp_address(listen)
    inherited = "LISTEN_FDS" in environ
    return hasattr(socket, "SO_REUSEPORT") and address is not None and address[1] != 0 and not inherited


def ensure_address_free(listen: str) -> None:
    """Refuse an address something already listens on. With SO_REUSEPORT a second recoverlink of the
    same user would otherwise share the port silently instead of failing to bind."""
    address = tcp_address(listen)
    if address is None:
        return
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(*address, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
            probe.bind(sockaddr)
    except OSError as exc:
        raise ListenAddressUnavailable(
            f"cannot listen on {listen}: {exc.strerror or exc} (is another server running there?)"
        ) from exc


def prepare_metrics_dir(path: Path) -> None:
    """Wipe and set the multiprocess directory before any process creates a metric."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)


def _child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


class JsonGunicornLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, minus its own handlers: records go to the root JSON handler."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            log.handlers[:] = []
            log.propagate = True


def job_worker_argv(settings: Settings) -> list[str]:
    """The command `serve` runs its outbox worker with (its metrics go to the shared directory)."""
    return [
        sys.executable,
        "-m",
        "recoverlink",
        "worker",
        "--config",
        str(settings.config_path),
        "--no-metrics",
    ]


class JobWorkerProcess:
    """The outbox worker beside gunicorn: started with it, restarted when it dies, stopped with it."""

    RESTART_DELAY_SECONDS = 5.0

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.popen: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0

    def ensure_running(self) -> None:
        if self.popen is not None:
            # poll() says 0 once gunicorn's own waitpid(-1) reaped it: either way it is gone.
            if self.popen.poll() is None:
                return
            self._forget(self.popen)
            if time.monotonic() - self._started_at < self.RESTART_DELAY_SECONDS:
                return  # crashing at start: do not spin
        argv = [*self.argv, "--parent-pid", str(os.getpid())]
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        self._started_at = time.monotonic()
        log.info("outbox worker started", extra={"pid": self.popen.pid})

    def _forget(self, popen: subprocess.Popen[bytes]) -> None:
        log.error("outbox worker exited; restarting it", extra={"pid": popen.pid, "code": popen.returncode})
        self.popen = None
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(popen.pid)  # type: ignore[no-untyped-call]

    def stop(self, timeout_seconds: float) -> None:
        popen, self.popen = self.popen, None
        if popen is None or popen.poll() is not None:
            return
        popen.terminate()
        try:
            popen.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=timeout_seconds)


class ReloadingArbiter(Arbiter):  # type: ignore[misc]
    """gunicorn's master, except that SIGHUP reloads catalog and rules instead of restarting workers
    (a restart would load unvalidated files, and a broken file would take the service down), and that
    it also supervises the outbox worker process."""

    def handle_hup(self) -> None:
        self.app.on_hup()

    def start(self) -> None:
        super().start()
        if self.app.job_worker is not None:
            self.app.job_worker.ensure_running()

    def manage_workers(self) -> None:
        super().manage_workers()
        if self.app.job_worker is not None:
            self.app.job_worker.ensure_running()

    def stop(self, graceful: bool = True) -> None:
        if self.app.job_worker is not None:
            self.app.job_worker.stop(timeout_seconds=self.cfg.graceful_timeout)
        super().stop(graceful)


class GunicornServer(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    def __init__(
        self,
        settings: Settings,
        options: dict[str, Any],
        on_hup: Callable[[], None],
        job_worker: JobWorkerProcess | None,
        enrichment: LiveEnrichment | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.on_hup = on_hup
        self.job_worker = job_worker
        self.enrichment = enrichment
        super().__init__()

    def run(self) -> None:
        ReloadingArbiter(self).run()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        # gunicorn 24+ opens a control socket at one fixed path per user, which several
        # instances on one machine would fight over; recoverlink is steered by signals.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Any:
        from recoverlink.logs import configure_logging
        from recoverlink.tracing import configure_tracing
        from recoverlink.web import create_app

        configure_logging(self.settings.config.logging.level)
        provider = configure_tracing(os.environ, "web")
        # A worker (re)booting while the files on disk are broken must not take the server down:
        # it starts with the catalog and rules the master validated (inherited across the fork),
        # then follows announced versions like every other process.
        current = self.enrichment.current if self.enrichment is not None else None
        app = create_app(self.settings, enrichment=current, follow_config=True, tracer_provider=provider)
        heap.settle()
        return app


def gunicorn_options(settings: Settings, workers: int, threads: int) -> dict[str, Any]:
    """The gunicorn settings `serve` runs with (bench/ingest.py gives its floor app the same)."""
    return {
        "bind": settings.listen,
        "reuse_port": spreads_connections(settings.listen, os.environ),
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": settings.config.server.timeout_seconds,
        "graceful_timeout": 10,
        "child_exit": _child_exit,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.config.logging.level.lower(),
        "proc_name": "recoverlink",
        "logger_class": JsonGunicornLogger,
    }


def serve(
    settings: Settings,
    workers: int,
    threads: int,
    on_hup: Callable[[], None],
    *,
    job_worker: Sequence[str] | None = None,
    enrichment: LiveEnrichment | None = None,
) -> None:
    """Run gunicorn in the foreground until it is told to stop, and the outbox worker `job_worker`
    (a command line) beside it. Raises ListenAddressUnavailable before starting anything."""
    options = gunicorn_options(settings, workers, threads)
    if options["reuse_port"]:
        ensure_address_free(settings.listen)
    supervised = JobWorkerProcess(job_worker) if job_worker is not None else None
    GunicornServer(settings, options, on_hup, supervised, enrichment).run()
