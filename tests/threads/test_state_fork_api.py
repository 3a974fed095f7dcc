"""/api/v1/threads/{id}/state and /api/v1/threads/{id}/fork."""

from __future__ import annotations

import pytest

from tests.conftest import assert_error
from threads import history as thread_history
from threads import services
from threads.models import Message, Thread


def state_url(thread) -> str:
    return f"/api/v1/threads/{thread.id}/state"


def fork_url(thread) -> str:
    return f"/api/v1/threads/{thread.id}/fork"


def history(thread_id: str) -> list[tuple]:
    return list(
        Message.objects.filter(thread_id=thread_id)
        .order_by("seq")
        .values_list("message_id", "seq", "role", "content", "metadata", "token_estimate")
    )


# --- State -------------------------------------------------------------------------------


def test_a_new_thread_has_a_null_state(api, thread):
    response = api.get(state_url(thread))

    assert response.status_code == 200
    assert response.json() == {"state": None}


def test_putting_a_state_object_stores_it_as_given(api, thread):
    state = {"step": 3, "plan": ["a", "b"], "nested": {"ok": True, "none": None}}

    put = api.put(state_url(thread), {"state": state})

    assert put.status_code == 200, put.content
    assert put.json() == {"state": state}
    assert api.get(state_url(thread)).json() == {"state": state}
    thread.refresh_from_db()
    assert thread.history_version == 1 and thread.version == 1


def test_putting_a_null_state_clears_it(api, thread):
    api.put(state_url(thread), {"state": {"k": 1}})

    response = api.put(state_url(thread), {"state": None})

    assert response.json() == {"state": None}
    thread.refresh_from_db()
    assert thread.state is None


@pytest.mark.parametrize(
    "body",
    [
        {"state": [1, 2]},
        {"state": "text"},
        {"state": 5},
        {"state": True},
        {},
        {"state": {}, "extra": 1},
        [{"state": {}}],
    ],
)
def test_a_state_that_is_not_an_object_or_null_is_refused(api, thread, body):
    api.put(state_url(thread), {"state": {"kept": True}})

    assert_error(api.put(state_url(thread), body), 400, "validation_error")
    thread.refresh_from_db()
    assert thread.state == {"kept": True}


def test_a_state_over_the_limit_is_413(api, thread, settings):
    settings.MAX_STATE_BYTES = 100

    response = api.put(state_url(thread), {"state": {"blob": "x" * 200}})

    assert_error(response, 413, "payload_too_large")
    thread.refresh_from_db()
    assert thread.state is None


def test_the_state_limit_counts_stored_utf8_bytes(api, thread, settings):
    settings.MAX_STATE_BYTES = 100
    fits = {"k": "é" * 40}  # 80 bytes of UTF-8, 240 as \u escapes

    assert api.put(state_url(thread), {"state": fits}).status_code == 200
    assert_error(api.put(state_url(thread), {"state": {"k": "é" * 60}}), 413, "payload_too_large")
    thread.refresh_from_db()
    assert thread.state == fits


def test_a_deeply_nested_state_is_kept_up_to_a_hundred_levels(api, thread):
    state: dict = {}
    node = state
    for _ in range(98):
        node["n"] = {}
        node = node["n"]

    assert api.put(state_url(thread), {"state": state}).status_code == 200
    node["n"] = {"too": {"deep": {}}}
    assert_error(api.put(state_url(thread), {"state": state}), 400, "malformed_json")


def test_state_cannot_be_posted_or_deleted(api, thread):
    assert_error(api.post(state_url(thread), {"state": {}}), 405, "method_not_allowed")
    assert_error(api.delete(state_url(thread)), 405, "method_not_allowed")


# --- Fork --------------------------------------------------------------------------------


def test_a_fork_is_a_new_open_thread_with_the_same_messages_and_state(api, thread):
    # given
    thread_history.messages_append(
        thread=thread,
        messages=[
            {"id": "a", "role": "user", "content": "hi", "metadata": {"k": 1}},
            {"id": "b", "role": "assistant", "content": [{"type": "text", "text": "yo"}]},
            {"id": "c", "role": "user", "content": "more"},
        ],
    )
    thread_history.messages_truncate(thread=thread, from_id="c")
    services.thread_state_set(thread=thread, state={"step": 2})
    Thread.objects.filter(pk=thread.pk).update(lifecycle="closed", metadata={"m": "v"})

    # when
    response = api.post(fork_url(thread), {})

    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] != thread.id and body["id"].startswith("thd_")
    assert body["fork_of"] == thread.id
    assert body["project"] == thread.project_id
    assert (body["status"], body["lifecycle"], body["version"]) == ("open", "idle", 1)
    assert (body["title"], body["metadata"]) == ("First thread", {"m": "v"})
    assert (body["last_seq"], body["message_count"]) == (3, 2)
    assert response["ETag"] == '"1"'
    assert history(body["id"]) == history(thread.id)
    assert api.get(f"/api/v1/threads/{body['id']}/state").json() == {"state": {"step": 2}}


def test_a_fork_takes_an_optional_title(api, thread):
    response = api.post(fork_url(thread), {"title": "Alternative"})

    assert response.status_code == 201
    assert response.json()["title"] == "Alternative"


def test_a_fork_without_a_body_keeps_the_title(api, thread):
    response = api.post(fork_url(thread))

    assert response.status_code == 201, response.content
    assert response.json()["title"] == thread.title


def test_a_fork_and_its_source_then_diverge(api, thread):
    thread_history.messages_append(
        thread=thread, messages=[{"id": "a", "role": "user", "content": "x"}]
    )
    fork_id = api.post(fork_url(thread), {}).json()["id"]

    # when: both receive the same new id, and the fork re-sends a copied one
    in_fork = api.post(
        f"/api/v1/threads/{fork_id}/messages",
        {
            "messages": [
                {"id": "a", "role": "user", "content": "x"},
                {"id": "b", "role": "user", "content": "f"},
            ]
        },
    )
    in_source = api.post(
        f"/api/v1/threads/{thread.id}/messages",
        {"messages": [{"id": "b", "role": "user", "content": "s"}]},
    )

    # then
    assert in_fork.json()["messages"] == [{"id": "a", "seq": 1}, {"id": "b", "seq": 2}]
    assert in_fork.json()["duplicates"] == 1
    assert in_source.json()["messages"] == [{"id": "b", "seq": 2}]
    assert Message.objects.get(thread_id=fork_id, message_id="b").content == "f"
    assert Message.objects.get(thread_id=thread.id, message_id="b").content == "s"


def test_an_archived_thread_can_be_forked_into_an_open_one(api, thread):
    services.thread_archive(thread=thread)

    response = api.post(fork_url(thread), {})

    assert response.status_code == 201
    assert response.json()["status"] == "open"


@pytest.mark.parametrize("body", [{"title": ["x"]}, {"title": "x" * 501}, {"project": "prj_x"}])
def test_a_bad_fork_request_is_refused_and_creates_nothing(api, thread, body):
    assert_error(api.post(fork_url(thread), body), 400, "validation_error")

    assert Thread.objects.count() == 1


def test_forking_an_unknown_thread_is_404(api):
    assert_error(api.post("/api/v1/threads/thd_000000000000/fork", {}), 404, "not_found")
