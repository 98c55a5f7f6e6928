"""`make demo`: a scripted checkout outage through the real stack, on loopback.

The demo starts Prometheus, Alertmanager, a throw-away Request Tracker 5, `recoverlink serve` (with
its outbox worker) and two small servers of its own (the payments exporter and an agent desktop),
breaks payments, and prints each step of the recovery as recoverlink records it. Nothing here is
imported by recoverlink itself or needs pytest: the modules are the demo's own.

    .venv/bin/python scripts/demo [--exit-when-done] [--dir DIR] [--free-ports]
"""
