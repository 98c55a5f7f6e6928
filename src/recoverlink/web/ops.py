"""Prometheus-style operational endpoints: /-/healthy, /-/ready and /metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy.exc import SQLAlchemyError

from recoverlink.domain.errors import StoreUnavailable
from recoverlink.store import migrate
from recoverlink.telemetry import render_metrics
from recoverlink.web.runtime import runtime

bp = Blueprint("ops", __name__)


@bp.get("/-/healthy")
def healthy() -> Response:
    return Response("recoverlink is healthy.\n", mimetype="text/plain")


@bp.get("/-/ready")
def ready() -> Response:
    """Ready when the store answers and its schema is at the head migration."""
    rt = runtime()
    try:
        current = migrate.current_revision(rt.store.engine)
    except SQLAlchemyError as exc:
        return _not_ready(f"store unreachable: {type(exc).__name__}")
    head = migrate.head_revision()
    if current != head:
        return _not_ready(f"store schema at {current or 'nothing'}, needs {head}")
    return Response("recoverlink is ready.\n", mimetype="text/plain")


def _not_ready(reason: str) -> Response:
    response = jsonify({"error": {"code": StoreUnavailable.code, "message": reason}})
    response.status_code = 503
    return response


@bp.get("/metrics")
def metrics() -> Response:
    body, content_type = render_metrics(runtime().metrics.registry)
    return Response(body, content_type=content_type)
