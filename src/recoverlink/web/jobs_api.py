"""The outbox under /api/v1/jobs (admin): list, show, retry now, discard.

The same operations as `recoverlink jobs list|show|retry|discard`; a retry or discard that the job's
state does not allow is a 409 naming the states it is allowed in.
"""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request

from recoverlink.domain.bounds import MAX_BIGINT
from recoverlink.domain.errors import NotFound, PayloadInvalid
from recoverlink.domain.outbox import JobState
from recoverlink.domain.recovery_state import TransitionSource
from recoverlink.domain.tokens import Role
from recoverlink.job_operations import discard_job, job_record, retry_job
from recoverlink.store import outbox
from recoverlink.store.outbox import JobFilter
from recoverlink.web.api import int_arg
from recoverlink.web.auth import require_role
from recoverlink.web.runtime import runtime

bp = Blueprint("jobs", __name__, url_prefix="/api/v1")

MAX_PAGE = 500
OPERATOR = TransitionSource.OPERATOR.value


def _filters() -> JobFilter:
    states = [part for raw in request.args.getlist("state") for part in raw.split(",") if part]
    known = [s.value for s in JobState]
    unknown = [s for s in states if s not in known]
    if unknown:
        raise PayloadInvalid(f"unknown state {unknown[0]!r}; states are {', '.join(known)}", field="state")
    kind = request.args.get("kind")
    if kind is not None and (not kind or len(kind) > 64 or "\x00" in kind):
        raise PayloadInvalid("kind must be 1 to 64 characters, without NUL", field="kind")
    recovery_id = int_arg("recovery_id", None, 1, MAX_BIGINT)
    return JobFilter(states=tuple(dict.fromkeys(states)), kind=kind, recovery_id=recovery_id)


@bp.get("/jobs")
@require_role(Role.ADMIN)
def list_view() -> Response:
    """Jobs newest first; `next_cursor` fetches the next page."""
    filters = _filters()
    limit = int_arg("limit", 50, 1, MAX_PAGE) or 50
    cursor = int_arg("cursor", None, 1, MAX_BIGINT)
    with runtime().store.read() as conn:
        jobs, more = outbox.list_jobs(conn, filters, limit=limit, before_id=cursor)
    return jsonify({"items": [job_record(j) for j in jobs], "next_cursor": more})


def _job_id(job_id: int) -> int:
    if not 1 <= job_id <= MAX_BIGINT:
        raise NotFound(f"job {job_id} not found")
    return job_id


@bp.get("/jobs/<int:job_id>")
@require_role(Role.ADMIN)
def detail_view(job_id: int) -> Response:
    with runtime().store.read() as conn:
        job = outbox.get_job(conn, _job_id(job_id))
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return jsonify(job_record(job))


@bp.post("/jobs/<int:job_id>/retry")
@require_role(Role.ADMIN)
def retry_view(job_id: int) -> Response:
    """Make a dead, discarded or waiting job due now, with a fresh set of attempts."""
    rt = runtime()
    job = retry_job(rt.store, _job_id(job_id), rt.clock(), g.token.name, OPERATOR)
    return jsonify(job_record(job))


@bp.post("/jobs/<int:job_id>/discard")
@require_role(Role.ADMIN)
def discard_view(job_id: int) -> Response:
    """Give up on a job; a worker running it right now records nothing."""
    rt = runtime()
    job = discard_job(rt.store, _job_id(job_id), rt.clock(), g.token.name, OPERATOR)
    return jsonify(job_record(job))
