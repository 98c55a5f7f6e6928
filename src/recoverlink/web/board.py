"""The agents' recovery board: `GET /board` (one card per open recovery, most severe first, filtered by
team, journey and segment), `GET /board/cards` (the cards alone, what live updates fetch), and one
recovery's page with where its time went and, for operators, the forms that move it.

Live updates are short polling: `static/board.js` asks for the cards every `board.refresh_seconds`
with the ETag it has, gets 304 while nothing changed, and swaps the cards in place otherwise. An SSE
stream would hold a gunicorn thread per open board; a poll holds one for a few milliseconds. With
JavaScript off the board is the same page, refreshed by reloading it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from flask import Blueprint, make_response, render_template, request
from markupsafe import Markup
from werkzeug.wrappers import Response

from recoverlink.config.board import BoardConfig
from recoverlink.domain.bounds import MAX_BIGINT
from recoverlink.domain.errors import NotFound
from recoverlink.postmortem import draft_postmortem
from recoverlink.recovery_words import describe_entry
from recoverlink.store.board_queries import BoardDetail, BoardRecovery, load_board_recovery, open_recoveries
from recoverlink.waterfall import build_waterfall
from recoverlink.web.board_actions import available_actions
from recoverlink.web.board_session import can_operate, readers
from recoverlink.web.board_view import (
    BoardFilters,
    Card,
    FilterOptions,
    board_cards,
    build_card,
    filter_options,
    parse_filters,
)
from recoverlink.web.pages import html_blueprint, markdown_response
from recoverlink.web.runtime import runtime

bp = html_blueprint(Blueprint("board", __name__, url_prefix="/board"))


@dataclass(frozen=True)
class CardsView:
    cards: list[Card]
    shown: list[Card]  # after the filters
    truncated: bool
    filters: BoardFilters
    options: FilterOptions
    html: str  # the rendered cards
    etag: str


def _board_public(config: BoardConfig) -> bool:
    return config.public


def _cards_view(filters: BoardFilters) -> CardsView:
    rt = runtime()
    with rt.store.read() as conn:
        found = open_recoveries(conn)
    catalog = rt.enrichment.current.enricher.catalog
    cards = board_cards(found.items, catalog, rt.clock())
    shown = [card for card in cards if filters.matches(card)]
    html = render_template("_cards.html", cards=shown, total=len(cards), truncated=found.truncated)
    etag = hashlib.sha256(html.encode()).hexdigest()[:32]
    return CardsView(cards, shown, found.truncated, filters, filter_options(cards, catalog), html, etag)


@bp.get("")
@readers(_board_public)
def board_page() -> Response:
    """The board: filters, the cards, and the script that keeps them live."""
    view = _cards_view(parse_filters(request.args))
    body = render_template(
        "board.html",
        view=view,
        cards_html=Markup(view.html),  # noqa: S704  rendered by Jinja2 with autoescape on
        refresh_seconds=runtime().settings.config.board.refresh_seconds,
    )
    return make_response(body)


@bp.get("/cards")
@readers(_board_public, fragment=True)
def cards() -> Response:
    """The cards alone, with an ETag: 304 while they have not changed."""
    view = _cards_view(parse_filters(request.args))
    response = make_response(view.html)
    response.set_etag(view.etag)
    response.headers["Cache-Control"] = "no-cache, private"
    response.headers["X-Recoveries-Shown"] = str(len(view.shown))
    return response.make_conditional(request)


def _load(recovery_id: int) -> BoardDetail:
    rt = runtime()
    stale_after = rt.enrichment.current.enricher.ruleset.defaults.stale_after
    found = None
    if 1 <= recovery_id <= MAX_BIGINT:
        with rt.store.read() as conn:
            found = load_board_recovery(conn, recovery_id, now=rt.clock(), default_stale_after=stale_after)
    if found is None:
        raise NotFound(f"Recovery {recovery_id} does not exist.")
    return found


@bp.get("/recoveries/<int:recovery_id>")
@readers(_board_public)
def recovery(recovery_id: int) -> Response:
    """One recovery: its card, alerts, where the time went, the timeline and the operator's forms."""
    rt = runtime()
    found = _load(recovery_id)
    catalog = rt.enrichment.current.enricher.catalog
    card = build_card(BoardRecovery(found.detail.summary, found.context), catalog, rt.clock())
    body = render_template(
        "recovery.html",
        card=card,
        detail=found.detail,
        waterfall=build_waterfall(found.detail.summary.milestones, found.detail.timeline),
        timeline=[(entry, describe_entry(entry)) for entry in reversed(found.detail.timeline)],
        actions=available_actions(found.detail.summary) if can_operate() else frozenset(),
    )
    return make_response(body)


@bp.get("/recoveries/<int:recovery_id>/postmortem.md")
@readers(_board_public)
def postmortem(recovery_id: int) -> Response:
    """The postmortem draft of a recovery, as the API serves it."""
    found = _load(recovery_id)
    text = draft_postmortem(found.detail, found.context, runtime().clock())
    return markdown_response(text, f"recovery-{recovery_id}-postmortem.md")
