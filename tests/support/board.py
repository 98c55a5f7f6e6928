"""The board for tests: settings with a `board:` section, the shipped catalog (with or without the shipped
rules), and `Agent`, a test client that signs in and posts forms as a browser does (the session cookie,
the CSRF token read from the page)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from recoverlink.config.board import BoardConfig
from recoverlink.config.enrichment_loader import LoadedEnrichment, load_enrichment
from recoverlink.config.loader import Settings, load_config
from recoverlink.config.model import RulesConfig
from tests.conftest import make_settings

EXAMPLE = Path(__file__).parents[2] / "deploy" / "recoverlink.yaml"
SESSION_SECRET = "test-session-secret-0123456789abcdef"
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def board_settings(tmp_path: Path, database_url: str, **board: Any) -> Settings:
    """The test settings with a board config; a session secret file unless `session_secret` is given."""
    if "session_secret" not in board:
        secret = tmp_path / "session.secret"
        secret.write_text(SESSION_SECRET + "\n")
        board["session_secret"] = {"file": str(secret)}
    settings = make_settings(tmp_path, database_url)
    config = settings.config.model_copy(update={"board": BoardConfig.model_validate(board)})
    return dataclasses.replace(settings, config=config)


def catalog_only_enrichment() -> LoadedEnrichment:
    """The shipped catalog without rules: owners, journeys and priorities from the catalog alone, so a
    test's exact text does not change when the example rules do."""
    config = load_config(EXAMPLE).model_copy(update={"rules": RulesConfig()})
    return load_enrichment(config, EXAMPLE.parent, str(EXAMPLE))


def csrf_of(page: TestResponse) -> str:
    found = CSRF.search(page.get_data(as_text=True))
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


@dataclass
class Agent:
    """A browser on the board: it keeps the cookie and sends the CSRF token the page carries."""

    http: FlaskClient

    def sign_in(self, token: str) -> TestResponse:
        page = self.http.get("/board/sign-in")
        data = {"token": token, "csrf_token": csrf_of(page), "next": "/board"}
        return self.http.post("/board/sign-in", data=data)

    def page(self, url: str) -> str:
        response = self.http.get(url)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data(as_text=True)

    def submit(self, recovery_id: int, action: str, **fields: str) -> TestResponse:
        """Post one of the recovery page's forms with the page's CSRF token."""
        page = self.http.get(f"/board/recoveries/{recovery_id}")
        data = {"csrf_token": csrf_of(page), **fields}
        return self.http.post(f"/board/recoveries/{recovery_id}/{action}", data=data)


def alert_payload(
    name: str,
    service: str,
    fingerprint: str,
    *,
    severity: str = "critical",
    status: str = "firing",
    starts_at: str = "2026-11-22T18:08:59Z",
    **annotations: str,
) -> dict[str, Any]:
    """An Alertmanager v4 delivery of one alert, in the shape the captured fixtures have."""
    labels = {"alertname": name, "service": service, "severity": severity}
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"{service} {name}", **annotations},
        "startsAt": starts_at,
        "endsAt": "2026-11-22T18:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint,
    }
    return {"version": "4", "status": status, "alerts": [alert], "groupKey": f"{{}}:{{alertname={name!r}}}"}
