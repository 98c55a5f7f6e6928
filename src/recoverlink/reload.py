"""Reload catalog and rules without a restart: validate everything, then swap atomically.

The process that receives `POST /-/reload` (or SIGHUP) validates and, on success, announces the new
content version in the store. Every other process (gunicorn workers, the worker, other replicas)
polls for announcements, re-reads the files and swaps only when its own load has exactly the
announced version. A failed validation announces nothing, so nothing changes anywhere.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from recoverlink import heap
from recoverlink.config.enrichment_loader import LoadedEnrichment, load_enrichment
from recoverlink.config.loader import load_config
from recoverlink.domain.errors import ConfigErrors, StoreUnavailable
from recoverlink.store import config_versions
from recoverlink.store.engine import Store
from recoverlink.telemetry import Metrics

log = logging.getLogger(__name__)


class LiveEnrichment:
    """The enrichment a process runs now. Readers take `current` once per request: replacing the
    reference is atomic, so an in-flight request never sees half of a config."""

    def __init__(self, loaded: LoadedEnrichment) -> None:
        self.current = loaded
        self._lock = threading.Lock()

    def swap(self, loaded: LoadedEnrichment) -> bool:
        """Install `loaded`; False when it is the version already running."""
        with self._lock:
            if loaded.version == self.current.version:
                return False
            self.current = loaded
        heap.resettle()  # the replaced catalog and rules were frozen with the rest at startup
        return True


@dataclass(frozen=True)
class ReloadOutcome:
    ok: bool
    version: str
    changed: bool = False
    errors: tuple[str, ...] = field(default_factory=tuple)


def load_from_disk(config_path: Path) -> LoadedEnrichment:
    # A load allocates about a million long-lived objects and frees no cycles worth collecting:
    # without this the collector runs a dozen full collections over them during one load.
    enabled = gc.isenabled()
    gc.disable()
    try:
        config = load_config(config_path)
        return load_enrichment(config, config_path.parent, str(config_path))
    finally:
        if enabled:
            gc.enable()


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def reload_and_announce(
    config_path: Path, live: LiveEnrichment, store: Store, metrics: Metrics, now: datetime
) -> ReloadOutcome:
    """Validate the files on disk; on success run them here and announce them to every process."""
    try:
        loaded = load_from_disk(config_path)
    except ConfigErrors as exc:
        metrics.reload_failed()
        errors = tuple(e.render() for e in exc.errors)
        log.error("config reload failed; keeping the running config", extra={"errors": list(errors)})
        return ReloadOutcome(False, live.current.version, errors=errors)
    with store.write() as conn:
        config_versions.announce(conn, loaded.version, process_name(), now)
    changed = live.swap(loaded)
    metrics.reload_succeeded(now.timestamp())
    log.info("config reloaded", extra={"version": loaded.version, "changed": changed})
    return ReloadOutcome(True, loaded.version, changed=changed)


class ConfigFollower:
    """A daemon thread that polls the store for announced versions and follows them."""

    def __init__(
        self,
        config_path: Path,
        live: LiveEnrichment,
        store: Store,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime],
        interval_seconds: float = 1.0,
    ) -> None:
        self.config_path = config_path
        self.live = live
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._ignored: str | None = None
        self._thread = threading.Thread(target=self._run, name="recoverlink-config-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                self.follow_once()
            except StoreUnavailable as exc:
                log.warning("cannot poll for config versions", extra={"error": str(exc)})

    def follow_once(self) -> bool:
        """Apply the newest announced version if it differs from ours; True when swapped."""
        with self.store.read() as conn:
            announced = config_versions.latest(conn)
        if announced is None or announced in (self.live.current.version, self._ignored):
            return False
        try:
            loaded = load_from_disk(self.config_path)
        except ConfigErrors as exc:
            self._ignore(announced, f"files no longer validate: {exc.errors[0].render()}")
            return False
        if loaded.version != announced:
            self._ignore(announced, f"files on disk are version {loaded.version}")
            return False
        self.live.swap(loaded)
        # Following is not a reload attempt: the announcing process has set the reload gauges, and a
        # follower running late must not turn a later failed attempt's 0 back into 1 ("mostrecent").
        log.info("config followed", extra={"version": announced})
        return True

    def _ignore(self, announced: str, why: str) -> None:
        # Another replica with other files, or files edited again since: keep ours, say so once.
        self._ignored = announced
        log.warning("not following announced config version", extra={"version": announced, "reason": why})
