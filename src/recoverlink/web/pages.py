"""What every HTML page shares: security headers, HTML error pages and the template filters.

The API answers errors in JSON (`errors.py`); a person's browser gets a page instead. Scripts and styles
come only from /static (the Content-Security-Policy allows no inline script or style), and no page may
be framed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TypeVar

from flask import Blueprint, Flask, make_response, render_template
from flask import Response as FlaskResponse
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from recoverlink.domain.errors import InputError, StoreUnavailable
from recoverlink.logs import request_id
from recoverlink.waterfall import format_duration

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
HTML_PREFIXES = ("/board", "/status")
R = TypeVar("R", bound=Response)


def secure_headers(response: R) -> R:
    """Add the security headers; pages show internal data, so no shared cache keeps them either."""
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def is_page_path(path: str) -> bool:
    """Whether a URL is one of the HTML pages (their errors are pages too, even a routing 404)."""
    return any(path == prefix or path.startswith((prefix + "/", prefix + ".")) for prefix in HTML_PREFIXES)


def error_page(status: int, code: str, message: str) -> Response:
    """An HTML error page with the stable code and the request id, as the JSON errors carry them."""
    body = render_template(
        "error.html", status=status, code=code, message=message, request_id=request_id.get()
    )
    return secure_headers(make_response(body, status))


def html_blueprint(bp: Blueprint) -> Blueprint:
    """Give a blueprint of pages the security headers and HTML error pages."""
    bp.after_request(secure_headers)

    @bp.errorhandler(InputError)
    def _input(exc: InputError) -> Response:
        return error_page(exc.status, exc.code, exc.message)

    @bp.errorhandler(StoreUnavailable)
    def _store(exc: StoreUnavailable) -> Response:
        log.warning("store unavailable", extra={"error": str(exc)})
        response = error_page(503, exc.code, "The store is unavailable; this page will work again shortly.")
        response.headers["Retry-After"] = "5"
        return response

    @bp.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        return http_error_page(exc)

    @bp.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_page(500, "internal-error", "Something went wrong here; the server log says what.")

    return bp


def http_error_page(exc: HTTPException) -> Response:
    code = (exc.name or "error").lower().replace(" ", "-")
    return error_page(exc.code or 500, code, exc.description or code)


def markdown_response(text: str, filename: str) -> FlaskResponse:
    """A Markdown document shown as text (never sniffed as HTML: `nosniff` comes with it)."""
    response = make_response(text)
    response.mimetype = "text/markdown"
    response.headers["Content-Disposition"] = f'inline; filename="{filename}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def utc(value: datetime | None) -> str:
    """`2026-11-22 18:10 UTC`: agents on several continents read one clock."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


def install_templates(app: Flask) -> None:
    """Template filters, and block tags that leave no blank lines behind."""
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    app.add_template_filter(utc, "utc")
    app.add_template_filter(format_duration, "duration")
    app.add_template_filter(lambda value: value.isoformat() if value is not None else "", "iso")
