"""POST /webhook/alertmanager: authenticate, then hand the body to the ingest flow."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from recoverlink.domain.errors import (
    PayloadInvalid,
    PayloadTooLarge,
    StoreUnavailable,
    Unauthorized,
)
from recoverlink.domain.json_text import compact_json
from recoverlink.ingest import IngestOutcome, ingest_webhook
from recoverlink.web.runtime import Runtime, runtime

bp = Blueprint("webhook", __name__)
log = logging.getLogger(__name__)


@bp.post("/webhook/alertmanager")
def alertmanager() -> Response:
    rt = runtime()
    counter = rt.metrics.notifications
    if not rt.webhook_credentials.accepts(request.headers.get("Authorization")):
        counter.labels(outcome="unauthorized").inc()
        raise Unauthorized("missing or wrong webhook credentials (bearer token or basic auth)")
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge as exc:
        counter.labels(outcome="rejected").inc()
        limit = rt.settings.config.webhook.max_body_bytes
        raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes") from exc
    try:
        enricher = rt.enrichment.current.enricher
        outcome = ingest_webhook(
            rt.store, body, rt.alert_policy, enricher, rt.clock(), plan=rt.jobs, recent=rt.recent_episodes
        )
    except PayloadInvalid as exc:
        counter.labels(outcome="rejected").inc()
        log.info("notification rejected", extra={"reason": exc.message})
        raise
    except StoreUnavailable:
        counter.labels(outcome="unavailable").inc()
        raise
    # Written by orjson: Flask's jsonify cost more than the rest of the answer on this path.
    return Response(compact_json(_observe(rt, outcome)) + b"\n", mimetype="application/json")


def _observe(rt: Runtime, outcome: IngestOutcome) -> dict[str, object]:
    """Count the delivery and its alerts, log it, and build the answer body."""
    status = "duplicate" if outcome.duplicate else "accepted"
    of, metrics = rt.children.of, rt.metrics
    of(metrics.notifications, outcome=status).inc()
    for (alert_status, result), count in outcome.alert_results.items():
        of(metrics.alerts_received, status=alert_status.value, result=result.value).inc(count)
    for reason, count in outcome.misses.items():
        of(metrics.enrichment_misses, reason=reason.value).inc(count)
    tracked = outcome.recoveries
    for opened in tracked.opened:
        rt.metrics.recovery_opened(opened.team, opened.priority, opened.service)
    for reopened in tracked.reopened:
        rt.metrics.recovery_reopened(reopened.team, reopened.priority, reopened.service)
    for team in tracked.storm_joins:
        rt.metrics.storm_episodes.labels(rt.metrics.bounds.team(team)).inc()
    for done in tracked.transitions:
        rt.metrics.transition_observed(done.transition, done.team, done.priority, done.service, done.finish)
    results = {f"{s.value}_{r.value}": n for (s, r), n in sorted(outcome.alert_results.items())}
    # A copy (the HA pair's second member, a re-send) changes nothing: it says so at DEBUG only.
    level = logging.DEBUG if outcome.duplicate else logging.INFO
    if log.isEnabledFor(level):
        extra = {"notification_id": outcome.notification_id, "outcome": status, **results}
        log.log(level, "notification stored", extra=extra)
    return {
        "status": status,
        "notification_id": outcome.notification_id,
        "alerts": results,
        "flagged_alerts": outcome.flagged_alerts,
    }
