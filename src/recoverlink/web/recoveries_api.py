"""The recoveries API under /api/v1: list, detail, operator transitions and edits (issue [recoveries]).

Operator writes go through `recovery_operations`, as the board's forms do: one write transaction with
the recovery row locked, the state machine, and an audit entry per change with the token's name as
actor. A transition to
`impact_confirmed`, `workaround_available` or `fix_in_progress` is applied as the operator's
`impact_confirmed`, `workaround_published` or `fix_started` event (what ITSM or the worker would send
for the same step, so actions and metrics see one kind of event); any other target is
`moved_by_operator`. Either way the target must be one `allowed_operator_targets` names: a later
stage, or canceled.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from flask import Blueprint, Response, g, jsonify, request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection

from recoverlink.domain.bounds import MAX_BIGINT
from recoverlink.domain.errors import NotFound, PayloadInvalid
from recoverlink.domain.priority import PRIORITIES, UNKNOWN
from recoverlink.domain.recovery_state import RecoveryState
from recoverlink.domain.tokens import Role
from recoverlink.postmortem import draft_postmortem
from recoverlink.recovery_operations import TEXT_FIELDS, Change, moving, patching
from recoverlink.store.board_queries import load_board_recovery
from recoverlink.store.recovery_queries import (
    RecoveryFilter,
    detail_record,
    list_recoveries,
    load_recovery,
    summary_record,
)
from recoverlink.store.tokens import TokenInfo
from recoverlink.web import openapi
from recoverlink.web.auth import require_role
from recoverlink.web.pages import markdown_response
from recoverlink.web.runtime import runtime

bp = Blueprint("recoveries", __name__, url_prefix="/api/v1")

DEFAULT_PAGE, MAX_PAGE = 50, 500
PRIORITY_FILTERS = (*PRIORITIES, UNKNOWN)
CURSOR_ALPHABET = string.digits + string.ascii_letters
MAX_CURSOR_LENGTH = 10  # 62**10 > 8e17 ids, and every 10-character cursor fits a BIGINT
M = TypeVar("M", bound=BaseModel)


def _storable(value: str) -> str:
    """Refuse what a database cannot keep (PostgreSQL text holds no NUL) or what is only blanks."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Reason = Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_storable)]
LongText = Annotated[str, Field(min_length=1, max_length=10000), AfterValidator(_storable)]
TeamName = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_storable)]


class TransitionRequest(BaseModel):
    """Body of POST /recoveries/<id>/transitions."""

    model_config = ConfigDict(extra="forbid")

    target: RecoveryState
    reason: Reason
    workaround: LongText | None = None  # null or absent: leave as it is
    public_message: LongText | None = None


class RecoveryPatch(BaseModel):
    """Body of PATCH /recoveries/<id>; a null workaround or public message clears it."""

    model_config = ConfigDict(extra="forbid")

    owner: TeamName | None = None
    workaround: LongText | None = None
    public_message: LongText | None = None


def parse_body(model: type[M]) -> M:
    """Validate the JSON body; the first problem becomes a 400 naming its field."""
    try:
        return model.model_validate_json(request.get_data(cache=False) or b"")
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        where = f"{field}: " if field else "request body: "
        raise PayloadInvalid(where + first["msg"], field=field) from exc


# --- query arguments -------------------------------------------------------------------------


def _text_arg(name: str, max_length: int = 255) -> str | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if not raw or len(raw) > max_length or "\x00" in raw:
        raise PayloadInvalid(f"{name} must be 1 to {max_length} characters, without NUL", field=name)
    return raw


def _states_arg() -> tuple[str, ...]:
    """`state` repeated and/or comma-separated."""
    names = [part.strip() for raw in request.args.getlist("state") for part in raw.split(",")]
    known = {s.value for s in RecoveryState}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise PayloadInvalid(
            f"unknown state {unknown[0]!r}; states are {', '.join(s.value for s in RecoveryState)}",
            field="state",
        )
    return tuple(dict.fromkeys(names))


def _limit_arg() -> int:
    raw = request.args.get("limit")
    if raw is None:
        return DEFAULT_PAGE
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE:
        raise PayloadInvalid(f"limit must be a whole number from 1 to {MAX_PAGE}", field="limit")
    return int(raw)


def _time_arg(name: str) -> datetime | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
        if value.tzinfo is None:
            raise ValueError("no offset")
        return value.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise PayloadInvalid(
            f"{name} must be an RFC 3339 time with an offset, e.g. 2026-11-22T18:00:00Z", field=name
        ) from exc


def encode_cursor(before_id: int) -> str:
    """An opaque cursor: the id to continue before, in base 62 (every id a BIGINT sequence reaches)."""
    digits = ""
    while True:
        before_id, rest = divmod(before_id, 62)
        digits = CURSOR_ALPHABET[rest] + digits
        if before_id == 0:
            return digits


def decode_cursor(cursor: str) -> int:
    """The id a cursor continues before; PayloadInvalid when it cannot be one we issued."""
    if not 1 <= len(cursor) <= MAX_CURSOR_LENGTH or not set(cursor) <= set(CURSOR_ALPHABET):
        raise PayloadInvalid("cursor is not one this API returned as next_cursor", field="cursor")
    value = 0
    for char in cursor:
        value = value * 62 + CURSOR_ALPHABET.index(char)
    return value


def _filters() -> RecoveryFilter:
    priority = _text_arg("priority", 16)
    if priority is not None and priority not in PRIORITY_FILTERS:
        raise PayloadInvalid(f"priority must be one of {', '.join(PRIORITY_FILTERS)}", field="priority")
    return RecoveryFilter(
        states=_states_arg(),
        service=_text_arg("service"),
        team=_text_arg("team"),
        owner=_text_arg("owner"),
        priority=priority,
        opened_after=_time_arg("opened_after"),
        opened_before=_time_arg("opened_before"),
    )


# --- views -----------------------------------------------------------------------------------


@bp.get("/recoveries")
@require_role(Role.VIEWER)
def list_view() -> Response:
    """Recoveries newest first, filtered; `next_cursor` fetches the next page."""
    filters, limit = _filters(), _limit_arg()
    cursor = request.args.get("cursor")
    before_id = decode_cursor(cursor) if cursor is not None else None
    with runtime().store.read() as conn:
        page = list_recoveries(conn, filters, limit=limit, before_id=before_id)
    next_cursor = encode_cursor(page.next_before_id) if page.next_before_id is not None else None
    return jsonify({"items": [summary_record(item) for item in page.items], "next_cursor": next_cursor})


@bp.get("/recoveries/<int:recovery_id>")
@require_role(Role.VIEWER)
def detail_view(recovery_id: int) -> Response:
    """One recovery: summary, alerts, first enrichment, incident link and audit timeline."""
    _exists(recovery_id)
    with runtime().store.read() as conn:
        return jsonify(_detail(conn, recovery_id))


@bp.post("/recoveries/<int:recovery_id>/transitions")
@require_role(Role.OPERATOR)
def transition_view(recovery_id: int) -> Response:
    """Move a recovery by hand, with a reason; 409 names the targets it can move to."""
    _exists(recovery_id)
    body = parse_body(TransitionRequest)
    texts = {name: getattr(body, name) for name in TEXT_FIELDS if getattr(body, name) is not None}
    return _write(recovery_id, moving(runtime().jobs, body.target, body.reason, texts))


@bp.patch("/recoveries/<int:recovery_id>")
@require_role(Role.OPERATOR)
def patch_view(recovery_id: int) -> Response:
    """Set the owner team (an owner_known event), the workaround or the public message."""
    _exists(recovery_id)
    body = parse_body(RecoveryPatch)
    if not body.model_fields_set:
        raise PayloadInvalid("nothing to change: send owner, workaround and/or public_message")
    if "owner" in body.model_fields_set:
        _check_team(body.owner)
    texts = {name: getattr(body, name) for name in body.model_fields_set & set(TEXT_FIELDS)}
    return _write(recovery_id, patching(runtime().jobs, body.owner, texts))


@bp.get("/recoveries/<int:recovery_id>/postmortem.md")
@require_role(Role.VIEWER)
def postmortem_view(recovery_id: int) -> Response:
    """A postmortem draft in Markdown from the recovery record, open questions left for people."""
    _exists(recovery_id)
    rt = runtime()
    stale_after = rt.enrichment.current.enricher.ruleset.defaults.stale_after
    with rt.store.read() as conn:
        found = load_board_recovery(conn, recovery_id, now=rt.clock(), default_stale_after=stale_after)
    if found is None:
        raise NotFound(f"recovery {recovery_id} not found")
    text = draft_postmortem(found.detail, found.context, rt.clock())
    return markdown_response(text, f"recovery-{recovery_id}-postmortem.md")


@bp.get("/openapi.json")
def openapi_view() -> Response:
    """The OpenAPI document of /api/v1; no token needed. It lists the owner teams PATCH accepts."""
    return jsonify(openapi.openapi_document(known_teams()))


# --- the operator flow (shared with the board: recovery_operations) ---------------------------


def _exists(recovery_id: int) -> None:
    """Flask's int converter takes any size; ids beyond BIGINT are as unknown as any other."""
    if not 1 <= recovery_id <= MAX_BIGINT:
        raise NotFound(f"recovery {recovery_id} not found")


def _detail(conn: Connection, recovery_id: int) -> dict[str, Any]:
    rt = runtime()
    default_stale_after = rt.enrichment.current.enricher.ruleset.defaults.stale_after
    detail = load_recovery(conn, recovery_id, now=rt.clock(), default_stale_after=default_stale_after)
    if detail is None:
        raise NotFound(f"recovery {recovery_id} not found")
    return detail_record(detail)


def _write(recovery_id: int, change: Change) -> Response:
    """Apply `change` as the token's holder; answer with the recovery as committed."""
    token: TokenInfo = g.token
    applied = runtime().operations.apply(
        recovery_id, token.name, runtime().clock(), change, lambda conn: _detail(conn, recovery_id)
    )
    return jsonify(applied.answer)


def known_teams() -> tuple[str, ...]:
    """The owner teams PATCH accepts: the catalog's teams and its fallback owner; () when it has none."""
    catalog = runtime().enrichment.current.enricher.catalog
    if not catalog.teams:
        return ()
    return tuple(sorted({*catalog.teams, *([catalog.fallback_owner] if catalog.fallback_owner else [])}))


def _check_team(owner: str | None) -> None:
    """An owner is a team the catalog knows (metric labels stay bounded); any name if it knows none."""
    if owner is None:
        raise PayloadInvalid("owner: an owner team cannot be removed, only replaced", field="owner")
    teams = known_teams()
    if teams and owner not in teams:
        raise PayloadInvalid(
            f"owner: unknown team {owner!r}; teams come from the catalog: {', '.join(teams)}", field="owner"
        )
