"""/api/v1/threads/{id}/messages: append (idempotent per id), list, truncate, replace."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.conftest import assert_error
from threads.models import Message, Thread


def url(thread, suffix: str = "") -> str:
    return f"/api/v1/threads/{thread.id}/messages{suffix}"


def msg(message_id: str | None = None, content="hi", role: str = "user", **extra) -> dict:
    body = {"role": role, "content": content, **extra}
    if message_id is not None:
        body["id"] = message_id
    return body


def append(api, thread, *messages):
    return api.post(url(thread), {"messages": list(messages)})


def stored(thread) -> list[tuple[str, int]]:
    return list(
        Message.objects.filter(thread_id=thread.id).order_by("seq").values_list("message_id", "seq")
    )


# --- Append ------------------------------------------------------------------------------


def test_appending_answers_201_with_the_assigned_seqs(api, thread):
    response = append(api, thread, msg("a"), msg("b", role="assistant"))

    assert response.status_code == 201, response.content
    assert response.json() == {
        "appended": 2,
        "duplicates": 0,
        "messages": [{"id": "a", "seq": 1}, {"id": "b", "seq": 2}],
        "last_seq": 2,
    }
    thread.refresh_from_db()
    assert (thread.last_seq, thread.message_count) == (2, 2)
    assert thread.token_estimate > 0


def test_appending_a_known_id_again_is_a_duplicate(api, thread):
    append(api, thread, msg("a"))

    response = append(api, thread, msg("a", content="changed"))

    assert response.status_code == 200, response.content
    assert response.json() == {
        "appended": 0,
        "duplicates": 1,
        "messages": [{"id": "a", "seq": 1}],
        "last_seq": 1,
    }
    assert Message.objects.get(thread_id=thread.id).content == "hi"


def test_a_batch_mixing_known_and_new_ids_appends_only_the_new(api, thread):
    append(api, thread, msg("a"))

    response = append(api, thread, msg("a"), msg("b"))

    assert response.status_code == 201
    assert response.json()["appended"] == 1 and response.json()["duplicates"] == 1
    assert response.json()["messages"] == [{"id": "a", "seq": 1}, {"id": "b", "seq": 2}]
    assert stored(thread) == [("a", 1), ("b", 2)]


def test_a_repeated_id_inside_one_batch_is_stored_once(api, thread):
    response = append(api, thread, msg("a"), msg("b"), msg("a", content="again"))

    assert response.status_code == 201
    assert response.json() == {
        "appended": 2,
        "duplicates": 1,
        "messages": [{"id": "a", "seq": 1}, {"id": "b", "seq": 2}, {"id": "a", "seq": 1}],
        "last_seq": 2,
    }
    assert stored(thread) == [("a", 1), ("b", 2)]


def test_message_ids_are_taken_verbatim(api, thread):
    append(api, thread, msg("a"))

    response = append(api, thread, msg(" a"), msg("a "), msg("A"))

    assert response.json()["appended"] == 3
    assert stored(thread) == [("a", 1), (" a", 2), ("a ", 3), ("A", 4)]
    assert api.post(url(thread, "/truncate"), {"from_id": "a "}).json() == {"removed": 2}


def test_a_message_without_an_id_gets_a_msg_id(api, thread):
    response = append(api, thread, msg(), msg())

    ids = [m["id"] for m in response.json()["messages"]]
    assert response.status_code == 201
    assert all(i.startswith("msg_") and len(i) == 16 for i in ids)
    assert len(set(ids)) == 2
    assert stored(thread) == [(ids[0], 1), (ids[1], 2)]


def test_content_may_be_a_list_of_blocks_and_metadata_is_kept(api, thread):
    blocks = [{"type": "text", "text": "look"}, {"type": "image", "source": {"url": "x"}}]

    append(api, thread, msg("a", content=blocks, role="tool", metadata={"tool": "grep"}))

    message = Message.objects.get(thread_id=thread.id)
    assert (message.role, message.content, message.metadata) == ("tool", blocks, {"tool": "grep"})


def test_appending_to_an_unknown_thread_is_404(api):
    response = api.post("/api/v1/threads/thd_000000000000/messages", {"messages": [msg()]})

    assert_error(response, 404, "not_found")
    assert not Message.objects.exists()


def test_appending_to_a_closed_conversation_is_409_thread_closed(api, thread):
    # given: a message, then the user closed the conversation
    append(api, thread, msg("a"))
    assert api.post(f"/api/v1/threads/{thread.id}/close").status_code == 200
    thread.refresh_from_db()
    before = (thread.last_seq, thread.message_count, thread.history_version)

    # when
    response = append(api, thread, msg("b"))

    # then: refused with the error body, nothing stored or counted
    assert assert_error(response, 409, "thread_closed") == {"thread": thread.id}
    assert stored(thread) == [("a", 1)]
    thread.refresh_from_db()
    assert (thread.last_seq, thread.message_count, thread.history_version) == before
    # and a retry of a message it already holds is refused too (the lifecycle decides)
    assert_error(append(api, thread, msg("a")), 409, "thread_closed")


def test_a_reopened_conversation_takes_appends_again(api, thread):
    api.post(f"/api/v1/threads/{thread.id}/close")
    assert api.post(f"/api/v1/threads/{thread.id}/open").status_code == 200

    response = append(api, thread, msg("a"))

    assert response.status_code == 201, response.content
    assert response.json()["messages"] == [{"id": "a", "seq": 1}]


def test_another_tenants_closed_thread_is_404_not_409(api, outsider, thread):
    api.post(f"/api/v1/threads/{thread.id}/close")

    assert_error(append(outsider, thread, msg("a")), 404, "not_found")


def test_appends_and_reads_work_with_and_without_a_trailing_slash(api, thread):
    assert api.post(url(thread, "/"), {"messages": [msg("a")]}).status_code == 201
    assert api.get(url(thread, "/")).json()["results"][0]["id"] == "a"


# --- List --------------------------------------------------------------------------------


def test_messages_are_listed_in_seq_order_with_their_fields(api, thread):
    append(
        api, thread, msg("a"), msg("b", role="assistant", content=[{"type": "text", "text": "x"}])
    )

    response = api.get(url(thread))

    assert response.status_code == 200
    body = response.json()
    assert body["next"] is None
    assert [(m["id"], m["seq"], m["role"]) for m in body["results"]] == [
        ("a", 1, "user"),
        ("b", 2, "assistant"),
    ]
    first = body["results"][0]
    assert set(first) == {
        "id",
        "seq",
        "role",
        "content",
        "metadata",
        "token_estimate",
        "created_at",
    }
    assert first["content"] == "hi" and first["metadata"] == {}
    assert first["created_at"].endswith("Z")


def test_after_seq_returns_only_later_messages(api, thread):
    append(api, thread, *(msg(f"m{i}") for i in range(5)))

    response = api.get(url(thread), {"after_seq": 3})

    assert [m["seq"] for m in response.json()["results"]] == [4, 5]


def test_messages_are_paged_with_limit_and_next(api, thread):
    append(api, thread, *(msg(f"m{i}") for i in range(5)))

    # when
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = api.get(url(thread), params).json()
        seen.append([m["seq"] for m in body["results"]])
        cursor = body["next"]
        if cursor is None:
            break

    # then
    assert seen == [[1, 2], [3, 4], [5]]


def test_a_page_of_a_thousand_messages_is_allowed(api, thread):
    append(api, thread, *(msg(f"m{i}") for i in range(1000)))

    body = api.get(url(thread), {"limit": 1000}).json()

    assert len(body["results"]) == 1000
    assert body["next"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 1001},
        {"limit": 0},
        {"limit": -1},
        {"limit": "abc"},
        {"limit": "²"},
        {"after_seq": -1},
        {"after_seq": "abc"},
        {"after_seq": "1.5"},
        {"after_seq": "³"},
        {"after_seq": 10**30},
        {"cursor": "nope"},
    ],
)
def test_bad_list_parameters_are_validation_errors(api, thread, params):
    assert_error(api.get(url(thread), params), 400, "validation_error")


# --- Truncate ----------------------------------------------------------------------------


def test_truncating_removes_that_message_and_all_after_it(api, thread):
    append(api, thread, *(msg(f"m{i}") for i in range(5)))

    response = api.post(url(thread, "/truncate"), {"from_id": "m2"})

    assert response.status_code == 200, response.content
    assert response.json() == {"removed": 3}
    assert stored(thread) == [("m0", 1), ("m1", 2)]
    thread.refresh_from_db()
    assert thread.message_count == 2
    assert thread.token_estimate == sum(
        Message.objects.filter(thread_id=thread.id).values_list("token_estimate", flat=True)
    )


def test_truncating_from_an_unknown_id_removes_nothing(api, thread):
    append(api, thread, msg("a"))

    response = api.post(url(thread, "/truncate"), {"from_id": "zzz"})

    assert response.status_code == 200
    assert response.json() == {"removed": 0}
    assert stored(thread) == [("a", 1)]


def test_seqs_are_not_reused_after_a_truncation(api, thread):
    append(api, thread, msg("a"), msg("b"), msg("c"))
    api.post(url(thread, "/truncate"), {"from_id": "b"})

    response = append(api, thread, msg("b"), msg("d"))

    assert response.json()["messages"] == [{"id": "b", "seq": 4}, {"id": "d", "seq": 5}]
    assert stored(thread) == [("a", 1), ("b", 4), ("d", 5)]
    thread.refresh_from_db()
    assert (thread.last_seq, thread.message_count) == (5, 3)


def test_a_reader_paging_by_after_seq_does_not_miss_messages_after_a_truncation(api, thread):
    append(api, thread, msg("a"), msg("b"))
    last_seen = api.get(url(thread)).json()["results"][-1]["seq"]
    api.post(url(thread, "/truncate"), {"from_id": "b"})
    append(api, thread, msg("c"))

    later = api.get(url(thread), {"after_seq": last_seen}).json()["results"]

    assert [m["id"] for m in later] == ["c"]


def test_truncate_needs_a_from_id(api, thread):
    for body in ({}, {"from_id": ""}, {"from_id": ["a"]}, {"from_id": "a", "extra": 1}):
        assert_error(api.post(url(thread, "/truncate"), body), 400, "validation_error")


# --- Replace -----------------------------------------------------------------------------


def test_replacing_the_history_continues_the_seqs(api, thread):
    append(api, thread, msg("a"), msg("b"))

    response = api.put(url(thread), {"messages": [msg("x"), msg("a", content="new")]})

    assert response.status_code == 200, response.content
    assert response.json()["messages"] == [{"id": "x", "seq": 3}, {"id": "a", "seq": 4}]
    assert response.json()["last_seq"] == 4
    assert stored(thread) == [("x", 3), ("a", 4)]
    assert Message.objects.get(thread_id=thread.id, message_id="a").content == "new"
    thread.refresh_from_db()
    assert (thread.last_seq, thread.message_count) == (4, 2)


def test_replacing_with_an_empty_list_clears_the_history(api, thread):
    append(api, thread, msg("a"))

    response = api.put(url(thread), {"messages": []})

    assert response.status_code == 200
    assert stored(thread) == []
    thread.refresh_from_db()
    assert (thread.message_count, thread.token_estimate, thread.last_seq) == (0, 0, 1)


def test_a_replacement_with_a_repeated_id_is_refused_and_keeps_the_history(api, thread):
    append(api, thread, msg("a"))

    response = api.put(url(thread), {"messages": [msg("x"), msg("x")]})

    assert_error(response, 400, "validation_error")
    assert stored(thread) == [("a", 1)]


def test_history_writes_do_not_touch_the_thread_version(api, thread):
    append(api, thread, msg("a"))
    api.put(url(thread), {"messages": [msg("b")]})
    api.post(url(thread, "/truncate"), {"from_id": "b"})

    thread.refresh_from_db()
    assert thread.version == 1
    assert thread.history_version == 3


def test_a_history_cannot_be_patched_or_deleted_as_a_whole(api, thread):
    assert_error(api.patch(url(thread), {"messages": []}), 405, "method_not_allowed")
    assert_error(api.delete(url(thread)), 405, "method_not_allowed")


def test_a_thread_counts_match_its_rows_after_mixed_writes(api, thread):
    append(api, thread, *(msg(f"m{i}") for i in range(10)))
    api.post(url(thread, "/truncate"), {"from_id": "m7"})
    append(api, thread, msg("m1"), msg("n1"))

    thread = Thread.objects.get(pk=thread.pk)
    rows = Message.objects.filter(thread_id=thread.id)
    assert thread.message_count == rows.count() == 8
    assert thread.last_seq == 11
    assert thread.token_estimate == sum(rows.values_list("token_estimate", flat=True))


def test_appends_stay_correct_with_prepared_statements(api, thread):
    # given: the connection prepares every statement from its first run on, as with
    # DATABASE_PREPARE_THRESHOLD=1 (server-side binding is the default on PostgreSQL)
    connection.ensure_connection()
    raw = connection.connection
    previous, raw.prepare_threshold = raw.prepare_threshold, 0
    try:
        # when: appends reuse the prepared lock, id check and INSERT … UPDATE
        for i in range(4):
            response = append(api, thread, msg(f"m{i}"), msg(f"m{i}"))
            assert response.status_code == 201, response.content
        duplicate = append(api, thread, msg("m0"))
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements")
            prepared = cursor.fetchone()[0]
    finally:
        raw.prepare_threshold = previous

    # then: statements were prepared, and seqs, counts and duplicates are as without them
    assert prepared > 0
    assert duplicate.json()["messages"] == [{"id": "m0", "seq": 1}]
    assert stored(thread) == [(f"m{i}", i + 1) for i in range(4)]
    thread.refresh_from_db()
    assert (thread.last_seq, thread.message_count) == (4, 4)
