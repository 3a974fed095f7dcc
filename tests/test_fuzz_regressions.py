"""What fuzzing the running API with schemathesis (and by hand) found, kept fixed.

Two kinds of finding: a 500 where bad input deserves a 4xx (or a plain answer), and a
response that does not match the OpenAPI schema the server publishes (/api/schema/), which
is what clients generate code from. Responses are checked against that very document.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from tests.conftest import assert_error
from threads import services
from threads.models import Thread

THREADS = "/api/v1/threads/"
SESSIONS = "/api/v1/sessions/"
USAGE = {"input_tokens": 10, "cache_read_tokens": 0, "cache_creation_tokens": 0, "output_tokens": 5}


# --- Checking a response against the published schema ------------------------------------


@pytest.fixture(scope="module")
def openapi(django_db_blocker) -> dict:
    from django.test import Client

    with django_db_blocker.unblock():
        response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content
    return response.json()


def as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 → JSON Schema: `nullable: true` becomes "or null" (the rest carries over)."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: as_json_schema(value) for key, value in node.items()}
    if converted.get("nullable") is True:
        del converted["nullable"]
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def assert_documented(openapi: dict, path: str, method: str, response) -> None:
    """The response's status is documented for the operation and its body matches."""
    operation = openapi["paths"][path][method]
    status = str(response.status_code)
    assert status in operation["responses"], (path, method, status, response.content)
    content = operation["responses"][status].get("content")
    if content is None:
        assert not response.content
        return
    schema = content["application/json"]["schema"]
    document = {**as_json_schema(schema), "components": as_json_schema(openapi["components"])}
    jsonschema.Draft202012Validator(document).validate(response.json())


def start_and_settle(api, thread) -> tuple[str, Any]:
    session = api.post(SESSIONS, {"thread": thread.id, "actor": {"kind": "agent", "id": "a"}})
    assert session.status_code == 201, session.content
    session_id = session.json()["id"]
    assert api.post(f"{SESSIONS}{session_id}/turns/start/").status_code == 200
    return session_id, api.post(f"{SESSIONS}{session_id}/turns/settle/", {"usage": USAGE})


# --- 500s --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_a_metadata_filter_on_a_non_finite_number_is_no_500(api, project, value):
    """json.loads reads these as float nan/inf, which jsonb cannot hold: PostgreSQL refused
    the query (500). They can only match as the string they are."""
    match = services.thread_create(tenant=api.tenant, project_id=project.id, metadata={"n": value})
    services.thread_create(tenant=api.tenant, project_id=project.id, metadata={"n": 1})

    response = api.get(THREADS, {"metadata.n": value})

    assert response.status_code == 200, response.content
    assert [t["id"] for t in response.json()["results"]] == [match.id]


def test_a_finite_json_number_still_matches_as_a_number(api, project):
    number = services.thread_create(tenant=api.tenant, project_id=project.id, metadata={"n": 1.5})

    response = api.get(THREADS, {"metadata.n": "1.5"})

    assert [t["id"] for t in response.json()["results"]] == [number.id]


# --- Responses that did not match the schema ---------------------------------------------


def test_a_thread_that_never_warmed_matches_its_schema(api, thread, openapi):
    """warming.next_warm_at and last_warm_at are null until a warm; the schema said string."""
    response = api.get(f"{THREADS}{thread.id}/")

    assert response.json()["warming"]["next_warm_at"] is None
    assert response.json()["warming"]["last_warm_at"] is None
    assert_documented(openapi, "/api/v1/threads/{id}/", "get", response)
    assert_documented(openapi, "/api/v1/threads/", "get", api.get(THREADS))
    for action in ("close", "open", "flush", "hydrate", "archive"):
        response = api.post(f"{THREADS}{thread.id}/{action}/")
        assert_documented(openapi, f"/api/v1/threads/{{id}}/{action}/", "post", response)


def test_a_session_matches_its_schema_without_queued_messages(api, thread, openapi):
    """queued_messages was a required field of Session, which only turns/settle fills."""
    session = api.post(SESSIONS, {"thread": thread.id, "actor": {"kind": "agent", "id": "a"}})
    session_id = session.json()["id"]

    assert_documented(openapi, "/api/v1/sessions/", "post", session)
    assert_documented(openapi, "/api/v1/sessions/", "get", api.get(SESSIONS))
    assert_documented(openapi, "/api/v1/sessions/{id}/", "get", api.get(f"{SESSIONS}{session_id}/"))
    failed = api.post(f"{SESSIONS}{session_id}/fail/", {"reason": "x"})
    assert_documented(openapi, "/api/v1/sessions/{id}/fail/", "post", failed)
    archived = api.post(f"{SESSIONS}{session_id}/archive/")
    assert_documented(openapi, "/api/v1/sessions/{id}/archive/", "post", archived)
    assert "queued_messages" not in archived.json()


def test_turns_settle_documents_and_answers_queued_messages(api, thread, openapi):
    api.post(f"{THREADS}{thread.id}/queue/", {"content": "steer"})

    _, settled = start_and_settle(api, thread)

    assert settled.status_code == 200, settled.content
    assert settled.json()["queued_messages"] == 1
    assert_documented(openapi, "/api/v1/sessions/{id}/turns/settle/", "post", settled)
    body = openapi["paths"]["/api/v1/sessions/{id}/turns/settle/"]["post"]["responses"]["200"]
    ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "queued_messages" in openapi["components"]["schemas"][ref]["required"]


def test_error_answers_match_their_schema(api, thread, openapi):
    missing = api.get(f"{THREADS}thd_missing/")
    assert_error(missing, 404, "not_found")
    assert_documented(openapi, "/api/v1/threads/{id}/", "get", missing)
    bad_limit = api.get(THREADS, {"limit": "0"})
    assert_error(bad_limit, 400, "validation_error")
    assert_documented(openapi, "/api/v1/threads/", "get", bad_limit)


# --- Request schemas that let through what the server refuses ------------------------------


def test_request_bodies_document_that_unknown_keys_are_refused(api, project, openapi):
    """StrictSerializer answers an unknown key with 400; the schema allowed any key."""
    schemas = openapi["components"]["schemas"]
    for name in ("ThreadCreateRequest", "MessageInRequest", "ActorRequest"):
        assert schemas[name]["additionalProperties"] is False, name
    for variant in schemas["HandoffCreateRequest"]["oneOf"]:  # single, broadcast
        assert variant["additionalProperties"] is False

    response = api.post(THREADS, {"project": project.id, "colour": "red"})

    assert assert_error(response, 400, "validation_error") == {
        "fields": {"colour": ["Unknown or read-only field."]}
    }


def test_page_limits_document_their_range(openapi):
    """`limit=0` is a 400; the schema said any integer."""
    for path in (
        "/api/v1/threads/",
        "/api/v1/sessions/",
        "/api/v1/events/",
        "/api/v1/threads/{id}/messages/",
        "/api/v1/threads/{id}/queue/",
    ):
        operation = openapi["paths"][path]["get"]
        (limit,) = [p for p in operation["parameters"] if p["name"] == "limit"]
        assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000), path


def test_the_metadata_filter_is_described_not_a_parameter_named_with_a_placeholder(
    api, project, openapi
):
    """A parameter literally named `metadata.<key>` is what a client sends: always a 400."""
    operation = openapi["paths"]["/api/v1/threads/"]["get"]

    assert all("<" not in p["name"] for p in operation["parameters"])
    assert "metadata.<key>=<value>" in operation["description"]
    assert_error(api.get(THREADS, {"metadata.<key>": "x"}), 400, "validation_error")


def test_message_content_and_state_schemas_say_what_is_accepted(api, thread, openapi):
    schemas = openapi["components"]["schemas"]
    content = {**as_json_schema(schemas["MessageInRequest"]["properties"]["content"])}
    state = as_json_schema(schemas["StateRequest"]["properties"]["state"])

    for value in (None, {}, 3, [{"text": "no type"}]):  # the server refuses all of these
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(value, content)
        message = {"role": "user", "content": value}
        posted = api.post(f"{THREADS}{thread.id}/messages/", {"messages": [message]})
        assert_error(posted, 400, "validation_error")
    for value in ([1], "s", 1):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(value, state)
        assert_error(
            api.put(f"{THREADS}{thread.id}/state/", {"state": value}), 400, "validation_error"
        )
    jsonschema.validate(None, state)
    jsonschema.validate({"a": [1]}, state)
    jsonschema.validate([{"type": "text", "text": "hi"}], content)


# --- Error details that named the wrong parameter ------------------------------------------


def test_a_bad_messages_cursor_is_blamed_on_the_cursor(api, thread):
    """`?cursor=x&after_seq=3` answered `fields.after_seq`, a parameter that was fine."""
    url = f"{THREADS}{thread.id}/messages/"

    details = assert_error(api.get(url, {"cursor": "x", "after_seq": 3}), 400, "validation_error")
    assert details == {"fields": {"cursor": ["Invalid cursor."]}}
    details = assert_error(api.get(url, {"after_seq": "x"}), 400, "validation_error")
    assert details == {"fields": {"after_seq": ["Must be a non-negative integer."]}}


# --- A body that was read as empty ---------------------------------------------------------


def chunked(api, method: str, path: str, body: dict):
    """What Django's WSGI request sees of a chunked body: no Content-Length (read as empty)."""
    return getattr(api.client, method)(
        path,
        data=json.dumps(body),
        content_type="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
        CONTENT_LENGTH="",
    )


def test_a_chunked_body_is_refused_not_read_as_empty(api, thread):
    """`POST …/fork/ {"title": "mine"}` sent chunked forked with the source's title (201)."""
    forked = chunked(api, "post", f"{THREADS}{thread.id}/fork/", {"title": "mine"})

    assert_error(forked, 411, "length_required")
    assert Thread.objects.filter(fork_of=thread).count() == 0
    compacted = chunked(api, "post", f"{THREADS}{thread.id}/compact/", {"keep_last": 1})
    assert_error(compacted, 411, "length_required")
    patched = chunked(api, "patch", f"{THREADS}{thread.id}/", {"title": "new"})
    assert_error(patched, 411, "length_required")


def test_a_body_with_a_content_length_still_works(api, thread):
    response = api.post(f"{THREADS}{thread.id}/fork/", {"title": "mine"})

    assert response.status_code == 201, response.content
    assert response.json()["title"] == "mine"


# --- Found by `make fuzz` (schemathesis, every check) ---------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("fork/", {"title": 0}, "title"),
        ("messages/truncate/", {"from_id": 0}, "from_id"),
    ],
)
def test_a_number_where_a_string_belongs_is_400_not_coerced(api, thread, path, body, field):
    """`{"title": 0}` forked a thread titled "0"; `{"from_id": 0}` truncated from id "0"."""
    response = api.post(f"{THREADS}{thread.id}/{path}", body)

    assert assert_error(response, 400, "validation_error") == {
        "fields": {field: ["Must be a string."]}
    }


def test_a_message_id_must_be_a_string(api, thread):
    message = {"id": 0, "role": "user", "content": "hi"}

    for method in ("post", "put"):
        response = getattr(api, method)(f"{THREADS}{thread.id}/messages/", {"messages": [message]})
        details = assert_error(response, 400, "validation_error")
        assert details == {"fields": {"messages": {"0": {"id": ["Must be a string."]}}}}
    assert api.get(f"{THREADS}{thread.id}/messages/").json()["results"] == []


def test_booleans_and_integers_are_not_coerced_either(api, thread):
    for warming in ({"enabled": 0}, {"enabled": "true"}, {"interval_s": "60"}, {"interval_s": 6e1}):
        response = api.patch(f"{THREADS}{thread.id}/", {"warming": warming})
        assert_error(response, 400, "validation_error")
    thread.refresh_from_db()
    assert thread.version == 1


def test_a_choice_error_lists_the_valid_values(api, thread):
    session_id, _ = start_and_settle(api, thread)
    body = {"outcome": {"status": "success"}, "agent_summary": "done"}

    response = api.post(f"{SESSIONS}{session_id}/summary/", body)

    details = assert_error(response, 400, "validation_error")
    assert details == {
        "fields": {"outcome": {"status": ['"success" is not one of succeeded, partial, failed.']}}
    }


def test_a_transition_error_reads_as_a_sentence(api, thread):
    session = api.post(SESSIONS, {"thread": thread.id, "actor": {"kind": "agent", "id": "a"}})
    session_id = session.json()["id"]

    response = api.post(f"{SESSIONS}{session_id}/turns/settle/", {"usage": USAGE})

    assert_error(response, 409, "illegal_transition")
    assert response.json()["error"]["message"] == "An idle session has no running turn to settle."


@pytest.mark.parametrize("path", ["/api/v1/", "/api/", "/api/v1/nothing/here"])
def test_every_path_under_the_api_answers_the_json_error_body(api, settings, path):
    """`/api/v1/` answered Django's HTML 404 page (with DEBUG on, its technical page)."""
    for debug in (False, True):
        settings.DEBUG = debug
        response = api.get(path)
        assert response["Content-Type"] == "application/json"
        assert_error(response, 404, "not_found")


@pytest.mark.parametrize("value", ["", "5"])
def test_an_empty_or_misplaced_page_parameter_is_400(api, thread, value):
    """`?limit=` (not an integer) was read as the default; the schema says integer."""
    assert_error(api.get(THREADS, {"limit": ""}), 400, "validation_error")
    assert_error(
        api.get(f"{THREADS}{thread.id}/messages/", {"after_seq": ""}), 400, "validation_error"
    )
    assert_error(
        api.get(f"{THREADS}{thread.id}/messages/", {"cursor": ""}), 400, "validation_error"
    )
    assert api.get(f"{THREADS}{thread.id}/messages/", {"cursor": value or "0"}).status_code == 200


def test_any_cursor_of_the_published_pattern_is_a_page_and_others_are_400(api, project, openapi):
    """Arbitrary base64 cursors were 400s the schema did not announce: now a cursor is
    `<position>[_<offset>]` digits, every one of which is a valid place to continue from."""
    for n in range(3):
        services.thread_create(tenant=api.tenant, project_id=project.id, title=f"t{n}")
    (cursor,) = [p for p in openapi["paths"][THREADS]["get"]["parameters"] if p["name"] == "cursor"]
    pattern = cursor["schema"]["pattern"]

    first = api.get(THREADS, {"limit": 2}).json()
    rest = api.get(THREADS, {"limit": 2, "cursor": first["next"]}).json()

    assert jsonschema.Draft202012Validator({"pattern": pattern}).is_valid(first["next"])
    assert len(first["results"]) + len(rest["results"]) == 3 and rest["next"] is None
    for forged in ("", "0", "9999999999999999", "1_999999", "123_0"):
        assert api.get(THREADS, {"cursor": forged}).status_code == 200, forged
    assert api.get(THREADS, {"cursor": "9999999999999999"}).json()["results"] == []
    for bad in ("x", "-1", "1_", "cD0x", "1" * 17):
        assert_error(api.get(THREADS, {"cursor": bad}), 400, "validation_error")


def test_events_after_an_unknown_event_is_404_as_documented(api, thread, openapi):
    response = api.get("/api/v1/events/", {"after": "evt_nope"})

    assert_error(response, 404, "not_found")
    assert_documented(openapi, "/api/v1/events/", "get", response)


def test_a_4301_digit_if_match_is_a_clean_412(api, thread):
    """int() refuses strings over 4,300 digits (ValueError): it was a 500."""
    header = '"' + "1" * 4301 + '"'

    response = api.patch(f"{THREADS}{thread.id}/", {"title": "x"}, HTTP_IF_MATCH=header)

    assert_error(response, 412, "stale_version")


def test_thread_list_items_with_fields_match_the_schema(api, thread, openapi):
    """Every Thread field was required, so `?fields=id,title` items failed the schema."""
    response = api.get(THREADS, {"fields": "id,title"})

    assert response.json()["results"] == [{"id": thread.id, "title": "First thread"}]
    assert_documented(openapi, THREADS, "get", response)
    assert_error(api.get(THREADS, {"fields": "id, title"}), 400, "validation_error")


def test_the_metadata_object_filter_is_containment(api, project, openapi):
    match = services.thread_create(
        tenant=api.tenant, project_id=project.id, metadata={"customer": "acme", "tags": {"a": 1}}
    )
    services.thread_create(tenant=api.tenant, project_id=project.id, metadata={"customer": "b"})
    (param,) = [
        p for p in openapi["paths"][THREADS]["get"]["parameters"] if p["name"] == "metadata"
    ]

    response = api.get(THREADS, {"metadata": json.dumps({"tags": {"a": 1}, "customer": "acme"})})

    assert [t["id"] for t in response.json()["results"]] == [match.id]
    assert param["content"]["application/json"]["schema"]["type"] == "object"
    assert [t["id"] for t in api.get(THREADS, {"metadata": "{}"}).json()["results"]]
    for bad in ("{", "[1]", '"acme"', "NaN", '{"a": NaN}', '{"a": "\\u0000"}'):
        assert_error(api.get(THREADS, {"metadata": bad}), 400, "validation_error")


def test_an_empty_patch_and_an_empty_recipient_list_are_described_by_the_schema(openapi):
    """Both are 400s; the schema allowed `{}` and `recipients: []`."""
    schemas = openapi["components"]["schemas"]

    assert schemas["PatchedThreadUpdateRequest"]["minProperties"] == 1
    single, broadcast = schemas["HandoffCreateRequest"]["oneOf"]
    assert (
        single["properties"]["mode"]["pattern"],
        broadcast["properties"]["mode"]["pattern"],
    ) == (
        "^single$",
        "^broadcast$",
    )
    assert [single["properties"]["recipients"][k] for k in ("minItems", "maxItems")] == [1, 1]
    assert broadcast["properties"]["recipients"]["minItems"] == 2
    assert broadcast["properties"]["recipients"]["uniqueItems"] is True
    assert schemas["MessageBatchRequest"]["properties"]["messages"]["minItems"] == 1


def test_a_post_to_a_path_that_names_no_endpoint_is_a_json_404(api):
    """The catch-all under /api/ answered CSRF's HTML 403 to a POST or DELETE (a real client
    gets CSRF checks; the test client skips them unless asked)."""
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api.secret}")
    for method in ("post", "delete", "patch"):
        response = getattr(client, method)("/api/v1/threads/%C2%84/")
        assert_error(response, 404, "not_found")


def test_a_patch_with_no_body_is_a_400_the_schema_announces(api, thread, openapi):
    operation = openapi["paths"]["/api/v1/threads/{id}/"]["patch"]

    response = api.client.patch(f"{THREADS}{thread.id}/")

    assert operation["requestBody"]["required"] is True
    assert_error(response, 400, "validation_error")


def test_a_bad_after_seq_is_400_even_when_a_cursor_wins(api, thread):
    """`?cursor=67&after_seq=false` answered 200: the cursor won, after_seq went unchecked."""
    url = f"{THREADS}{thread.id}/messages/"

    details = assert_error(
        api.get(url, {"cursor": "67", "after_seq": "false"}), 400, "validation_error"
    )

    assert details == {"fields": {"after_seq": ["Must be a non-negative integer."]}}


def test_strings_are_taken_verbatim_not_trimmed(api, thread):
    """A control character alone (`"\\u001c"`) was trimmed to blank: a 400 for a string the
    schema (minLength 1) allowed. Trimming is a coercion: strings are stored as sent."""
    response = api.patch(f"{THREADS}{thread.id}/", {"title": " spaced \u001c"})

    assert response.status_code == 200, response.content
    assert response.json()["title"] == " spaced \u001c"


def test_list_filter_choice_errors_list_the_valid_values(api):
    details = assert_error(api.get(THREADS, {"status": "closed"}), 400, "validation_error")
    assert details == {"fields": {"status": ['"closed" is not one of open, archived.']}}
    details = assert_error(api.get(SESSIONS, {"status": "idle,done"}), 400, "validation_error")
    assert "is not one of" in details["fields"]["status"][0]


def test_bodies_the_server_needs_are_required_in_the_schema(api, openapi):
    """`POST /handoffs/` with no body is a 400 (every field missing); the schema let it be."""
    for path, method in (
        ("/api/v1/handoffs/", "post"),
        ("/api/v1/threads/", "post"),
        ("/api/v1/threads/{id}/", "patch"),
    ):
        assert openapi["paths"][path][method]["requestBody"]["required"] is True, path
    assert_error(api.client.post("/api/v1/handoffs/"), 400, "validation_error")


def test_a_null_deliverable_is_accepted_as_the_schema_says(api, thread):
    """deliverables' items are any JSON value in the schema; null was refused."""
    session_id, _ = start_and_settle(api, thread)
    api.post(f"{SESSIONS}{session_id}/turns/start/")
    body = {"outcome": {"status": "succeeded"}, "agent_summary": "done", "deliverables": [None]}

    response = api.post(f"{SESSIONS}{session_id}/summary/", body)

    assert response.status_code == 201, response.content
    assert response.json()["summary"]["deliverables"] == [None]


def test_a_steering_message_is_blank_only_as_its_schema_pattern_says(api, thread, openapi):
    """`{"content": "\\u001f"}` was "blank" (str.strip() drops it); the schema allowed it."""
    pattern = openapi["components"]["schemas"]["QueueEnqueueRequest"]["properties"]["content"]

    accepted = api.post(f"{THREADS}{thread.id}/queue/", {"content": "\u001f"})

    assert accepted.status_code == 201, accepted.content
    assert pattern["pattern"] == "[^ \\t\\n\\r\\f\\v]"
    assert_error(
        api.post(f"{THREADS}{thread.id}/queue/", {"content": " \n"}), 400, "validation_error"
    )


def test_the_originals_cursor_is_published_as_the_seq_it_is(openapi):
    """originals/ published the list cursor's `<position>_<offset>` and refused `44849_9`."""
    path = "/api/v1/threads/{id}/compactions/{compaction_id}/originals/"
    (cursor,) = [p for p in openapi["paths"][path]["get"]["parameters"] if p["name"] == "cursor"]

    assert cursor["schema"]["pattern"] == "^[0-9]{1,18}$"
