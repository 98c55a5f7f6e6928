"""Fixtures of the adapter tests: the throw-away Request Tracker of the session (tests/support/rt.py)."""

from tests.support.rt import request_tracker

__all__ = ["request_tracker"]
