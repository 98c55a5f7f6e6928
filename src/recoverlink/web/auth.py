"""Role-checked API tokens for the API and operator actions."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import g, request

from recoverlink.domain.errors import Forbidden, Unauthorized
from recoverlink.domain.tokens import Role
from recoverlink.store.tokens import TokenInfo, find_token
from recoverlink.web.runtime import runtime

P = ParamSpec("P")
R = TypeVar("R")


def bearer_token() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def require_role(role: Role) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a view so it needs an API token of at least `role` (401 without, 403 too weak)."""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
            g.token = authenticate(role)
            return view(*args, **kwargs)

        return wrapped

    return decorate


def authenticate(role: Role) -> TokenInfo:
    token = bearer_token()
    if token is None:
        raise Unauthorized("an API token is required: send 'Authorization: Bearer <token>'")
    with runtime().store.read() as conn:
        info = find_token(conn, token)
    if info is None:
        raise Unauthorized("the API token is unknown or revoked")
    if not info.role.grants(role):
        raise Forbidden(f"this needs a token with role {role.value}; yours has {info.role.value}")
    return info
