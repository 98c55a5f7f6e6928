"""First-start duties of the embedded default: generated tokens, the admin token's hash, a hint."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from recoverlink.config.loader import Settings
from recoverlink.config.secrets import ensure_generated, read_secret
from recoverlink.domain.tokens import Role
from recoverlink.store.engine import Store
from recoverlink.store.tokens import register_token

log = logging.getLogger(__name__)


def ensure_token_files(settings: Settings) -> None:
    """Write the webhook and admin tokens and the board's session secret the config asks to generate,
    if they are missing."""
    config = settings.config
    sources = [
        ("webhook", config.webhook.auth.bearer, "rlw"),
        ("admin", config.api.bootstrap_admin_token, "rl"),
        ("board session secret", config.board.session_secret, "rls"),
    ]
    # A generated action credential gives `make run` a token for a local receiver.
    for name, credential in config.actions.credentials.items():
        sources.extend((f"action credential {name}", s, "rla") for s in credential.secret_sources())
    for what, source, prefix in sources:
        if source is not None and ensure_generated(source, prefix):
            log.info("generated token file", extra={"token": what, "path": str(source.file)})


def register_admin_token(settings: Settings, store: Store, environ: dict[str, str]) -> None:
    """Register the bootstrap admin token's hash; idempotent across restarts."""
    source = settings.config.api.bootstrap_admin_token
    if source is None:
        return
    token = read_secret(source, environ, "bootstrap admin token")
    with store.write() as conn:
        register_token(conn, token, Role.ADMIN, "bootstrap-admin", datetime.now(UTC))


def alertmanager_snippet(settings: Settings) -> str:
    """The receiver block that matches this config (names the token file, never the token)."""
    bearer = settings.config.webhook.auth.bearer
    if bearer is not None and bearer.file is not None:
        auth = f"authorization: {{type: Bearer, credentials_file: {bearer.file}}}"
    elif bearer is not None:
        auth = f"authorization: {{type: Bearer, credentials: <value of ${bearer.env}>}}"
    else:
        basic = settings.config.webhook.auth.basic
        assert basic is not None
        auth = f"basic_auth: {{username: {basic.username}, password_file: <your password file>}}"
    return (
        "receivers:\n"
        "  - name: recoverlink\n"
        "    webhook_configs:\n"
        f"      - url: http://{settings.listen}/webhook/alertmanager\n"
        "        send_resolved: true\n"
        f"        http_config: {{{auth}}}\n"
    )
