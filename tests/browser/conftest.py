"""Browser fixtures (the contract shared with the conversation-view tests): Debian's
Chromium driven by Playwright against pytest-django's live server on PostgreSQL.

`browser` (session), `live_url`, `admin_page` (logged into /admin/ as a superuser),
`screenshot(page, name)` → var/screenshots/<name>.png. Every page aborts and records any
request that leaves loopback; a test that made one fails.

Run with `make test-browser`; the default `make test` leaves this directory out.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

# Playwright's sync API keeps an event loop in the test's thread; the ORM calls of the test
# itself are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
ADMIN_USER, ADMIN_PASSWORD = "operator", "operator-password-1"


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"BROWSER TESTS SKIPPED: {CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"BROWSER TESTS SKIPPED: playwright is not installed ({exc})")
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture
def live_url(live_server) -> str:
    return live_server.url


def _guard(page, blocked: list[str]) -> None:
    def route(route_):
        host = urlsplit(route_.request.url).hostname or ""
        if route_.request.url.startswith(("data:", "blob:")) or host in LOOPBACK:
            route_.continue_()
        else:
            blocked.append(route_.request.url)
            route_.abort()

    page.route("**/*", route)


@pytest.fixture
def admin_page(browser, live_url, transactional_db, django_user_model):
    django_user_model.objects.create_superuser(ADMIN_USER, "operator@example.com", ADMIN_PASSWORD)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    blocked: list[str] = []
    _guard(page, blocked)
    page.goto(f"{live_url}/admin/login/?next=/admin/")
    page.fill("#id_username", ADMIN_USER)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_url}/admin/")
    yield page
    context.close()
    assert not blocked, f"requests left loopback: {blocked}"


@pytest.fixture
def screenshot():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
