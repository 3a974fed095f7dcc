"""The admin index is Threadline's dashboard: branded, its figures equal to the database's,
each linked to the list behind it, and no COUNT over the message or event tables."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sessions_app import transitions
from sessions_app.models import Session
from tasks.schedules import SCHEDULES
from tests.sessions_app.fixtures import AGENT
from threads import services
from threads.history import messages_append
from threads.models import Thread


@pytest.fixture
def staff(db) -> Client:
    user = get_user_model().objects.create_superuser("op", "op@example.com", "pw-op-12345")
    client = Client()
    client.force_login(user)
    return client


def figure(html: str, name: str) -> str:
    match = re.search(rf'data-figure="{re.escape(name)}"[^>]*>([^<]*)<', html)
    assert match, f"no figure {name}"
    return match.group(1).strip()


def link_of(html: str, name: str) -> str:
    match = re.search(rf'<a data-figure="{re.escape(name)}"[^>]* href="([^"]+)"', html)
    assert match, f"no link for {name}"
    return match.group(1).replace("&amp;", "&")


def test_the_dashboard_shows_the_databases_figures_with_their_lists(staff, api, project):
    # given: two hot threads with messages, one of them flushed cold, sessions in three states
    hot = services.thread_create(tenant=api.tenant, project_id=project.id, title="hot")
    cold = services.thread_create(tenant=api.tenant, project_id=project.id, title="cold")
    for t in (hot, cold):
        messages_append(
            thread=t, messages=[{"id": f"m{i}", "role": "user", "content": "hi"} for i in range(3)]
        )
    assert api.post(f"/api/v1/threads/{cold.id}/flush").status_code == 200
    idle = transitions.session_create(tenant=api.tenant, thread_id=hot.id, actor=AGENT)
    stuck = transitions.session_create(tenant=api.tenant, thread_id=hot.id, actor=AGENT)
    # an id whose "_24" the admin would read as "$" unless the link quotes it
    Session.objects.filter(pk=stuck.pk).update(
        id="ses_24stuck00000",
        status="locked",
        lock_token="t",
        lock_expires_at=timezone.now() - timedelta(minutes=5),
    )
    stuck = Session.objects.get(pk="ses_24stuck00000")

    # when
    with CaptureQueriesContext(connection) as queries:
        response = staff.get("/admin/")
    # (the next request empties the query log the context reads from)
    captured = [q["sql"] for q in queries.captured_queries]

    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert "<title>Dashboard | Threadline</title>" in html
    assert "Threadline console" in html
    assert figure(html, "threads-hot") == str(Thread.objects.filter(tier="hot").count())
    assert figure(html, "threads-cold-idle") == "1"
    assert figure(html, "hot-rows") == "3"
    assert figure(html, "cold-objects") == "1"
    assert figure(html, "flushes") == "1"
    cold.refresh_from_db()
    assert re.search(rf'data-figure="cold-bytes" data-value="{cold.cold_bytes}"', html)
    assert figure(html, "sessions-idle") == "1"
    assert figure(html, "sessions-locked") == "1"
    stuck_cell = re.search(r'data-figure="stuck-locked">(.*?)</td>', html).group(1)
    assert stuck.pk in stuck_cell
    stuck_page = staff.get(re.search(r'href="([^"]+)"', stuck_cell).group(1))
    assert stuck_page.status_code == 200 and stuck.pk in stuck_page.content.decode()
    assert idle.pk not in html
    assert link_of(html, "threads-cold-idle") == (
        "/admin/threads/thread/?tier__exact=cold&lifecycle__exact=idle"
    )
    assert link_of(html, "sessions-locked") == "/admin/sessions_app/session/?status__exact=locked"
    assert link_of(html, "flushes") == "/admin/threads/event/?kind=thread.flushed"
    assert link_of(html, "task-failures") == (
        "/admin/django_celery_results/taskresult/?status__exact=FAILURE"
    )
    # every schedule is listed, and the charts are drawn by the vendored Chart.js
    for schedule in SCHEDULES:
        assert f'data-schedule="{schedule.name}"' in html
    assert "/static/vendor/chart.js/chart.umd.min.js" in html
    assert "//cdn" not in html and "https://" not in html.split("</head>")[0]
    # the big tables are never counted: messages not at all, the trail only past the
    # tally's mark (a primary-key range: the last minute or so of events)
    counts = [sql for sql in captured if "COUNT(" in sql.upper()]
    assert counts
    for sql in counts:
        assert '"threads_message"' not in sql, sql
        if '"threads_event"' in sql:
            assert 'WHERE "threads_event"."id" >' in sql, sql


def test_every_linked_list_opens(staff, api, project):
    html = staff.get("/admin/").content.decode()
    links = set(re.findall(r'<a data-figure="[^"]+"[^>]* href="([^"]+)"', html))
    assert len(links) > 20
    for link in links:
        assert staff.get(link.replace("&amp;", "&")).status_code == 200, link


def test_the_dashboard_needs_a_staff_login(db):
    response = Client().get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_settled_turns_cache_read_share_and_compaction_savings(staff, api, project):
    thread = services.thread_create(tenant=api.tenant, project_id=project.id)
    session = transitions.session_create(tenant=api.tenant, thread_id=thread.id, actor=AGENT)
    for read, fresh in ((300, 100), (500, 100)):
        transitions.session_turn_start(session=session)
        transitions.session_turn_settle(
            session=session,
            usage=transitions.Usage(input_tokens=fresh, cache_read_tokens=read, output_tokens=5),
        )
    html = staff.get("/admin/").content.decode()
    assert figure(html, "cache-read-pct") == "80.0 %"  # 800 of 1,000 prompt tokens
    assert figure(html, "turns") == "2"


def test_every_beat_task_keeps_its_result():
    assert {s.task for s in SCHEDULES} == set(settings.BEAT_TASKS)
    from config.celery import app

    for schedule in SCHEDULES:
        assert app.tasks[schedule.task].ignore_result is False, schedule.task


def test_the_root_page_links_the_console_the_docs_and_health(db):
    response = Client().get("/")
    assert response.status_code == 200
    html = response.content.decode()
    for href in ("/admin/", "/api/docs/", "/api/schema/", "/healthz", "/readyz"):
        assert f'href="{href}"' in html


def test_the_api_docs_load_swagger_ui_from_our_own_static_files(db):
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
