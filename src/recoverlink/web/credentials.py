"""The webhook's own credentials, checked the way Alertmanager's http_config sends them."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WebhookCredentials:
    """What Alertmanager's http_config may send: a bearer token and/or a basic-auth pair."""

    bearer_token: str | None = field(default=None, repr=False)
    basic_username: str | None = None
    basic_password: str | None = field(default=None, repr=False)

    def accepts(self, authorization: str | None) -> bool:
        """Check an Authorization header in constant time for the secret part."""
        scheme, _, value = (authorization or "").partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self.bearer_token is not None:
            return _same(value.strip(), self.bearer_token)
        if scheme == "basic" and self.basic_username is not None:
            return self._accepts_basic(value.strip())
        return False

    def _accepts_basic(self, encoded: str) -> bool:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        username, sep, password = decoded.partition(":")
        user_ok = _same(username, self.basic_username or "")
        password_ok = _same(password, self.basic_password or "")
        return bool(sep) and user_ok and password_ok


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
