"""Run the app under gunicorn, the way `recoverlink serve` and `make run` do.

The Flask app is built in each worker after the fork (no preload), so no database connection or
metric value file is shared between processes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger

from recoverlink.config.loader import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


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


class ReloadingArbiter(Arbiter):  # type: ignore[misc]
    """gunicorn's master, except that SIGHUP reloads catalog and rules instead of restarting workers:
    a restart would load unvalidated files, and a broken file would take the service down."""

    def handle_hup(self) -> None:
        self.app.on_hup()


class GunicornServer(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    def __init__(self, settings: Settings, options: dict[str, Any], on_hup: Callable[[], None]) -> None:
        self.settings = settings
        self.options = options
        self.on_hup = on_hup
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
        from recoverlink.web import create_app

        configure_logging(self.settings.config.logging.level)
        return create_app(self.settings, follow_config=True)


def serve(settings: Settings, workers: int, threads: int, on_hup: Callable[[], None]) -> None:
    """Run gunicorn in the foreground until it is told to stop."""
    options = {
        "bind": settings.listen,
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
    GunicornServer(settings, options, on_hup).run()
