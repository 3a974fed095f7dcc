"""The dashboard in a real browser: log in, read its figures against the database, see the
charts drawn, follow a figure to its list, screenshot."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from sessions_app import transitions
from sessions_app.models import Session
from tests.sessions_app.fixtures import AGENT
from threads import services
from threads.history import messages_append
from threads.models import Thread
from threads.storage.tiers import thread_flush


def text(page, name: str) -> str:
    return page.locator(f'[data-figure="{name}"]').inner_text().strip()


def test_the_dashboard_shows_the_databases_figures(admin_page, live_url, screenshot, api, project):
    # given: three threads (one flushed cold), six messages, a session locked past its lease
    threads = [
        services.thread_create(tenant=api.tenant, project_id=project.id, title=f"t{i}")
        for i in range(3)
    ]
    for thread in threads[:2]:
        messages_append(
            thread=thread,
            messages=[{"id": f"m{i}", "role": "user", "content": "hello"} for i in range(3)],
        )
    thread_flush(thread=threads[1])
    stuck = transitions.session_create(tenant=api.tenant, thread_id=threads[0].id, actor=AGENT)
    Session.objects.filter(pk=stuck.pk).update(
        status="locked", lock_token="t", lock_expires_at=timezone.now() - timedelta(minutes=5)
    )

    # when
    page = admin_page
    page.goto(f"{live_url}/admin/")
    page.wait_for_selector("body[data-charts-drawn=true]")

    # then: the branding, the figures as the database has them, the charts drawn
    assert page.title() == "Dashboard | Threadline"
    assert "Threadline console" in page.locator("#site-name").inner_text()
    assert text(page, "threads-hot") == str(Thread.objects.filter(tier="hot").count()) == "2"
    assert text(page, "threads-cold") == "1"
    assert text(page, "hot-rows") == "3"
    assert text(page, "cold-objects") == "1"
    assert text(page, "flushes") == "1"
    assert text(page, "sessions-locked") == "1"
    assert stuck.pk in text(page, "stuck-locked")
    assert text(page, "ready-database") == "ok"
    assert page.locator("canvas").count() == 6
    for canvas in page.locator("canvas").all():
        box = canvas.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50
    screenshot(page, "dashboard")

    # a figure opens the filtered list behind it
    page.click('[data-figure="threads-cold"]')
    page.wait_for_url("**/admin/threads/thread/?tier__exact=cold")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert threads[1].id in rows.first.inner_text()
    screenshot(page, "dashboard-cold-threads")
