"""The Authorization header of an ITSM's credentials (basic, bearer, or RT's `token` scheme)."""

from __future__ import annotations

import base64
from collections.abc import Mapping

from recoverlink.config.itsm import ItsmAuth
from recoverlink.config.secrets import read_secret


def authorization(auth: ItsmAuth, environ: Mapping[str, str], where: str) -> str:
    """Read the secret once; raises ConfigErrors naming `where` when it is missing or empty."""
    if auth.basic is not None:
        password = read_secret(auth.basic.password, environ, f"{where}.auth.basic.password")
        pair = f"{auth.basic.username}:{password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")
    if auth.bearer is not None:
        return "Bearer " + read_secret(auth.bearer, environ, f"{where}.auth.bearer")
    assert auth.token is not None  # the model guarantees exactly one
    return "token " + read_secret(auth.token, environ, f"{where}.auth.token")
