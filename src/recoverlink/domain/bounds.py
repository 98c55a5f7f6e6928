"""Bounds the store's columns set on values that come from outside."""

from __future__ import annotations

# Ids, cursors and ITSM counters are BIGINT columns: a larger number names nothing we could hold, so
# it is refused where it arrives (a 4xx naming it, a CLI usage error) instead of failing the store.
MAX_BIGINT = 2**63 - 1
