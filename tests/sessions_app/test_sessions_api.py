"""POST/GET /sessions/: create, read, list with filters; bad input; other tenants."""

from __future__ import annotations

from sessions_app import transitions
from sessions_app.models import Session
from tests.conftest import assert_error
from tests.sessions_app.fixtures import AGENT, USER, url
from threads import services as thread_services
from threads.models import Event


def test_a_session_is_created_idle_at_owner_version_0(api, thread):
    response = api.post("/api/v1/sessions/", {"thread": thread.id, "actor": USER})

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("ses_")
    assert body["status"] == "idle"
    assert body["owner_version"] == 0
    assert body["current_actor"] == USER
    assert body["previous_actors"] == []
    assert body["thread"] == thread.id
    assert body["project"] == thread.project_id
    assert body["workspace"] is None
    assert body["depth"] == 1
    assert body["usage"] == {
        "input_tokens": 0,
        "cache_read_tokens": 0,
        "cache_creation_tokens": 0,
        "output_tokens": 0,
    }
    assert Event.objects.filter(session_id=body["id"], kind="session.created").exists()


def test_a_session_can_be_read_back(api, session):
    response = api.get(url(session))

    assert response.status_code == 200
    assert response.json()["id"] == session.id
    assert set(response.json()) >= {
        "status",
        "current_actor",
        "previous_actors",
        "owner_version",
        "thread",
        "project",
        "workspace",
        "created_at",
        "updated_at",
    }


def test_sessions_are_listed_by_thread_and_status(api, thread, project, make_session):
    other_thread = thread_services.thread_create(tenant=api.tenant, project_id=project.id)
    first = make_session()
    second = make_session(AGENT)
    elsewhere = make_session(on=other_thread)
    transitions.session_turn_start(session=second)

    by_thread = api.get("/api/v1/sessions/", {"thread": thread.id}).json()
    assert [s["id"] for s in by_thread["results"]] == [first.id, second.id]
    assert by_thread["next"] is None

    active = api.get("/api/v1/sessions/", {"status": "active"}).json()["results"]
    assert [s["id"] for s in active] == [second.id]

    both = api.get("/api/v1/sessions/", {"status": "idle,active"}).json()["results"]
    assert {s["id"] for s in both} == {first.id, second.id, elsewhere.id}


def test_the_list_is_paginated_with_a_cursor(api, make_session):
    made = [make_session().id for _ in range(3)]

    page = api.get("/api/v1/sessions/", {"limit": 2}).json()
    rest = api.get("/api/v1/sessions/", {"limit": 2, "cursor": page["next"]}).json()

    assert [s["id"] for s in page["results"] + rest["results"]] == made
    assert rest["next"] is None


def test_an_unknown_status_filter_is_400(api):
    details = assert_error(
        api.get("/api/v1/sessions/", {"status": "sleeping"}), 400, "validation_error"
    )
    assert "status" in details["fields"]


def test_bad_create_input_is_400(api, thread):
    for body in (
        {},
        {"thread": thread.id},
        {"thread": thread.id, "actor": {"kind": "robot", "id": "x"}},
        {"thread": thread.id, "actor": {"kind": "user"}},
        {"thread": thread.id, "actor": "alice"},
        {"thread": thread.id, "actor": USER, "status": "active"},
        [],
    ):
        assert_error(api.post("/api/v1/sessions/", body), 400, "validation_error")
    assert not Session.objects.exists()


def test_malformed_json_is_400(api):
    response = api.client.post("/api/v1/sessions/", "{nope", content_type="application/json")
    assert_error(response, 400, "malformed_json")


def test_a_session_on_an_unknown_thread_is_404(api):
    response = api.post("/api/v1/sessions/", {"thread": "thd_000000000000", "actor": USER})
    assert_error(response, 404, "not_found")


def test_a_session_on_an_archived_thread_is_409(api, thread):
    thread_services.thread_archive(thread=thread)

    response = api.post("/api/v1/sessions/", {"thread": thread.id, "actor": USER})

    assert_error(response, 409, "thread_archived")
    assert not Session.objects.exists()


def test_another_tenant_cannot_see_or_use_sessions(api, outsider, thread, session):
    assert_error(outsider.get(url(session)), 404, "not_found")
    assert outsider.get("/api/v1/sessions/").json()["results"] == []
    assert outsider.get("/api/v1/sessions/", {"thread": thread.id}).json()["results"] == []
    response = outsider.post("/api/v1/sessions/", {"thread": thread.id, "actor": USER})
    assert_error(response, 404, "not_found")


def test_an_unknown_session_is_404(api):
    assert_error(api.get(url("ses_000000000000")), 404, "not_found")
