"""The provider layer: the local summarizer, and the real anthropic SDK talking HTTP to the
Messages API stand-in (tests/llm_server.py) — request shape, usage, error classification."""

from __future__ import annotations

import socket

import pytest

from threads.conversation.messages_api import to_messages_api
from threads.conversation.providers import (
    SUMMARY_MAX_TOKENS,
    WARM_PROMPT,
    AnthropicProvider,
    LocalProvider,
    ProviderError,
    ProviderRejected,
    Usage,
    get_provider,
)

PROMPT = (
    "Please summarize the following conversation:\n\n"
    "user: We need to migrate the billing service to PostgreSQL 16.\n"
    "assistant: The billing service uses three tables. The migration needs a maintenance "
    "window. [tool: grep]\n"
    "user: [tool result: billing/models.py: class Invoice]\n"
    "assistant: PostgreSQL 16 supports the billing schema as is. I will write the migration."
)


def provider(llm, model: str = "claude-test") -> AnthropicProvider:
    return AnthropicProvider(api_key="test", base_url=llm.url, model=model)


# --- local -------------------------------------------------------------------------------


def test_the_local_summary_is_deterministic_and_extractive():
    first = LocalProvider().summarize(prompt=PROMPT)
    assert first == LocalProvider().summarize(prompt=PROMPT)
    assert first.text.startswith("Earlier in this conversation")
    assert "billing" in first.text and "PostgreSQL 16" in first.text
    assert "[tool" not in first.text  # tool noise scores zero and is left out
    assert first.usage.input_tokens > 0


def test_the_local_summary_respects_the_output_budget():
    long_prompt = PROMPT + "".join(f"\nuser: Fact number {i} about billing." for i in range(500))
    text = LocalProvider().summarize(prompt=long_prompt, max_tokens=50).text
    assert len(text) <= 50 * 4 + 100


def test_the_local_summary_of_nothing_is_empty():
    assert LocalProvider().summarize(prompt="Please summarize:\n\n").text == ""


def test_the_local_warm_reports_zero_usage():
    assert LocalProvider().warm(
        history=[{"role": "user", "content": "hi"}], reasoning_effort="x"
    ) == (Usage())


def test_the_provider_follows_the_setting(settings, llm):
    settings.LLM_PROVIDER = "local"
    assert get_provider().name == "local"
    settings.LLM_PROVIDER = "anthropic"
    settings.LLM_MODEL = "claude-other"
    chosen = get_provider()
    assert (chosen.name, chosen.model, chosen.base_url) == ("anthropic", "claude-other", llm.url)


# --- anthropic: requests -----------------------------------------------------------------


def test_a_summary_request_has_the_fixed_system_prompt_and_the_token_cap(llm):
    completion = provider(llm).summarize(prompt=PROMPT)
    (request,) = llm.requests
    assert request["model"] == "claude-test"
    assert request["max_tokens"] == SUMMARY_MAX_TOKENS == 2000
    assert "summarize" in request["system"]
    assert request["messages"] == [{"role": "user", "content": PROMPT}]
    assert completion.text.startswith("Summary of")
    assert completion.usage.output_tokens > 0
    assert llm.headers[0]["x-stainless-retry-count"] == "0"


def test_a_warm_sends_the_prefix_with_one_cache_breakpoint_and_max_tokens_one(llm):
    history = [
        {"role": "system", "content": "The following is a summary: things happened."},
        {"role": "user", "content": "Run the tests."},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "sh", "input": {}}],
        },
        {"role": "tool", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]},
    ]
    usage = provider(llm, model="claude-opus-4-7").warm(history=history, reasoning_effort="xhigh")
    (request,) = llm.requests
    assert llm.rejected == []
    assert request["max_tokens"] == 1
    assert request["output_config"] == {"effort": "xhigh"}
    assert request["system"] == [
        {
            "type": "text",
            "text": "The following is a summary: things happened.",
            "cache_control": {"type": "ephemeral"},
        }
    ]
    roles = [m["role"] for m in request["messages"]]
    assert roles == ["user", "assistant", "user"]  # the tool result travels as a user turn
    last = request["messages"][-1]["content"]
    assert last[0]["type"] == "tool_result" and last[0]["cache_control"] == {"type": "ephemeral"}
    assert last[1] == {"type": "text", "text": WARM_PROMPT}
    assert usage == Usage(
        input_tokens=12, output_tokens=1, cache_read_tokens=900, cache_creation_tokens=88
    )


def test_a_prefix_of_only_system_messages_caches_the_system_prompt(llm):
    provider(llm).warm(history=[{"role": "system", "content": "sys"}], reasoning_effort="high")
    (request,) = llm.requests
    assert request["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert request["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": WARM_PROMPT}]}
    ]


def test_consecutive_messages_of_one_role_become_one_turn():
    system, messages = to_messages_api(
        [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": ""},  # empty: nothing to send
            {"role": "assistant", "content": "c"},
        ]
    )
    assert system == []
    assert messages == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "c"}]},
    ]


# --- anthropic: errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retryable", "reason"),
    [
        (529, True, "overloaded_error"),
        (429, True, "rate_limit_error"),
        (500, True, "api_error"),
        (503, True, "api_error"),
        (400, False, "invalid_request_error"),
        (401, False, "authentication_error"),
    ],
)
def test_errors_are_classified_retryable_or_not(llm, status, retryable, reason):
    llm.fail_next(1, status=status)
    with pytest.raises(ProviderError) as raised:
        provider(llm).summarize(prompt=PROMPT)
    error = raised.value
    assert (error.retryable, error.reason, error.provider_status) == (retryable, reason, status)
    if status == 400:  # the request's fault, not an outage
        assert isinstance(error, ProviderRejected)
        assert error.status == 422 and error.code == "provider_rejected"
        assert "stand-in invalid_request_error" in error.message
    else:
        assert error.status == 503 and error.code == "provider_unavailable"
    assert len(llm.requests) == 1  # the SDK did not retry on its own: retries are ours


def test_an_unreachable_provider_is_a_retryable_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = AnthropicProvider(api_key="test", base_url=f"http://127.0.0.1:{port}", model="m")
    with pytest.raises(ProviderError) as raised:
        dead.summarize(prompt=PROMPT)
    assert raised.value.retryable and raised.value.reason == "connection_error"
