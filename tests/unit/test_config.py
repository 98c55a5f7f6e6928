"""The config file: strict, with errors that point at file, line and column, and no secret inside."""

from __future__ import annotations

from pathlib import Path

import pytest

from recoverlink.config.base import SecretSource
from recoverlink.config.loader import load_config, load_settings
from recoverlink.config.secrets import ensure_generated, read_secret
from recoverlink.domain.errors import ConfigErrors

EXAMPLE = Path(__file__).parents[2] / "deploy" / "recoverlink.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recoverlink.yaml"
    path.write_text(text)
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_config(path)
    return [e.render() for e in caught.value.errors]


def test_example_config_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.server.listen == "127.0.0.1:9471"
    assert config.webhook.auth.bearer is not None and config.webhook.auth.bearer.generate


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    path = write(tmp_path, "webhook:\n  auth:\n    bearer: {file: secrets/token}\n")
    bearer = load_config(path).webhook.auth.bearer
    assert bearer is not None and bearer.file == tmp_path / "secrets" / "token"


def test_unknown_key_is_reported_with_its_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "webhook:\n  auth:\n    bearer: {env: T}\n  max_bodybytes: 10\n")
    assert errors_of(path) == [f"{path}:4:3: unknown key 'webhook.max_bodybytes'"]


def test_wrong_type_names_the_key_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "webhook:\n  auth:\n    bearer: {env: T}\n  max_body_bytes: lots\n")
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:4:3: webhook.max_body_bytes: ")


def test_missing_required_section_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  workers: 2\n")
    assert errors_of(path) == [f"{path}:1:1: webhook: required key is missing"]


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "webhook:\n  auth:\n    bearer: {env: T}\nserver:\n  workers: 0\n  threads: x\n")
    assert len(errors_of(path)) == 2


def test_secret_needs_exactly_one_source(tmp_path: Path) -> None:
    path = write(tmp_path, "webhook:\n  auth:\n    bearer: {env: T, file: t}\n")
    (error,) = errors_of(path)
    assert "exactly one of 'file' or 'env'" in error
    assert error.startswith(f"{path}:3:")


def test_webhook_without_any_auth_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "webhook:\n  auth: {}\n")
    assert "the webhook is never open" in errors_of(path)[0]


def test_yaml_syntax_error_points_at_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "webhook:\n  auth: [\n")
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:3:")
    assert "invalid YAML" in error


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    assert errors_of(tmp_path / "nope.yaml") == [
        f"{tmp_path / 'nope.yaml'}: cannot read file: No such file or directory"
    ]


def test_database_url_from_the_environment_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "webhook:\n  auth:\n    bearer: {env: T}\n")
    url = "postgresql+psycopg://rl@127.0.0.1/rl"
    settings = load_settings(path, {"RECOVERLINK_DATABASE_URL": url})
    assert settings.database_url == url
    assert load_settings(path, {}).database_url.startswith("sqlite:///")


def test_unsupported_database_url_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "webhook:\n  auth:\n    bearer: {env: T}\n")
    with pytest.raises(ConfigErrors, match="unsupported database URL scheme in 'mysql'"):
        load_settings(path, {"RECOVERLINK_DATABASE_URL": "mysql://x"})


def test_listen_address_from_flag_then_environment_then_config(tmp_path: Path) -> None:
    path = write(tmp_path, "webhook:\n  auth:\n    bearer: {env: T}\n")
    assert load_settings(path, {}).listen == "127.0.0.1:9471"
    assert load_settings(path, {"RECOVERLINK_LISTEN": "127.0.0.1:1"}).listen == "127.0.0.1:1"
    assert load_settings(path, {"RECOVERLINK_LISTEN": "127.0.0.1:1"}, listen="127.0.0.1:2").listen == (
        "127.0.0.1:2"
    )


def test_rendered_config_never_contains_the_secret(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("super-secret-value\n")
    path = write(tmp_path, "webhook:\n  auth:\n    bearer: {file: token}\n")
    config = load_config(path)
    assert "super-secret-value" not in config.model_dump_json()
    assert "super-secret-value" not in repr(config)


def test_generated_token_file_is_private(tmp_path: Path) -> None:
    source = SecretSource(file=tmp_path / "var" / "webhook.token", generate=True)
    assert ensure_generated(source, "rlw")
    assert (source.file.stat().st_mode & 0o777) == 0o600  # type: ignore[union-attr]
    token = read_secret(source, {}, "webhook token")
    assert token.startswith("rlw_") and len(token) > 40
    assert not ensure_generated(source, "rlw"), "an existing token is never replaced"


def test_secret_from_an_unset_variable_is_a_clear_error() -> None:
    with pytest.raises(ConfigErrors, match=r"\$WEBHOOK_TOKEN: webhook token: variable is unset or empty"):
        read_secret(SecretSource(env="WEBHOOK_TOKEN"), {}, "webhook token")
