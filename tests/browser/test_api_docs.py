"""/api/docs/ in a real browser with no way out to the internet: Swagger UI comes from our
own static files and renders the operations of the schema."""

from __future__ import annotations

from urllib.parse import urlsplit


def test_the_api_docs_render_operations_without_leaving_loopback(admin_page, live_url, screenshot):
    page = admin_page
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).hostname or ""))

    page.goto(f"{live_url}/api/docs/")
    page.wait_for_selector(".opblock", timeout=30_000)

    assert page.locator(".opblock").count() > 40
    assert page.locator(".opblock-summary-path", has_text="/api/v1/threads/").count() >= 1
    assert "Threadline API" in page.locator(".info .title").inner_text()
    assert hosts <= {"127.0.0.1", "localhost"}, hosts
    screenshot(page, "api-docs")


def test_the_root_page_links_the_console_and_the_docs(admin_page, live_url, screenshot):
    page = admin_page
    page.goto(f"{live_url}/")
    assert page.title() == "Threadline"
    page.click("text=API documentation")
    page.wait_for_selector(".opblock", timeout=30_000)
    page.goto(f"{live_url}/")
    page.click("text=Operator console")
    page.wait_for_url(f"{live_url}/admin/")
    screenshot(page, "root-to-console")
