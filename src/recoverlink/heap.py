"""Keep the objects a process holds for its whole life out of the cyclic garbage collector's scans.

A serving process starts with some hundred thousand long-lived objects (the app, the catalog and
rules, compiled templates, SQLAlchemy's metadata). Every full collection walks all of them while
holding the GIL: 100-150 ms on this project's 2-core benchmark machine, during which the process
answers nothing, and on SQLite whatever writer it holds the lock for keeps every other writer
waiting; that was the insert path's p99. Freezing them after startup (gc.freeze) leaves the full
collections only the objects made since, as CPython's documentation suggests for servers.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect what startup left for garbage, then move every surviving object to the permanent
    generation, which the collector never scans. Call once the process has built what it keeps."""
    gc.collect()
    gc.freeze()


def resettle() -> None:
    """Let the collector see frozen objects again, collect and freeze anew: after a reload has
    replaced long-lived objects, so that cycles among the replaced ones are freed, not kept."""
    gc.unfreeze()
    settle()
