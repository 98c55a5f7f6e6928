"""ITSM adapters, one module per system, all implementing `domain.itsm.ItsmAdapter`.

`build_itsm_adapters` builds one adapter per configured system (credentials read once, here);
each module offers `from_config(config, environ, session, clock)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import requests

from recoverlink.config.itsm import ItsmConfig
from recoverlink.domain.itsm import ItsmAdapter


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_itsm_adapters(
    config: ItsmConfig,
    environ: Mapping[str, str],
    session: requests.Session | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> dict[str, ItsmAdapter]:
    """The adapters of every configured system, by name (servicenow, jira, rt)."""
    session = session or requests.Session()
    adapters: dict[str, ItsmAdapter] = {}
    if config.servicenow is not None:
        from recoverlink.adapters.itsm.servicenow import ServiceNowAdapter

        adapters["servicenow"] = ServiceNowAdapter.from_config(config.servicenow, environ, session, clock)
    if config.jira is not None:
        from recoverlink.adapters.itsm.jira import JiraAdapter

        adapters["jira"] = JiraAdapter.from_config(config.jira, environ, session, clock)
    if config.rt is not None:
        from recoverlink.adapters.itsm.rt import RtAdapter

        adapters["rt"] = RtAdapter.from_config(config.rt, environ, session, clock)
    return adapters
