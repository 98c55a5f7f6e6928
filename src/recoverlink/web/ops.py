"""Prometheus-style operational endpoints: /-/healthy, /-/ready and /metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy.exc import SQLAlchemyError

from recoverlink.domain.errors import StoreUnavailable
from recoverlink.domain.tokens import Role
from recoverlink.reload import reload_and_announce
from recoverlink.store import migrate
from recoverlink.store_gauges import OutboxGauges, RecoveryStateGauge
from recoverlink.telemetry import render_metrics
from recoverlink.web.auth import require_role
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
    rt = runtime()
    max_services = rt.settings.config.metrics.max_services
    gauges = (RecoveryStateGauge(rt.store, max_services), OutboxGauges(rt.store, rt.clock))
    body, content_type = render_metrics(rt.metrics.registry, *gauges)
    return Response(body, content_type=content_type)


@bp.post("/-/reload")
@require_role(Role.ADMIN)
def reload() -> Response:
    """Validate catalog and rules on disk; swap and announce them, or keep the running ones and say why."""
    rt = runtime()
    outcome = reload_and_announce(rt.settings.config_path, rt.enrichment, rt.store, rt.metrics, rt.clock())
    if outcome.ok:
        return jsonify({"status": "reloaded", "version": outcome.version, "changed": outcome.changed})
    response = jsonify(
        {
            "error": {
                "code": "config-invalid",
                "message": f"reload failed; still running version {outcome.version}",
                "errors": list(outcome.errors),
            }
        }
    )
    response.status_code = 400
    return response
