"""Signing in to the board: an agent or operator pastes an API token once; the session remembers it.

The session is Flask's signed cookie (HttpOnly, SameSite=Strict, Secure by config), signed with
`board.session_secret`. It holds the token's id and a CSRF token, never the token: each request reads
the token's name and role from the store by id, so revoking a token ends its sessions at once. Every
POST of the board carries the session's CSRF token in a hidden field and is refused (403) without it.
The JSON API never reads this cookie: it takes bearer tokens only, so the cookie cannot act there.
Nor is it opened there: only the pages' paths verify it (`PageSessionInterface`), so the webhook, the
API and /metrics do not pay for its signature check on every request.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable, Mapping
from functools import wraps
from typing import ParamSpec
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Request,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.wrappers import Response

from recoverlink.config.base import SecretSource
from recoverlink.config.board import BoardConfig
from recoverlink.config.secrets import read_secret
from recoverlink.domain.errors import ConfigErrors, Forbidden
from recoverlink.domain.tokens import Role
from recoverlink.store.tokens import TokenInfo, find_token, token_by_id
from recoverlink.web.pages import html_blueprint, is_page_path, secure_headers
from recoverlink.web.runtime import runtime

bp = html_blueprint(Blueprint("board_session", __name__, url_prefix="/board"))

P = ParamSpec("P")
SESSION_COOKIE = "recoverlink_session"
CSRF_FIELD = "csrf_token"
TOKEN_MAX_LENGTH = 512
SIGN_IN_OFF = "RECOVERLINK_BOARD_SIGN_IN_OFF"  # app.config: why nobody can sign in, or None
log = logging.getLogger(__name__)
_TOKEN_ID, _CSRF = "token_id", "csrf"


class CsrfRejected(Forbidden):
    code = "csrf-rejected"


class PageSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, opened on the pages' paths (board, status page) only.

    Every other request (the webhook above all) gets Flask's null session, which refuses writes:
    nothing there reads the cookie, and verifying its signature cost each of them ~0.1 ms of CPU."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not is_page_path(request.path):
            return None
        return super().open_session(app, request)


def configure_sessions(app: Flask, config: BoardConfig, environ: Mapping[str, str]) -> None:
    """The session cookie's flags and the secret that signs it; without a secret nobody can sign in."""
    app.session_interface = PageSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=config.secure_cookie,
        PERMANENT_SESSION_LIFETIME=config.session_lifetime,
    )
    app.config[SIGN_IN_OFF] = "board.session_secret is not configured"
    if config.session_secret is not None:
        _read_session_secret(app, config.session_secret, environ)
    # Functions, not values: an error page (the store down) must render without asking the store.
    app.context_processor(lambda: {"current_viewer": current_viewer, "csrf_token": csrf_token})


def _read_session_secret(app: Flask, source: SecretSource, environ: Mapping[str, str]) -> None:
    """Degrade, don't drop: a secret that cannot be read turns sign-in off (logged, and said on the
    sign-in page) but never stops the webhook and the API from serving."""
    try:
        app.secret_key = read_secret(source, environ, "board session secret")
    except ConfigErrors as exc:
        log.error("board sign-in is off: the session secret cannot be read", extra={"error": str(exc)})
        app.config[SIGN_IN_OFF] = "board.session_secret cannot be read (the server log says why)"
    else:
        app.config[SIGN_IN_OFF] = None


def sign_in_enabled() -> bool:
    return bool(current_app.secret_key)


def current_viewer() -> TokenInfo | None:
    """The signed-in token, read from the store by the session's id (None: not signed in, or revoked)."""
    if "board_viewer" not in g:
        token_id = session.get(_TOKEN_ID) if sign_in_enabled() else None
        info = None
        if isinstance(token_id, int):
            with runtime().store.read() as conn:
                info = token_by_id(conn, token_id)
            if info is None:
                session.clear()
        g.board_viewer = info
    viewer: TokenInfo | None = g.board_viewer
    return viewer


def can_operate() -> bool:
    viewer = current_viewer()
    return viewer is not None and viewer.role.grants(Role.OPERATOR)


def csrf_token() -> str:
    """The session's CSRF token, made on first use."""
    if not sign_in_enabled():
        return ""
    if _CSRF not in session:
        session[_CSRF] = secrets.token_urlsafe(32)
    return str(session[_CSRF])


def check_csrf() -> None:
    """Refuse a POST whose form does not carry the session's CSRF token (compared in constant time)."""
    if request.method != "POST":
        return
    expected = session.get(_CSRF) if sign_in_enabled() else None
    given = request.form.get(CSRF_FIELD, "")
    if not expected or not hmac.compare_digest(str(expected).encode(), given.encode()):
        raise CsrfRejected(
            "This form has expired or did not come from this board: reload the page and try again."
        )


bp.before_request(check_csrf)


def readers(
    public: Callable[[BoardConfig], bool], *, fragment: bool = False
) -> Callable[[Callable[P, Response]], Callable[P, Response]]:
    """Let a view be read by anyone when `public(board config)`, else by a signed-in token of any role.

    A page sends the others to the sign-in page; a `fragment` (what live updates fetch) answers 401."""

    def decorate(view: Callable[P, Response]) -> Callable[P, Response]:
        @wraps(view)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> Response:
            if public(runtime().settings.config.board) or current_viewer() is not None:
                return view(*args, **kwargs)
            if fragment:
                return secure_headers(Response("sign in to read the board", 401, mimetype="text/plain"))
            return sign_in_redirect()

        return wrapped

    return decorate


def operators(view: Callable[P, Response]) -> Callable[P, Response]:
    """Let only a signed-in operator (or admin) token use a view; `g.operator` is its token."""

    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> Response:
        viewer = current_viewer()
        if viewer is None:
            return sign_in_redirect()
        if not viewer.role.grants(Role.OPERATOR):
            raise Forbidden(f"This needs an operator token; you signed in with a {viewer.role.value} token.")
        g.operator = viewer
        return view(*args, **kwargs)

    return wrapped


def sign_in_redirect() -> Response:
    target = request.full_path.rstrip("?") if request.method == "GET" else request.path
    return redirect(url_for("board_session.sign_in", next=target), 303)


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a board or status page of this site, never another site."""
    parts = urlsplit(value or "")
    local = not parts.scheme and not parts.netloc and not (value or "").startswith(("//", "/\\"))
    own = parts.path == url_for("board_session.sign_in")
    return value if value and local and not own and is_page_path(parts.path) else url_for("board.board_page")


@bp.get("/sign-in")
def sign_in() -> Response:
    """The sign-in form: paste an API token once."""
    return _sign_in_form(200)


@bp.post("/sign-in")
def sign_in_post() -> Response:
    """Check the pasted token; start a fresh session (new CSRF token) that holds its id only."""
    if not sign_in_enabled():
        return _sign_in_form(503)
    token = request.form.get("token", "").strip()
    info = None
    if 0 < len(token) <= TOKEN_MAX_LENGTH:
        with runtime().store.read() as conn:
            info = find_token(conn, token)
    if info is None:
        return _sign_in_form(401, error="That token is unknown or revoked.")
    session.clear()
    session.permanent = True
    session[_TOKEN_ID] = info.id
    session[_CSRF] = secrets.token_urlsafe(32)
    return redirect(safe_next(request.form.get("next")), 303)


@bp.post("/sign-out")
def sign_out() -> Response:
    session.clear()
    return redirect(url_for("board.board_page"), 303)


def _sign_in_form(status: int, error: str | None = None) -> Response:
    body = render_template(
        "sign_in.html",
        enabled=sign_in_enabled(),
        off_because=current_app.config.get(SIGN_IN_OFF),
        error=error,
        next=safe_next(request.values.get("next")),
    )
    return Response(body, status, mimetype="text/html")
