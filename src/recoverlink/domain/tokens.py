"""API token roles. A role grants everything the roles below it grant."""

from __future__ import annotations

import hashlib
from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def grants(self, needed: Role) -> bool:
        """True when a token of this role may do what `needed` allows."""
        return self.rank >= needed.rank


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings, so a plain sha256 is a safe at-rest form."""
    return hashlib.sha256(token.encode()).hexdigest()
