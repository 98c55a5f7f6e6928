"""The JSON API under /api/v1 (read side of ingest for now)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from recoverlink.adapters.alertmanager import alerts_for_explain, decode_body
from recoverlink.domain.alerts import AlertStatus
from recoverlink.domain.bounds import MAX_BIGINT
from recoverlink.domain.errors import PayloadInvalid
from recoverlink.domain.tokens import Role
from recoverlink.explain import explain_alerts
from recoverlink.store.alerts import list_episodes
from recoverlink.web.auth import require_role
from recoverlink.web.runtime import runtime

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_PAGE = 500


def int_arg(name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise PayloadInvalid(f"{name} must be a whole number from {low} to {high}", field=name)
    return int(raw)


def _status_arg() -> AlertStatus | None:
    raw = request.args.get("status")
    if raw is None:
        return None
    try:
        return AlertStatus(raw)
    except ValueError as exc:
        raise PayloadInvalid("status must be 'firing' or 'resolved'", field="status") from exc


def _fingerprint_arg() -> str | None:
    raw = request.args.get("fingerprint")
    if raw is not None and "\x00" in raw:  # PostgreSQL text cannot hold NUL
        raise PayloadInvalid("fingerprint must not contain NUL characters", field="fingerprint")
    return raw


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


@bp.get("/alerts")
@require_role(Role.VIEWER)
def alerts() -> Response:
    """Stored alert episodes, newest first; `next_cursor` fetches the next page."""
    limit = int_arg("limit", 100, 1, MAX_PAGE) or 100
    cursor = int_arg("cursor", None, 1, MAX_BIGINT)
    with runtime().store.read() as conn:
        rows = list_episodes(
            conn,
            limit=limit,
            before_id=cursor,
            status=_status_arg(),
            fingerprint=_fingerprint_arg(),
        )
    items = [{k: _json_value(v) for k, v in asdict(row).items()} for row in rows]
    next_cursor = rows[-1].id if len(rows) == limit else None
    return jsonify({"items": items, "next_cursor": next_cursor})


@bp.post("/explain")
@require_role(Role.VIEWER)
def explain() -> Response:
    """Explain the enrichment of a single alert or of every alert in a webhook payload."""
    document = decode_body(request.get_data(cache=False))
    alerts = alerts_for_explain(document)
    enricher = runtime().enrichment.current.enricher
    return jsonify({"ruleset_version": enricher.ruleset.version, "alerts": explain_alerts(enricher, alerts)})
