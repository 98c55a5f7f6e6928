"""One place that turns errors into JSON answers: never a traceback, never HTML from the API.

The HTML pages (board, status page) answer with error pages of their own (`pages.html_blueprint`);
a URL under them that matches no route gets one here."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from recoverlink.domain.errors import InputError, StateConflict, StoreUnavailable
from recoverlink.logs import request_id
from recoverlink.web.pages import http_error_page, is_page_path

log = logging.getLogger(__name__)


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    rid = request_id.get()
    if rid is not None:
        error["request_id"] = rid
    return {"error": error}


def _answer(status: int, body: dict[str, Any]) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(InputError)
    def _input(exc: InputError) -> Response:
        body = error_body(exc.code, exc.message, exc.field)
        if isinstance(exc, StateConflict):
            body["error"].update(current=exc.current, allowed=list(exc.allowed))
        response = _answer(exc.status, body)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="recoverlink"'
        return response

    @app.errorhandler(StoreUnavailable)
    def _store(exc: StoreUnavailable) -> Response:
        log.warning("store unavailable", extra={"error": str(exc)})
        response = _answer(503, error_body(exc.code, "the store is unavailable; retry later"))
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> BaseResponse:
        if request.blueprint is None and is_page_path(request.path):  # e.g. /board/no-such-page
            return http_error_page(exc)
        code = (exc.name or "error").lower().replace(" ", "-")
        response = _answer(exc.code or 500, error_body(code, exc.description or code))
        for name in ("Allow", "Retry-After"):
            original = exc.get_response().headers.get(name)
            if original:
                response.headers[name] = original
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return _answer(500, error_body("internal-error", "internal error; see the server log"))
