"""API tokens, stored as hashes only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from recoverlink.domain.tokens import Role, hash_token
from recoverlink.store.common import insert_for, to_db_time
from recoverlink.store.schema import api_tokens


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    role: Role


def register_token(conn: Connection, token: str, role: Role, name: str, now: datetime) -> None:
    """Register a token's hash with a role; registering the same token again changes nothing."""
    stmt = (
        insert_for(conn, api_tokens)
        .values(name=name, role=role.value, token_hash=hash_token(token), created_at=to_db_time(now))
        .on_conflict_do_nothing(index_elements=[api_tokens.c.token_hash])
    )
    conn.execute(stmt)


def find_token(conn: Connection, token: str) -> TokenInfo | None:
    """The live token with this value, looked up by hash (no comparison of secrets in Python)."""
    row = conn.execute(
        select(api_tokens.c.id, api_tokens.c.name, api_tokens.c.role).where(
            api_tokens.c.token_hash == hash_token(token), api_tokens.c.revoked_at.is_(None)
        )
    ).one_or_none()
    return TokenInfo(row.id, row.name, Role(row.role)) if row else None


def token_by_id(conn: Connection, token_id: int) -> TokenInfo | None:
    """The live token with this id: a board session holds the id, never the token, and a revoked
    token ends its sessions at their next request."""
    row = conn.execute(
        select(api_tokens.c.id, api_tokens.c.name, api_tokens.c.role).where(
            api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None)
        )
    ).one_or_none()
    return TokenInfo(row.id, row.name, Role(row.role)) if row else None
