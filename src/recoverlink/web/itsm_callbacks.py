"""`POST /webhook/itsm/<system>`: state changes from the ITSM (a ServiceNow Business Rule, a Jira
webhook, an RT scrip), authenticated with the system's callback secret and applied once each.

Authentication: `Authorization: Bearer <secret>`; Jira, whose webhooks cannot send headers of their
own, may instead sign the body (`X-Hub-Signature: sha256=<HMAC-SHA256 of the body>`) or put the
secret in the URL (`?secret=...`). The answer is 2xx as soon as the change is stored, so the ITSM
does not retry: `applied`, `duplicate`, `stale`, `echo` or `unknown_incident`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from flask import Blueprint, Request, Response, jsonify, request

from recoverlink.domain.errors import Forbidden, NotFound, Unauthorized
from recoverlink.itsm_changes import apply_change
from recoverlink.web.runtime import runtime

bp = Blueprint("itsm_callbacks", __name__)
log = logging.getLogger(__name__)


@bp.post("/webhook/itsm/<system>")
def callback(system: str) -> Response:
    rt = runtime()
    itsm = rt.itsm
    adapter = itsm.adapters.get(system)
    if adapter is None:
        raise NotFound(f"no ITSM {system!r} is configured (itsm.{system})")
    secret = itsm.callback_secrets.get(system)
    if secret is None:
        raise Forbidden(f"callbacks from {system} are off: set itsm.{system}.callback_secret")
    if not authenticated(request, secret, allow_signature=system == "jira"):
        raise Unauthorized(f"missing or wrong {system} callback secret")
    body = request.get_data(cache=False)
    change = adapter.parse_callback(body, {k.lower(): v for k, v in request.headers.items()})
    now = rt.clock()
    with rt.store.write() as conn:
        outcome = apply_change(conn, change, itsm.rules(), rt.jobs, now)
    outcome.observe(rt.metrics)
    log.info(
        "ITSM change",
        extra={
            "itsm": system,
            "incident": change.incident_id,
            "outcome": outcome.outcome,
            "recovery_id": outcome.recovery_id,
        },
    )
    return jsonify({"status": outcome.outcome, "recovery_id": outcome.recovery_id})


def authenticated(req: Request, secret: str, *, allow_signature: bool) -> bool:
    """The bearer header, or (where allowed) an HMAC signature of the body or `?secret=`; constant time."""
    scheme, _, value = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return hmac.compare_digest(value.strip().encode(), secret.encode())
    if not allow_signature:
        return False
    signature = req.headers.get("X-Hub-Signature", "")
    if signature.startswith("sha256="):
        expected = hmac.new(secret.encode(), req.get_data(cache=True), hashlib.sha256).hexdigest()
        return hmac.compare_digest(signature.removeprefix("sha256=").encode(), expected.encode())
    given = req.args.get("secret")
    return given is not None and hmac.compare_digest(given.encode(), secret.encode())
