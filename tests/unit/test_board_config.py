"""The `board:` config section: defaults that keep the board private, bounds, and the generated secret."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from recoverlink.bootstrap import ensure_token_files
from recoverlink.config.board import BoardConfig
from recoverlink.config.loader import load_config
from tests.conftest import make_settings

EXAMPLE = Path(__file__).parents[2] / "deploy" / "recoverlink.yaml"


def test_the_board_is_private_and_the_status_page_public_by_default() -> None:
    board = BoardConfig()
    assert (board.public, board.status_public, board.refresh_seconds) == (False, True, 10)
    assert (board.session_secret, board.session_lifetime, board.secure_cookie) == (
        None,
        timedelta(hours=12),
        False,
    )


@pytest.mark.parametrize(
    "values",
    [
        {"refresh_seconds": 1},
        {"refresh_seconds": 301},
        {"session_lifetime": "30s"},
        {"session_lifetime": "31d"},
        {"session_secret": {"file": "a", "env": "B"}},
        {"session_secret": "inline-secret"},
        {"colour": "red"},
    ],
)
def test_bad_board_values_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BoardConfig.model_validate(values)


def test_the_example_config_generates_its_session_secret_next_to_the_tokens(tmp_path: Path) -> None:
    example = load_config(EXAMPLE).board
    assert example.session_secret is not None and example.session_secret.generate
    assert example.session_secret.file == (EXAMPLE.parent / "../var/session.secret").resolve()
    secret = tmp_path / "var" / "session.secret"
    settings = make_settings(tmp_path)
    board = BoardConfig.model_validate({"session_secret": {"file": str(secret), "generate": True}})
    ensure_token_files(
        dataclasses.replace(settings, config=settings.config.model_copy(update={"board": board}))
    )
    assert secret.read_text().startswith("rls_")
    assert secret.stat().st_mode & 0o777 == 0o600
    assert "rls_" not in repr(board), "the config names the file, never the secret"
