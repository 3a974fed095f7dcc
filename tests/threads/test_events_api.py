"""/api/v1/events/: the audit trail of thread changes, filtered by thread, kind and after."""

from __future__ import annotations

from tests.conftest import assert_error
from tests.factories import ProjectFactory
from threads import services

URL = "/api/v1/events/"


def kinds(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [e["kind"] for e in response.json()["results"]]


def test_every_thread_change_is_recorded_in_order(api, project):
    # given: a thread taken through every recorded change, over the API
    thread_id = api.post("/api/v1/threads/", {"project": project.id}).json()["id"]
    base = f"/api/v1/threads/{thread_id}"
    messages = [{"id": "a", "role": "user", "content": "x"}]
    api.patch(f"{base}/", {"title": "t"})
    api.post(f"{base}/messages", {"messages": messages})
    api.post(f"{base}/messages/truncate", {"from_id": "a"})
    api.put(f"{base}/messages", {"messages": messages})
    api.post(f"{base}/close")
    api.post(f"{base}/open")
    fork_id = api.post(f"{base}/fork", {}).json()["id"]
    api.post(f"{base}/archive")
    api.delete(f"/api/v1/threads/{fork_id}/")

    # when
    response = api.get(URL)

    # then
    assert kinds(response) == [
        "thread.created",
        "thread.edited",
        "thread.history_truncated",
        "thread.history_replaced",
        "thread.closed",
        "thread.opened",
        "thread.forked",
        "thread.archived",
        "thread.deleted",
    ]
    events = response.json()["results"]
    assert all(e["id"].startswith("evt_") for e in events)
    assert {e["thread"] for e in events} == {thread_id, fork_id}
    assert events[0]["session"] is None
    assert events[2]["payload"] == {"from_id": "a", "removed": 1}
    assert events[6]["thread"] == fork_id and events[6]["payload"]["source"] == thread_id
    assert set(events[0]) == {"id", "kind", "thread", "session", "payload", "created_at"}


def test_events_are_filtered_by_thread(api, project):
    first = services.thread_create(tenant=api.tenant, project_id=project.id)
    second = services.thread_create(tenant=api.tenant, project_id=project.id)
    services.thread_close(thread=second)

    response = api.get(URL, {"thread": second.id})

    assert kinds(response) == ["thread.created", "thread.closed"]
    assert {e["thread"] for e in response.json()["results"]} == {second.id}
    assert first.id not in {e["thread"] for e in response.json()["results"]}


def test_events_are_filtered_by_a_comma_list_of_kinds(api, thread):
    services.thread_close(thread=thread)
    services.thread_open(thread=thread)
    services.thread_archive(thread=thread)

    assert kinds(api.get(URL, {"kind": "thread.closed"})) == ["thread.closed"]
    assert kinds(api.get(URL, {"kind": "thread.archived,thread.created"})) == [
        "thread.created",
        "thread.archived",
    ]
    assert kinds(api.get(URL, {"kind": "thread.nothing"})) == []


def test_after_returns_only_later_events(api, thread):
    services.thread_close(thread=thread)
    services.thread_open(thread=thread)
    created = api.get(URL).json()["results"][0]["id"]

    assert kinds(api.get(URL, {"after": created})) == ["thread.closed", "thread.opened"]


def test_after_an_unknown_or_foreign_event_is_not_found(api, outsider, thread):
    """404, not 400: any string is a well-formed `after` (the schema says so); the event it
    names is missing (another tenant's is indistinguishable from a missing one)."""
    services.thread_create(
        tenant=outsider.tenant, project_id=ProjectFactory(tenant=outsider.tenant).id
    )
    theirs = outsider.get(URL).json()["results"][0]["id"]

    assert_error(api.get(URL, {"after": "evt_000000000000"}), 404, "not_found")
    assert_error(api.get(URL, {"after": theirs}), 404, "not_found")


def test_events_are_paged(api, thread):
    for _ in range(2):
        services.thread_close(thread=thread)
        services.thread_open(thread=thread)

    first = api.get(URL, {"limit": 3})
    second = api.get(URL, {"limit": 3, "cursor": first.json()["next"]})

    assert kinds(first) == ["thread.created", "thread.closed", "thread.opened"]
    assert kinds(second) == ["thread.closed", "thread.opened"]
    assert second.json()["next"] is None


def test_a_bad_page_request_is_a_validation_error(api, thread):
    for params in ({"limit": "0"}, {"limit": "x"}, {"cursor": "%%%"}):
        assert_error(api.get(URL, params), 400, "validation_error")


def test_the_events_of_a_deleted_thread_survive(api, thread):
    api.delete(f"/api/v1/threads/{thread.id}/")

    response = api.get(URL, {"thread": thread.id})

    assert kinds(response) == ["thread.created", "thread.deleted"]
    assert response.json()["results"][1]["payload"]["title"] == "First thread"


def test_an_outsider_sees_none_of_our_events(api, outsider, thread):
    services.thread_close(thread=thread)

    assert kinds(outsider.get(URL)) == []
    assert kinds(outsider.get(URL, {"thread": thread.id})) == []
    assert kinds(api.get(URL)) == ["thread.created", "thread.closed"]


def test_events_are_read_only(api, thread):
    assert_error(api.post(URL, {"kind": "thread.created"}), 405, "method_not_allowed")
    event_id = api.get(URL).json()["results"][0]["id"]
    assert_error(api.get(f"{URL}{event_id}/"), 404, "not_found")
