"""The command line: schema commands, token creation, and refusing to serve an unmigrated store."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from recoverlink.cli import main
from recoverlink.config.loader import sqlite_url
from recoverlink.domain.tokens import Role
from recoverlink.store import migrate
from recoverlink.store.engine import Store, make_engine
from recoverlink.store.tokens import find_token


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "recoverlink.yaml"
    path.write_text(
        "webhook:\n  auth:\n    bearer: {file: var/webhook.token, generate: true}\n"
        "database:\n  sqlite_path: var/recoverlink.db\n"
        "server:\n  metrics_dir: var/metrics\n"
    )
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env={"RECOVERLINK_DATABASE_URL": ""})
    return result.exit_code, result.stdout, result.stderr


def test_db_upgrade_brings_the_schema_to_head(config_file: Path) -> None:
    code, out, _ = run("db", "upgrade", "--config", str(config_file))
    assert code == 0, out
    assert f"database at revision {migrate.head_revision()}" in out
    code, out, _ = run("db", "current", "--config", str(config_file))
    assert out.splitlines() == [f"current: {migrate.head_revision()}", f"head: {migrate.head_revision()}"]


def test_serve_refuses_an_unmigrated_database_and_says_what_to_run(config_file: Path) -> None:
    code, _, err = run("serve", "--config", str(config_file))
    assert code == 1
    assert "run `recoverlink db upgrade` (or `recoverlink serve --migrate`)" in err


def test_tokens_create_prints_the_token_once_and_stores_its_hash(config_file: Path) -> None:
    run("db", "upgrade", "--config", str(config_file))
    code, out, err = run(
        "tokens", "create", "--role", "operator", "--name", "oncall", "--config", str(config_file)
    )
    assert code == 0, err
    token = out.strip()
    assert token.startswith("rl_")
    assert "created operator token 'oncall'" in err
    store = Store(make_engine(sqlite_url(config_file.parent / "var" / "recoverlink.db")))
    with store.read() as conn:
        info = find_token(conn, token)
        stored = conn.exec_driver_sql("SELECT token_hash FROM api_tokens").scalar_one()
    assert info is not None and info.role is Role.OPERATOR and info.name == "oncall"
    assert token not in stored


def test_a_revoked_token_is_listed_as_revoked_and_no_longer_found(config_file: Path) -> None:
    run("db", "upgrade", "--config", str(config_file))
    _, token, _ = run(
        "tokens", "create", "--role", "viewer", "--name", "wallboard", "--config", str(config_file)
    )
    code, out, err = run("tokens", "revoke", "wallboard", "--config", str(config_file))
    assert code == 0, err
    assert out.strip() == "revoked viewer token 'wallboard' (id 1)"
    _, listed, _ = run("tokens", "list", "--config", str(config_file))
    (line,) = listed.splitlines()
    assert line.startswith("1\tviewer\twallboard\trevoked ")
    store = Store(make_engine(sqlite_url(config_file.parent / "var" / "recoverlink.db")))
    with store.read() as conn:
        assert find_token(conn, token.strip()) is None
    code, _, err = run("tokens", "revoke", "wallboard", "--config", str(config_file))
    assert code == 1
    assert "no live token named or numbered 'wallboard'" in err


def test_tokens_create_rejects_an_unknown_role(config_file: Path) -> None:
    code, _, err = run("tokens", "create", "--role", "root", "--config", str(config_file))
    assert code == 2
    assert "'root' is not one of 'viewer', 'operator', 'admin'" in err


def test_config_errors_print_as_file_line_col(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("webhook:\n  auth:\n    bearer: {env: T}\n  colour: blue\n")
    code, _, err = run("db", "upgrade", "--config", str(path))
    assert code == 1
    assert err.strip() == f"{path}:4:3: unknown key 'webhook.colour'"
    assert "Traceback" not in err
