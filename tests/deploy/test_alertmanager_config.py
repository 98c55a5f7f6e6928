"""The Alertmanager receivers shipped for recoverlink (deploy/alertmanager.yml, and the one
deploy/compose.yaml mounts): valid for Alertmanager's own `amtool check-config`, posting to the
webhook recoverlink serves, with resolved notifications, and the token from a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.support import DEPLOY, run, tool

SHIPPED = DEPLOY / "alertmanager.yml"
COMPOSE = DEPLOY / "compose" / "alertmanager.yml"


def receiver(path: Path) -> dict[str, Any]:
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    (found,) = [r for r in config["receivers"] if r["name"] == config["route"]["receiver"]]
    (webhook,) = found["webhook_configs"]
    assert isinstance(webhook, dict)
    return webhook


@pytest.mark.parametrize("path", [SHIPPED, COMPOSE], ids=["shipped", "compose"])
def test_the_receiver_passes_amtool_check_config(path: Path) -> None:
    amtool = tool("amtool", "apt-get install prometheus-alertmanager")
    done = run(amtool, "check-config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "1 receivers" in done.stdout, done.stdout


@pytest.mark.parametrize("path", [SHIPPED, COMPOSE], ids=["shipped", "compose"])
def test_the_receiver_posts_every_alert_and_its_resolve_to_the_webhook(path: Path) -> None:
    webhook = receiver(path)
    url = urlsplit(webhook["url"])
    assert url.path == "/webhook/alertmanager" and url.port == 9471, webhook["url"]
    assert webhook["send_resolved"] is True, "recoverlink closes recoveries on resolves"
    assert webhook.get("max_alerts", 0) == 0, "no truncation: alerts left out of a notification go unseen"


@pytest.mark.parametrize("path", [SHIPPED, COMPOSE], ids=["shipped", "compose"])
def test_the_receiver_reads_the_bearer_token_from_a_file(path: Path) -> None:
    authorization = receiver(path)["http_config"]["authorization"]
    assert authorization["type"] == "Bearer"
    assert "credentials" not in authorization, "never the token itself in the config"
    assert authorization["credentials_file"].startswith("/")


def test_the_compose_receiver_is_the_shipped_one_aimed_at_the_compose_service() -> None:
    shipped = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    ours = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    webhook = ours["receivers"][0]["webhook_configs"][0]
    assert urlsplit(webhook.pop("url")).hostname == "recoverlink", "the compose service of the replicas"
    token = webhook["http_config"]["authorization"].pop("credentials_file")
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))["services"]
    assert token == "/run/secrets/webhook_token" and "webhook_token" in services["alertmanager"]["secrets"]
    assert "webhook_token" in services["recoverlink"]["secrets"], "both sides read the same token"
    theirs = shipped["receivers"][0]["webhook_configs"][0]
    theirs.pop("url")
    theirs["http_config"]["authorization"].pop("credentials_file")
    assert ours == shipped
