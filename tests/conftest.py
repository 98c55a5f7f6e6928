"""Shared fixtures: stores on SQLite and PostgreSQL, settings, the app and its client."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from recoverlink.config.loader import Settings, sqlite_url
from recoverlink.config.model import Config
from recoverlink.store import migrate
from recoverlink.store.engine import Store, StoreOptions, make_engine
from recoverlink.web import create_app

FIXTURES = Path(__file__).parent / "fixtures"
ALERTMANAGER_FIXTURES = FIXTURES / "alertmanager"
# Files beside the payloads that describe the captures rather than being payloads.
NOT_PAYLOADS = ("INDEX.json",)

PG_ADMIN_URL = os.environ.get("RECOVERLINK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
WEBHOOK_TOKEN = "test-webhook-token-0123456789"
BASIC_USER, BASIC_PASSWORD = "am", "s3cret"


def payload_files() -> list[Path]:
    return sorted(
        p
        for p in ALERTMANAGER_FIXTURES.glob("*.json")
        if not p.name.endswith(".headers.json") and p.name not in NOT_PAYLOADS
    )


def fixture_body(name: str) -> bytes:
    return (ALERTMANAGER_FIXTURES / name).read_bytes()


def bearer(token: str = WEBHOOK_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str = BASIC_USER, password: str = BASIC_PASSWORD) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 22, 18, 10, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(make_engine(sqlite_url(tmp_path / "recoverlink.db")))
    migrate.upgrade(store.engine)
    yield store
    store.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the shared PostgreSQL, dropped after the test."""
    name = f"rl_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_store(postgres_url: str) -> Iterator[Store]:
    store = Store(make_engine(postgres_url, StoreOptions(pool_size=4)))
    migrate.upgrade(store.engine)
    yield store
    store.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Store:
    """The same test on both backends."""
    fixture = "sqlite_store" if request.param == "sqlite" else "postgres_store"
    value: Store = request.getfixturevalue(fixture)
    return value


def make_settings(tmp_path: Path, database_url: str | None = None, **webhook: object) -> Settings:
    token_file = tmp_path / "webhook.token"
    token_file.write_text(WEBHOOK_TOKEN + "\n")
    password_file = tmp_path / "basic.password"
    password_file.write_text(BASIC_PASSWORD)
    config = Config.model_validate(
        {
            "webhook": {
                "auth": {
                    "bearer": {"file": str(token_file)},
                    "basic": {"username": BASIC_USER, "password": {"file": str(password_file)}},
                },
                **webhook,
            },
            "database": {"sqlite_path": str(tmp_path / "recoverlink.db")},
        }
    )
    url = database_url or sqlite_url(config.database.sqlite_path)
    return Settings(config=config, config_path=tmp_path / "config.yaml", database_url=url, listen="")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def app(tmp_path: Path, store: Store, registry: CollectorRegistry, clock: FakeClock) -> Flask:
    settings = make_settings(tmp_path, str(store.engine.url))
    return create_app(settings, store=store, registry=registry, clock=clock, environ={})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
