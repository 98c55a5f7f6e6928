"""API tokens, stored as hashes only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update

from recoverlink.domain.tokens import Role, hash_token
from recoverlink.store.common import from_db_time, insert_for, to_db_time
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


@dataclass(frozen=True)
class TokenRecord:
    id: int
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None


def list_tokens(conn: Connection) -> list[TokenRecord]:
    """Every token, oldest first (hashes are never shown: there is nothing to show)."""
    rows = conn.execute(select(api_tokens).order_by(api_tokens.c.id))
    return [
        TokenRecord(
            r.id,
            r.name,
            Role(r.role),
            from_db_time(r.created_at),
            from_db_time(r.revoked_at) if r.revoked_at is not None else None,
        )
        for r in rows
    ]


def revoke_token(conn: Connection, name_or_id: str, now: datetime) -> list[TokenRecord]:
    """Revoke the live tokens with this name (or this id); returns what was revoked."""
    live = [t for t in list_tokens(conn) if t.revoked_at is None]
    chosen = [t for t in live if t.name == name_or_id or str(t.id) == name_or_id]
    if chosen:
        ids = [t.id for t in chosen]
        conn.execute(update(api_tokens).where(api_tokens.c.id.in_(ids)).values(revoked_at=to_db_time(now)))
    return chosen
