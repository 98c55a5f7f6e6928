"""The board in a real browser: Debian's chromium, headless, driven by chromium-driver through selenium,
against the app served by a real HTTP server on a free loopback port.

A recovery delivered through the webhook appears; its state changed through the API shows without a
reload; the keyboard reaches the filters, the cards and the operator's forms; an operator signs in by
pasting a token and publishes a workaround, which shows on the page and the board. Screenshots go to
tests/artifacts/ (git-ignored). Without chromium the test is skipped, except under CI, where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import BaseWSGIServer, make_server

from recoverlink.config.loader import sqlite_url
from recoverlink.domain.tokens import Role
from recoverlink.store import migrate
from recoverlink.store.engine import Store, make_engine
from recoverlink.store.tokens import register_token
from recoverlink.web import create_app
from tests.conftest import WEBHOOK_TOKEN, bearer, fixture_body
from tests.support.board import alert_payload, board_settings, catalog_only_enrichment
from tests.support.processes import LOOPBACK, free_port

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).parents[1] / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
OPERATOR_TOKEN = "rl_browser_test_operator_token_0123456789"
WAIT_SECONDS = 15
WORKAROUND = "Offer PayPal at checkout; card payments fail"


def _require_browser() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if not missing:
        return
    message = f"{', '.join(missing)} missing: install the Debian packages chromium and chromium-driver"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    """The app (a public board, as on a wall screen, polling every 2 s) on a real threaded server."""
    store = Store(make_engine(sqlite_url(tmp_path / "recoverlink.db")))
    migrate.upgrade(store.engine)
    with store.write() as conn:
        register_token(conn, OPERATOR_TOKEN, Role.OPERATOR, "ops-anna", datetime.now(UTC))
    settings = board_settings(tmp_path, str(store.engine.url), public=True, refresh_seconds=2)
    app = create_app(settings, store=store, environ={}, enrichment=catalog_only_enrichment())
    port = free_port()
    server: BaseWSGIServer = make_server(LOOPBACK, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="board-server", daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        store.dispose()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    _require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1600,1000", f"--user-data-dir={tmp_path / 'profile'}",
    ):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def deliver(base_url: str, body: bytes) -> None:
    response = requests.post(
        f"{base_url}/webhook/alertmanager",
        data=body,
        headers={**bearer(WEBHOOK_TOKEN), "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def move(base_url: str, recovery_id: int, target: str, reason: str) -> None:
    response = requests.post(
        f"{base_url}/api/v1/recoveries/{recovery_id}/transitions",
        json={"target": target, "reason": reason},
        headers=bearer(OPERATOR_TOKEN),
        timeout=10,
    )
    assert response.status_code == 200, response.text


def wait_for_text(driver: WebDriver, css: str, text: str) -> None:
    """Wait until the element shows `text`; a live update may replace it while we look."""
    ignored = (StaleElementReferenceException, NoSuchElementException)
    wait = WebDriverWait(driver, WAIT_SECONDS, ignored_exceptions=ignored)
    wait.until(lambda d: text in d.find_element(By.CSS_SELECTOR, css).text)


def tab_until(driver: WebDriver, element_id: str, limit: int = 40) -> list[str]:
    """Press Tab until the element has focus; the ids (or tag names) focused on the way."""
    seen: list[str] = []
    for _ in range(limit):
        driver.switch_to.active_element.send_keys(Keys.TAB)
        active = driver.switch_to.active_element
        seen.append(active.get_attribute("id") or f"{active.tag_name}:{active.text}")
        if seen[-1] == element_id:
            return seen
    pytest.fail(f"Tab never reached #{element_id}; focus went through {seen}")


def test_the_board_updates_live_and_an_operator_publishes_a_workaround(
    base_url: str, browser: WebDriver
) -> None:
    deliver(base_url, fixture_body("firing_single.json"))
    for n, (service, name) in enumerate((("crm-api", "CrmApiErrors"), ("billing-worker", "BillingLag")), 2):
        payload = alert_payload(name, service, f"{n:016x}", severity="warning", summary=f"{service}: {name}")
        deliver(base_url, json.dumps(payload).encode())

    browser.get(f"{base_url}/board")
    wait_for_text(browser, "#card-1-title", "payments-api is down")
    assert "Opened" in browser.find_element(By.CSS_SELECTOR, "[data-recovery-id='1']").text
    browser.execute_script("window.boardNotReloaded = true;")

    move(base_url, 1, "impact_confirmed", "agents report failed card payments")
    wait_for_text(browser, "[data-recovery-id='1'] .state", "Impact confirmed")
    assert browser.execute_script("return window.boardNotReloaded === true;"), "the page was reloaded"
    assert "Updated at" in browser.find_element(By.ID, "live-status").text

    browser.get(f"{base_url}/board")  # start the keyboard at the top of the page
    path = tab_until(browser, "card-1-link")
    assert path[0] == "a:Skip to content", path
    assert path.index("filter-team") < path.index("filter-journey") < path.index("filter-segment"), path
    assert path[-2] != "card-2-link", "the most severe card comes first"

    browser.get(f"{base_url}/board/sign-in?next=/board/recoveries/1")
    browser.find_element(By.ID, "token").send_keys(OPERATOR_TOKEN, Keys.ENTER)
    WebDriverWait(browser, WAIT_SECONDS).until(lambda d: d.current_url.endswith("/board/recoveries/1"))
    assert "Signed in as ops-anna (operator)" in browser.find_element(By.CSS_SELECTOR, "header.site").text

    tab_until(browser, "workaround-text")
    browser.switch_to.active_element.send_keys(WORKAROUND)
    browser.switch_to.active_element.send_keys(Keys.TAB)
    button = browser.switch_to.active_element
    assert button.text == "Publish workaround"
    button.send_keys(Keys.ENTER)
    wait_for_text(browser, ".flashes", "Workaround published.")
    assert WORKAROUND in browser.find_element(By.CSS_SELECTOR, ".card-page .workaround").text
    assert "Workaround available" in browser.find_element(By.CSS_SELECTOR, ".card-page .state").text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "board-recovery.png"))

    browser.get(f"{base_url}/board")
    wait_for_text(browser, "[data-recovery-id='1'] .workaround", WORKAROUND)
    browser.execute_script("window.boardNotReloaded = true;")
    move(base_url, 2, "fix_in_progress", "rolling back the CRM release")
    wait_for_text(browser, "[data-recovery-id='2'] .state", "Fix in progress")
    assert browser.execute_script("return window.boardNotReloaded === true;")
    assert browser.save_screenshot(str(ARTIFACTS / "board.png"))
    assert (ARTIFACTS / "board.png").stat().st_size > 10_000
