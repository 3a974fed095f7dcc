"""Bad input gets a 4xx with the error body, never a 500, and stores nothing."""

from __future__ import annotations

import base64

import pytest
from rest_framework.test import APIClient

from tests.conftest import assert_error
from threads import history, tenancy
from threads.models import ApiKey, Event, Message, Project, Thread


def counts_now() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in (Project, Thread, Message, Event)}


@pytest.fixture
def counts():
    """Snapshot the row counts; calling the result asserts nothing was stored since."""

    before = counts_now()

    def assert_unchanged():
        assert counts_now() == before

    return assert_unchanged


def raw(api, method: str, path: str, body: bytes, content_type: str = "application/json"):
    return getattr(api.client, method)(path, data=body, content_type=content_type)


def messages_url(thread) -> str:
    return f"/api/v1/threads/{thread.id}/messages"


# --- Malformed bodies --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"not json",
        b'{"messages": [}',
        b'{"messages": NaN}',
        b'{"messages": [{"role": "user", "content": Infinity}]}',
        b'{"messages": [{"role": "user", "content": -Infinity}]}',
        b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}',
        b'{"messages": [{"role": "user", "content": "\xed\xa0\x80"}]}',
        b'{"messages": [{"role": "user", "content": "a\\u0000b"}]}',
        b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
        b'{"messages": [{"role": "user", "content": "ok", "metadata": {"\\u0000": 1}}]}',
        b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\udfff"}]}]}',
        b'{"messages": [{"role": "user", "content": "x", "metadata": {"n": 1e400}}]}',
        b'{"messages": [{"role": "user", "content": "x", "metadata": {"n": -1e999}}]}',
        b'{"n": 1' + b"0" * 5000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"messages": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    ],
)
def test_a_malformed_body_is_400_malformed_json(api, thread, counts, body):
    assert_error(raw(api, "post", messages_url(thread), body), 400, "malformed_json")
    counts()


def test_an_empty_body_lacks_the_required_fields(api, thread, counts):
    details = assert_error(raw(api, "post", messages_url(thread), b""), 400, "validation_error")

    assert "messages" in details["fields"]
    counts()


@pytest.mark.parametrize(
    "path,body",
    [
        ("/api/v1/projects/", b'{"name": "a\\u0000"}'),
        ("/api/v1/projects/", b'{"name": "\\ud800"}'),
        ("/api/v1/threads/", b'{"project": "PROJECT", "title": "\\udbff"}'),
        ("/api/v1/threads/", b'{"project": "PROJECT", "metadata": {"k": "\\u0000"}}'),
        ("/api/v1/threads/", b'{"project": "PROJECT", "metadata": {"k": 1e309}}'),
        ("/api/v1/threads/", b'{"project": "PROJECT", "metadata": {"k": NaN}}'),
    ],
)
def test_unstorable_strings_and_numbers_are_refused_everywhere(api, project, counts, path, body):
    body = body.replace(b"PROJECT", project.id.encode())

    assert_error(raw(api, "post", path, body), 400, "malformed_json")
    counts()


def test_unstorable_input_is_refused_by_patch_state_truncate_and_fork(api, thread, counts):
    base = f"/api/v1/threads/{thread.id}"
    for method, path, body in (
        ("patch", f"{base}/", b'{"title": "\\u0000"}'),
        ("put", f"{base}/state", b'{"state": {"k": "\\ud800"}}'),
        ("put", f"{base}/state", b'{"state": {"k": 1e400}}'),
        ("post", f"{base}/messages/truncate", b'{"from_id": "\\u0000"}'),
        ("post", f"{base}/fork", b'{"title": "\\ud800"}'),
        ("put", f"{base}/messages", b'{"messages": [{"role": "user", "content": "\\u0000"}]}'),
    ):
        assert_error(raw(api, method, path, body), 400, "malformed_json")
    thread.refresh_from_db()
    assert (thread.title, thread.state, thread.version) == ("First thread", None, 1)
    counts()


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=base64",
        "application/json; charset=hex",
        "application/json; charset=utf-16",
    ],
)
def test_a_body_in_an_impossible_charset_is_400(api, thread, counts, content_type):
    body = b'{"messages": [{"role": "user", "content": "x"}]}'

    response = raw(api, "post", messages_url(thread), body, content_type=content_type)

    assert_error(response, 400, "malformed_json")
    counts()


def test_a_body_that_is_not_json_is_415(api, thread, counts):
    response = api.client.post(messages_url(thread), {"messages": "x"})  # multipart form

    assert_error(response, 415, "unsupported_media_type")
    counts()


# --- Wrong shapes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "messages",
    [
        "not a list",
        {"role": "user", "content": "x"},
        [],
        [None],
        ["hello"],
        [{"role": "robot", "content": "x"}],
        [{"role": None, "content": "x"}],
        [{"content": "x"}],
        [{"role": "user"}],
        [{"role": "user", "content": None}],
        [{"role": "user", "content": 5}],
        [{"role": "user", "content": True}],
        [{"role": "user", "content": {"type": "text"}}],
        [{"role": "user", "content": ["text"]}],
        [{"role": "user", "content": [{"text": "no type"}]}],
        [{"role": "user", "content": [{"type": ""}]}],
        [{"role": "user", "content": [{"type": 5}]}],
        [{"role": "user", "content": "x", "metadata": "m"}],
        [{"role": "user", "content": "x", "metadata": [1]}],
        [{"role": "user", "content": "x", "metadata": None}],
        [{"role": "user", "content": "x", "id": ""}],
        [{"role": "user", "content": "x", "id": "i" * 129}],
        [{"role": "user", "content": "x", "id": {"a": 1}}],
        [{"role": "user", "content": "x", "seq": 5}],
        [{"role": "user", "content": "x", "created_at": "2020-01-01"}],
        [{"role": "user", "content": "ok"}, {"role": "robot", "content": "x"}],
    ],
)
def test_a_badly_shaped_batch_is_a_validation_error_and_stores_nothing(api, thread, messages):
    # given: a history that a rejected append or replacement must leave alone
    history.messages_append(
        thread=thread, messages=[{"id": "kept", "role": "user", "content": "x"}]
    )
    thread.refresh_from_db()
    before = counts_now()

    # when
    appended = api.post(messages_url(thread), {"messages": messages})
    replaced = api.put(messages_url(thread), {"messages": messages}) if messages != [] else None

    # then
    assert_error(appended, 400, "validation_error")
    if replaced is not None:  # an empty replacement is valid: it clears the history
        assert_error(replaced, 400, "validation_error")
    after = Thread.objects.get(pk=thread.pk)
    assert (after.last_seq, after.message_count) == (1, 1)
    assert after.history_version == thread.history_version
    assert counts_now() == before


@pytest.mark.parametrize("body", [[1, 2], "text", 5, None, {"messages": None}, {"extra": 1}])
def test_a_body_that_is_not_the_expected_object_is_a_validation_error(api, thread, counts, body):
    assert_error(api.post(messages_url(thread), body), 400, "validation_error")
    assert_error(api.post("/api/v1/threads/", body), 400, "validation_error")
    counts()


def test_a_batch_of_more_than_a_thousand_messages_is_refused(api, thread, counts):
    batch = [{"role": "user", "content": "x"} for _ in range(1001)]

    assert_error(api.post(messages_url(thread), {"messages": batch}), 400, "validation_error")
    assert_error(api.put(messages_url(thread), {"messages": batch}), 400, "validation_error")
    counts()


def test_an_empty_batch_is_refused(api, thread, counts):
    details = assert_error(
        api.post(messages_url(thread), {"messages": []}), 400, "validation_error"
    )

    assert "messages" in details["fields"]
    counts()


# --- Sizes -------------------------------------------------------------------------------


def test_a_message_over_max_message_bytes_is_413_and_nothing_of_the_batch_is_stored(
    api, thread, counts, settings
):
    settings.MAX_MESSAGE_BYTES = 200
    batch = [
        {"id": "small", "role": "user", "content": "fine"},
        {"id": "big", "role": "user", "content": "x" * 300},
    ]

    details = assert_error(
        api.post(messages_url(thread), {"messages": batch}), 413, "payload_too_large"
    )

    assert details["index"] == 1 and details["limit"] == 200
    assert_error(api.put(messages_url(thread), {"messages": batch}), 413, "payload_too_large")
    counts()


def test_message_size_counts_multibyte_characters_as_bytes(api, thread, counts, settings):
    settings.MAX_MESSAGE_BYTES = 200

    response = api.post(messages_url(thread), {"messages": [{"role": "user", "content": "é" * 90}]})

    assert_error(response, 413, "payload_too_large")
    counts()


def test_a_request_body_over_max_request_bytes_is_413(api, thread, counts, settings):
    settings.MAX_REQUEST_BYTES = 2048
    batch = [{"role": "user", "content": "x" * 100} for _ in range(30)]

    assert_error(api.post(messages_url(thread), {"messages": batch}), 413, "payload_too_large")
    assert_error(
        api.put(f"/api/v1/threads/{thread.id}/state", {"state": {"x": "y" * 3000}}),
        413,
        "payload_too_large",
    )
    counts()


# --- Query parameters --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,params",
    [
        ("/api/v1/threads/", {"q": "a\x00b"}),
        ("/api/v1/threads/", {"project": "\x00"}),
        ("/api/v1/threads/", {"metadata.k": "\x00"}),
        ("/api/v1/threads/", {"metadata.\x00": "x"}),
        ("/api/v1/threads/", {"lifecycle": "idle,\x00"}),
        ("/api/v1/threads/", {"fields": "id,\x00"}),
        ("/api/v1/events/", {"after": "evt_\x00"}),
        ("/api/v1/events/", {"thread": "\x00"}),
        ("/api/v1/events/", {"kind": "a,\x00"}),
        ("/api/v1/projects/", {"limit": "\x00"}),
    ],
)
def test_a_nul_in_a_query_parameter_is_a_validation_error(api, thread, path, params):
    assert_error(api.get(path, params), 400, "validation_error")


def cursor(position: str) -> str:
    return base64.b64encode(f"p={position}".encode()).decode()


@pytest.mark.parametrize(
    "path",
    ["/api/v1/threads/", "/api/v1/projects/", "/api/v1/events/"],
)
@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "%%%",
        cursor("not-a-date"),
        cursor("9" * 40),
        base64.b64encode(b"p=\x00").decode(),
        base64.b64encode(b"o=-1").decode(),
        base64.b64encode(b"r=x").decode(),
    ],
)
def test_a_forged_cursor_is_a_validation_error(api, thread, path, value):
    assert_error(api.get(path, {"cursor": value}), 400, "validation_error")


def test_messages_list_refuses_huge_after_seq_limits_and_cursors(api, thread):
    url = messages_url(thread)
    for params in ({"after_seq": 10**30}, {"cursor": 10**30}, {"limit": 10**30}, {"limit": "1e3"}):
        assert_error(api.get(url, params), 400, "validation_error")


# --- Authentication ----------------------------------------------------------------------


def test_a_request_without_a_key_is_401(db, thread):
    client = APIClient()

    for path in ("/api/v1/threads/", f"/api/v1/threads/{thread.id}/", "/api/v1/events/"):
        response = client.get(path)
        assert_error(response, 401, "unauthenticated")
        assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer tl_not-a-real-key",
        "Bearer nope",
        "Bearer",
        "Bearer a b",
        "Bearer " + "x" * 500,
        "Basic dXNlcjpwYXNz",
        "Token tl_abc",
    ],
)
def test_an_invalid_key_is_401_and_stores_nothing(api, project, counts, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.post("/api/v1/threads/", {"project": project.id}, format="json")

    assert_error(response, 401, "unauthenticated")
    counts()


def test_a_non_ascii_key_is_401(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer tl_é")

    assert_error(client.get("/api/v1/threads/"), 401, "unauthenticated")


def test_a_revoked_key_is_401(api, project, counts):
    tenancy.api_key_revoke(api_key=ApiKey.objects.get(tenant=api.tenant))

    assert_error(api.get("/api/v1/threads/"), 401, "unauthenticated")
    assert_error(api.post("/api/v1/threads/", {"project": project.id}), 401, "unauthenticated")
    counts()


def test_a_valid_key_records_when_it_was_last_used(api):
    key = ApiKey.objects.get(tenant=api.tenant)
    assert key.last_used_at is None

    api.get("/api/v1/threads/")

    key.refresh_from_db()
    assert key.last_used_at is not None


# --- Unknown routes ------------------------------------------------------------------------


def test_unknown_api_routes_answer_with_the_error_body(api):
    assert_error(api.get("/api/v1/nothing/"), 404, "not_found")
    assert_error(api.get("/api/v1/threads/thd_000000000000/nothing"), 404, "not_found")
    assert_error(api.delete("/api/v1/threads/"), 405, "method_not_allowed")
