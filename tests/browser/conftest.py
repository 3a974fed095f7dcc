"""Browser fixtures: Debian's Chromium (/usr/bin/chromium) driven by Playwright for Python
against pytest-django's live server on PostgreSQL. Run by `make test-browser`; the default
`make test` leaves this directory out (pyproject's addopts).

- `browser` (session): a headless Chromium, launched from /usr/bin/chromium (Playwright
  never downloads one). When it cannot be had the tests skip, saying so loudly.
- `live_url`: the live server's base URL (live_server.url).
- `admin_page`: a Page logged into /admin/ as a superuser (through the login form).
- `screenshot(page, name)`: a full-page PNG at var/screenshots/<name>.png.
- Every page of the context routes "**/*" through a guard that aborts any request not for
  loopback and records it; a test whose pages tried one fails at teardown.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

# Playwright's sync API runs an event loop in the test's thread, so Django would refuse the
# test's own (synchronous) ORM calls as "called from an async context".
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
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
ADMIN_USER, ADMIN_PASSWORD = "operator", "operator-password-1"
TIMEOUT_MS = 30_000  # a shared 2-core machine: pages can take seconds under load


def _skip(reason: str):
    pytest.skip(f"BROWSER TESTS SKIPPED: {reason}")


@pytest.fixture(scope="session")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        _skip(f"{CHROMIUM} is missing (apt-get install -y chromium; .ci/run does it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _skip(f"the playwright package is not installed ({exc})")
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
    except Exception as exc:  # a Chromium that does not start is a broken install
        playwright.stop()
        pytest.fail(f"{CHROMIUM} did not start: {exc}")
    yield launched
    launched.close()
    playwright.stop()


@pytest.fixture
def live_url(live_server) -> str:
    return live_server.url


def is_loopback(url: str) -> bool:
    if url.startswith(("data:", "blob:", "about:")):
        return True
    return (urlsplit(url).hostname or "") in LOOPBACK


@pytest.fixture
def browser_context(browser):
    """A fresh context (cookies, storage) with the loopback guard; `.blocked` lists what it
    aborted."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    blocked: list[str] = []

    def guard(route):
        if is_loopback(route.request.url):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    context.blocked = blocked
    yield context
    context.close()
    assert not blocked, f"requests left loopback: {blocked}"


@pytest.fixture
def admin_page(browser_context, live_url, transactional_db, django_user_model):
    django_user_model.objects.create_superuser(ADMIN_USER, "operator@example.com", ADMIN_PASSWORD)
    page = browser_context.new_page()
    page.goto(f"{live_url}/admin/login/?next=/admin/")
    page.fill("#id_username", ADMIN_USER)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_url}/admin/")
    yield page


@pytest.fixture
def screenshot():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
