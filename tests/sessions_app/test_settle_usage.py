"""POST /sessions/{id}/turns/settle takes the usage object as the provider returned it:
Threadline's names, Anthropic's Messages API usage, OpenAI's Chat Completions and Responses
usage; a missing count is 0; the schema documents every name."""

from __future__ import annotations

import pytest

from tests.conftest import assert_error
from threads.models import Thread

ANTHROPIC = {
    "input_tokens": 12,
    "output_tokens": 30,
    "cache_read_input_tokens": 9000,
    "cache_creation_input_tokens": 400,
    "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 0},
    "server_tool_use": {"web_search_requests": 0},
    "service_tier": "standard",
}
OPENAI_CHAT = {
    "prompt_tokens": 9412,
    "completion_tokens": 30,
    "total_tokens": 9442,
    "prompt_tokens_details": {"cached_tokens": 9000, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 10, "audio_tokens": 0},
}
OPENAI_RESPONSES = {
    "input_tokens": 9412,
    "input_tokens_details": {"cached_tokens": 9000},
    "output_tokens": 30,
    "output_tokens_details": {"reasoning_tokens": 10},
    "total_tokens": 9442,
}


@pytest.fixture
def session(api, thread) -> str:
    created = api.post(
        "/api/v1/sessions/", {"thread": thread.id, "actor": {"kind": "agent", "id": "a"}}
    )
    assert created.status_code == 201, created.content
    session = created.json()["id"]
    assert api.post(f"/api/v1/sessions/{session}/turns/start").status_code == 200
    return session


def settle(api, session, usage):
    return api.post(f"/api/v1/sessions/{session}/turns/settle", {"usage": usage})


@pytest.mark.parametrize(
    ("usage", "stored"),
    [
        (ANTHROPIC, (12, 9000, 400, 30)),
        (OPENAI_CHAT, (412, 9000, 0, 30)),
        (OPENAI_RESPONSES, (412, 9000, 0, 30)),
        ({"prompt_tokens": 50, "completion_tokens": 5}, (50, 0, 0, 5)),
        (
            {"input_tokens": 1, "output_tokens": 2, "cache_read_tokens": 3},
            (1, 3, 0, 2),
        ),
        ({"prompt_tokens": 5, "prompt_tokens_details": None, "completion_tokens": 1}, (5, 0, 0, 1)),
        ({}, (0, 0, 0, 0)),
        ({"output_tokens": 7}, (0, 0, 0, 7)),
    ],
    ids=[
        "anthropic",
        "openai-chat",
        "openai-responses",
        "openai-no-cache",
        "threadline",
        "openai-null-details",
        "empty",
        "output-only",
    ],
)
def test_settle_takes_the_providers_usage_shapes(api, thread, session, usage, stored):
    response = settle(api, session, usage)
    assert response.status_code == 200, response.content
    names = ("input_tokens", "cache_read_tokens", "cache_creation_tokens", "output_tokens")
    assert response.json()["usage"] == dict(zip(names, stored, strict=True))
    thread = Thread.objects.get(pk=thread.pk)
    assert (
        thread.last_input_tokens,
        thread.last_cache_read_tokens,
        thread.last_cache_creation_tokens,
    ) == stored[:3]


@pytest.mark.parametrize(
    ("usage", "field"),
    [
        ({"input_tokens": 5, "prompt_tokens": 6}, "prompt_tokens"),
        ({"output_tokens": 5, "completion_tokens": 6}, "completion_tokens"),
        ({"cache_read_tokens": 1, "cache_read_input_tokens": 2}, "cache_read_input_tokens"),
        ({"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}}, "cached_tokens"),
        (
            {
                "prompt_tokens": 50,
                "prompt_tokens_details": {"cached_tokens": 9},
                "cache_read_input_tokens": 9,
            },
            "cache_read_input_tokens",
        ),
        ({"prompt_tokens_details": {"cached_tokens": "9"}}, "prompt_tokens_details"),
        ({"prompt_tokens": -1}, "prompt_tokens"),
        ({"reasoning_tokens": 2}, "reasoning_tokens"),
        ({"server_tool_use": {"web_search_requests": -1}}, "server_tool_use"),
    ],
)
def test_contradictory_or_bad_usage_is_a_400_naming_the_field(api, session, usage, field):
    details = assert_error(settle(api, session, usage), 400, "validation_error")
    assert field in str(details), details


def test_an_openai_settle_over_the_threshold_counts_cached_tokens_once(
    api, thread, session, django_capture_on_commit_callbacks
):
    # given: a threshold of 10,000 tokens; the turn's context is 9,412 (9,000 of it cached)
    Thread.objects.filter(pk=thread.pk).update(compaction_threshold_tokens=10_000)
    # when
    response = settle(api, session, OPENAI_CHAT)
    # then: not 18,412 — no auto-compaction
    assert response.status_code == 200, response.content
    from threads.models import Compaction

    assert not Compaction.objects.filter(thread=thread).exists()


def test_the_schema_documents_every_usage_name(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    usage = schema["components"]["schemas"]["SessionUsageInRequest"]["properties"]
    for name in (
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_creation_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "prompt_tokens",
        "completion_tokens",
        "prompt_tokens_details",
        "input_tokens_details",
        "completion_tokens_details",
        "output_tokens_details",
        "total_tokens",
        "cache_creation",
        "server_tool_use",
        "service_tier",
    ):
        assert name in usage, name
        assert usage[name].get("description") or usage[name].get("allOf") or "$ref" in usage[name]
    assert schema["components"]["schemas"]["SessionUsageInRequest"].get("required", []) == []
    cached = schema["components"]["schemas"]["CachedTokensRequest"]["properties"]
    assert "cached_tokens" in cached
