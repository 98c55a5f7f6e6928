"""What the benchmarks share: a throw-away PostgreSQL database and an aligned text table."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ThrowawayDatabase:
    name: str
    sqlalchemy_url: str  # postgresql+psycopg://..., for recoverlink
    dsn: str  # postgresql://..., for psycopg directly


@contextlib.contextmanager
def throwaway_postgres(admin_url: str) -> Iterator[ThrowawayDatabase]:
    """Create a database with a random name on the server of `admin_url`, and drop it afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url).set(drivername="postgresql")
    admin_dsn = admin.render_as_string(hide_password=False)
    name = f"rl_bench_{secrets.token_hex(6)}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    print(f"created PostgreSQL database {name}", flush=True)
    try:
        url = admin.set(database=name)
        yield ThrowawayDatabase(
            name,
            sqlalchemy_url=url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False),
            dsn=url.render_as_string(hide_password=False),
        )
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"dropped PostgreSQL database {name}", flush=True)


def render_table(columns: Sequence[tuple[str, str]], body: Sequence[Sequence[str]]) -> str:
    """Columns as (name, alignment: "<" or ">"), a header rule, then one line per row."""
    widths = [max(len(name), *(len(cells[i]) for cells in body)) for i, (name, _) in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        parts = [f"{c:{align}{w}}" for c, (_, align), w in zip(cells, columns, widths, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line([name for name, _ in columns]), "  ".join("-" * w for w in widths)]
    out.extend(line(cells) for cells in body)
    return "\n".join(out)
