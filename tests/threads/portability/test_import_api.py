"""POST /threads/import: the documents other tools write, read back through the API field by
field; bad documents, limits, idempotency and tenant isolation."""

from __future__ import annotations

import copy
import gzip
import json

import pytest

from tests.conftest import assert_error
from tests.threads.portability import fixtures
from tests.threads.portability.helpers import import_url, messages_of, post_document, shape
from threads.models import Event, Message, Thread

pytestmark = pytest.mark.django_db

ZEITLICH_EXPECTED = [
    ("z-sys", 1, "system", "You are terse.", {}),
    ("z-u1", 2, "user", [{"type": "text", "text": "Weather in Oslo?"}], {}),
    ("z-a1", 3, "assistant", fixtures.ANTHROPIC_ASSISTANT["message"]["content"], {}),
    ("z-r1", 4, "user", fixtures.ANTHROPIC_TOOL_RESULT["message"]["content"], {}),
    ("z-p1", 5, "assistant", "It is -3 °C.", {}),
    ("lc-h1", 6, "user", "And Bergen?", {}),
    (
        "lc-a1",
        7,
        "assistant",
        [{"type": "tool_use", "id": "call_9", "name": "weather", "input": {"city": "Bergen"}}],
        {
            "unmapped": {
                "response_metadata": {"model_name": "gpt-x", "finish_reason": "tool_calls"},
                "usage_metadata": {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15},
            }
        },
    ),
    (
        "lc-t1",
        8,
        "tool",
        [{"type": "tool_result", "tool_use_id": "call_9", "content": "4 °C"}],
        {"tool_name": "weather"},
    ),
]


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_a_zeitlich_v1_snapshot_imports_with_every_shape_mapped(api, project, gzipped):
    # when
    response = post_document(api, project, fixtures.zeitlich_v1(), gzipped=gzipped)

    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["created"], body["format"]) == (True, "zeitlich")
    thread = body["thread"]
    assert (thread["project"], thread["tier"], thread["message_count"], thread["last_seq"]) == (
        project.id,
        "hot",
        8,
        8,
    )
    assert thread["metadata"]["import"]["format"] == "zeitlich"
    assert thread["metadata"]["import"]["dedupIds"] == ["z-sys:z-u1"]  # a batch key, kept
    assert shape(messages_of(api, thread["id"])) == ZEITLICH_EXPECTED
    state = api.get(f"/api/v1/threads/{thread['id']}/state").json()["state"]
    assert state == fixtures.ZEITLICH_STATE
    # and dedup works on the kept ids
    again = api.post(
        f"/api/v1/threads/{thread['id']}/messages",
        {"messages": [{"id": "z-a1", "role": "assistant", "content": "dup"}]},
    )
    assert again.json()["duplicates"] == 1 and again.json()["messages"][0]["seq"] == 3


def test_an_openai_conversations_items_page_imports(api, project):
    response = post_document(api, project, fixtures.OPENAI_PAGE)

    assert response.status_code == 201, response.content
    thread = response.json()["thread"]
    assert response.json()["format"] == "openai"
    assert shape(messages_of(api, thread["id"])) == [
        (
            "msg_u1",
            1,
            "user",
            [{"type": "text", "text": "Find flights to Rome"}],
            {"unmapped": {"status": "completed"}},
        ),
        (
            "rs_1",
            2,
            "assistant",
            [{"type": "thinking", "thinking": "User wants flights."}],
            {"unmapped": {"encrypted_content": "gAAAA-opaque"}},
        ),
        (
            "fc_1",
            3,
            "assistant",
            [
                {
                    "type": "tool_use",
                    "id": "call_f1",
                    "name": "search_flights",
                    "input": {"to": "FCO"},
                }
            ],
            {"unmapped": {"status": "completed"}},
        ),
        (
            "fco_1",
            4,
            "tool",
            [{"type": "tool_result", "tool_use_id": "call_f1", "content": '{"flights": 3}'}],
            {},
        ),
        (
            "ws_1",
            5,
            "assistant",
            [],
            {
                "unmapped": {
                    "type": "web_search_call",
                    "status": "completed",
                    "action": {"type": "search", "query": "Rome weather"},
                }
            },
        ),
        (
            "msg_a1",
            6,
            "assistant",
            [{"type": "text", "text": "Three flights found."}],
            {
                "unmapped": {
                    "status": "completed",
                    "content": [
                        {
                            "index": 0,
                            "annotations": [{"type": "url_citation", "url": "https://example.com"}],
                        }
                    ],
                }
            },
        ),
    ]
    assert thread["metadata"]["import"] == {
        "format": "openai",
        "sha256": thread["metadata"]["import"]["sha256"],
        "first_id": "msg_u1",
        "last_id": "msg_a1",
        "has_more": False,
    }


def test_an_items_page_listed_newest_first_imports_in_conversation_order(api, project):
    page = copy.deepcopy(fixtures.OPENAI_PAGE)
    page["data"].reverse()

    response = post_document(api, project, page, order="desc")

    assert response.status_code == 201, response.content
    ids = [m["id"] for m in messages_of(api, response.json()["thread"]["id"])]
    assert ids == [item["id"] for item in fixtures.OPENAI_PAGE["data"]]


def test_a_langgraph_thread_state_imports_with_tool_calls_and_tool_messages(api, project):
    response = post_document(api, project, fixtures.LANGGRAPH_STATE)

    assert response.status_code == 201, response.content
    thread = response.json()["thread"]
    ai = fixtures.LANGGRAPH_STATE["values"]["messages"][1]
    assert shape(messages_of(api, thread["id"])) == [
        ("lg-h1", 1, "user", "What is 3 * 7?", {}),
        (
            "lg-a1",
            2,
            "assistant",
            [
                *ai["content"],  # toolu_m is in the content already: not repeated
                {"type": "tool_use", "id": "toolu_l", "name": "log", "input": {"msg": "x"}},
            ],
            {
                "unmapped": {
                    "response_metadata": {"stop_reason": "tool_use"},
                    "usage_metadata": {"input_tokens": 20, "output_tokens": 8, "total_tokens": 28},
                }
            },
        ),
        (
            "lg-t1",
            3,
            "tool",
            [{"type": "tool_result", "tool_use_id": "toolu_m", "content": "21"}],
            {"tool_name": "multiply", "unmapped": {"status": "success"}},
        ),
        (
            "lg-t2",
            4,
            "tool",
            [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_l",
                    "content": "boom",
                    "is_error": True,
                }
            ],
            {"tool_name": "log"},
        ),
        ("lg-a2", 5, "assistant", "3 * 7 = 21.", {}),
    ]
    assert api.get(f"/api/v1/threads/{thread['id']}/state").json()["state"] == {"step": 4}
    assert thread["metadata"]["import"]["checkpoint"]["checkpoint_id"] == "1ef-abc"


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"v": 1, "messages": ["{}", 7], "state": None, "dedupIds": []}, "$.messages[0]"),
        ({"v": 1, "messages": ['{"role":"user","content":"a"}', "{not json"]}, "$.messages[1]"),
        (
            {"v": 1, "messages": [json.dumps({"id": "a", "role": "user", "content": 5})]},
            "$.messages[0].content",
        ),
        (
            {"v": 1, "messages": [json.dumps({"type": "ai", "data": {"content": [{"x": 1}]}})]},
            "$.messages[0].data.content[0]",
        ),
        ({"v": 1, "messages": [], "state": [1]}, "$.state"),
        ({"object": "list", "data": [{"type": "message", "role": "robot"}]}, "$.data[0].role"),
        (
            {"object": "list", "data": [{"type": "function_call_output", "output": "x"}]},
            "$.data[0].call_id",
        ),
        (
            {"values": {"messages": [{"type": "tool", "content": "x"}]}},
            "$.values.messages[0].tool_call_id",
        ),
        (
            {"values": {"messages": [{"type": "alien", "content": "x"}]}},
            "$.values.messages[0].type",
        ),
        ({"hello": "world"}, "$"),
    ],
)
def test_a_bad_document_is_a_400_naming_the_first_bad_element_and_writes_nothing(
    api, project, document, path
):
    threads_before = Thread.objects.count()

    details = assert_error(post_document(api, project, document), 400, "invalid_document")

    assert details["path"] == path
    assert Thread.objects.count() == threads_before
    assert not Message.objects.exists()


def test_a_repeated_message_id_is_a_400_and_nothing_is_half_imported(api, project):
    messages = [{"id": "same", "role": "user", "content": "a"}] * 2
    document = fixtures.zeitlich_v1(messages=messages, dedup_ids=[])

    details = assert_error(post_document(api, project, document), 400, "invalid_document")

    assert details["path"] == "$.messages[1].id"
    assert not Thread.objects.exists() and not Message.objects.exists()


def test_importing_the_same_document_twice_gives_the_same_thread(api, project, other_project):
    # given
    first = post_document(api, project, fixtures.zeitlich_v1())
    assert first.status_code == 201

    # when the same document comes again (plain or gzip: the same JSON)
    again = post_document(api, project, fixtures.zeitlich_v1(), gzipped=True)

    # then nothing is written twice
    assert again.status_code == 200, again.content
    assert again.json()["created"] is False
    assert again.json()["thread"]["id"] == first.json()["thread"]["id"]
    assert Thread.objects.count() == 1 and Message.objects.count() == 8
    assert Event.objects.filter(kind="thread.imported").count() == 1
    # and into another project it is another thread
    elsewhere = post_document(api, other_project, fixtures.zeitlich_v1())
    assert elsewhere.status_code == 201
    assert elsewhere.json()["thread"]["id"] != first.json()["thread"]["id"]


def test_a_body_over_the_limit_is_a_413_before_it_is_read(api, project, settings):
    settings.IMPORT_MAX_BYTES = 2048
    document = fixtures.zeitlich_v1(messages=[{"role": "user", "content": "x" * 4000}])

    assert_error(post_document(api, project, document), 413, "payload_too_large")


def test_a_gzip_body_that_unzips_past_the_limit_is_a_413(api, project, settings):
    settings.IMPORT_MAX_BYTES = 64 * 1024
    document = fixtures.zeitlich_v1(messages=[{"role": "user", "content": "x" * 200_000}])
    body = gzip.compress(json.dumps(document).encode())
    assert len(body) < settings.IMPORT_MAX_BYTES

    response = api.client.post(import_url(project), data=body, content_type="application/gzip")

    assert_error(response, 413, "payload_too_large")
    assert not Thread.objects.exists()


def test_bad_parameters_are_400s(api, project):
    document = fixtures.zeitlich_v1()
    assert_error(post_document(api, project, document, source="xml"), 400, "validation_error")
    response = api.client.post(
        "/api/v1/threads/import", data=b"{}", content_type="application/json"
    )
    assert_error(response, 400, "validation_error")
    response = api.client.post(import_url(project), data=b"", content_type="application/json")
    assert_error(response, 400, "validation_error")
    response = api.client.post(
        import_url(project), data=b"\x1f\x8bnot", content_type="application/gzip"
    )
    assert assert_error(response, 400, "invalid_document")["path"] == "$"


def test_an_outsider_cannot_import_into_a_project_of_ours(api, project, outsider):
    assert_error(post_document(outsider, project, fixtures.zeitlich_v1()), 404, "not_found")
    assert not Thread.objects.exists()


def threadline(**overrides) -> dict:
    doc = {
        "format": "threadline.thread",
        "version": 1,
        "thread": {"id": "thd_x", "last_seq": 1},
        "messages": [],
        "message_count": 0,
        "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    }
    return {**doc, **overrides}


@pytest.mark.parametrize(
    "document",
    [
        [1],
        {"values": []},
        {"v": 2, "messages": []},
        {"v": 1, "messages": ["null", '"text"', "[]"]},
        {"v": 1, "messages": [json.dumps({"role": "user", "content": "nul \u0000"})]},
        {"object": "list", "data": "x"},
        {"object": "list", "data": [{"type": "message", "role": "user", "content": {"a": 1}}]},
        {"object": "list", "data": [{"type": "message", "id": 5, "role": "user"}]},
        {"values": {"messages": [{"type": "ai", "content": None}]}},
        {"format": "threadline.thread", "version": 1},
        threadline(version=2),
        threadline(thread={"last_seq": 2**70}),
        threadline(thread={"compaction": {"context_window": 2**40}}),
        threadline(thread={"reasoning_effort": "extreme"}),
        threadline(compacted_ids=[{"id": "a", "seq": "1"}]),
        threadline(compactions=[{"id": 5}]),
        threadline(
            messages=[{"id": "a", "seq": 2**63, "role": "user", "content": "x", "metadata": {}}],
            message_count=1,
        ),
        threadline(messages=[{"id": "a", "seq": True, "role": "user"}], message_count=1),
    ],
)
def test_odd_documents_are_400s_never_500s(api, project, document):
    response = post_document(api, project, document)

    assert_error(response, 400, "invalid_document")
    assert not Thread.objects.exists()


def test_an_empty_conversation_imports_as_an_empty_thread(api, project):
    response = post_document(api, project, {"object": "list", "data": []})

    assert response.status_code == 201, response.content
    assert response.json()["thread"]["message_count"] == 0
