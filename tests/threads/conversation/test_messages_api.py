"""Requests the Messages API accepts: the warm built from the histories agent runtimes store,
sent by the real SDK to the stand-in (tests/llm_server.py), which answers 400 as the real API
does; the stand-in's own rules; the effort table; a provider 400 over HTTP."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import anthropic
import pytest

from tests.conftest import assert_error
from tests.llm_server import request_errors
from tests.threads.conversation.helpers import append, events
from threads.conversation.messages_api import effort_for, to_messages_api, warm_request
from threads.conversation.providers import WARM_PROMPT, AnthropicProvider

EPHEMERAL = {"type": "ephemeral"}


def provider(llm, model: str = "claude-test") -> AnthropicProvider:
    return AnthropicProvider(api_key="test", base_url=llm.url, model=model)


def text(value: str, marked: bool = False) -> dict:
    return {"type": "text", "text": value, **({"cache_control": EPHEMERAL} if marked else {})}


def call(tool_id: str, name: str = "grep", marked: bool = False) -> dict:
    block = {"type": "tool_use", "id": tool_id, "name": name, "input": {"q": tool_id}}
    return block | ({"cache_control": EPHEMERAL} if marked else {})


def result(tool_id: str, marked: bool = False) -> dict:
    block = {"type": "tool_result", "tool_use_id": tool_id, "content": [text("found")]}
    return block | ({"cache_control": EPHEMERAL} if marked else {})


def breakpoints(request: dict) -> int:
    def count(value) -> int:
        if isinstance(value, dict):
            return ("cache_control" in value) + count(value.get("content"))
        if isinstance(value, list):
            return sum(count(v) for v in value)
        return 0

    return count(request.get("system")) + count(request["messages"])


def warm(llm, history, model="claude-test", effort="high") -> dict:
    provider(llm, model).warm(history=history, reasoning_effort=effort)
    assert llm.rejected == [], llm.rejected
    return llm.requests[-1]


# --- What agent runtimes store -----------------------------------------------------------


def test_stored_cache_markers_are_replaced_by_at_most_four_of_ours(llm):
    # given: a runtime that marked the last block of every turn, and the system prompt
    history = [{"role": "system", "content": [text("You are a coding agent.", marked=True)]}]
    for n in range(6):
        history += [
            {"role": "user", "content": [text(f"step {n}", marked=True)]},
            {"role": "assistant", "content": [text(f"done {n}"), call(f"t{n}", marked=True)]},
            {"role": "tool", "content": [result(f"t{n}", marked=True)]},
            {"role": "assistant", "content": [text(f"ok {n}", marked=True)]},
        ]
    # when
    request = warm(llm, history)
    # then: the system prompt's marker once, and one at the end of the history
    assert breakpoints(request) == 2
    assert request["system"] == [text("You are a coding agent.", marked=True)]
    assert request["messages"][-2]["content"][-1] == text("ok 5", marked=True)
    assert request["messages"][-1] == {"role": "user", "content": [text(WARM_PROMPT)]}


def test_a_system_blocks_stored_marker_is_kept_once_with_its_ttl(llm):
    one_hour = {"type": "ephemeral", "ttl": "1h"}
    history = [
        {"role": "system", "content": [text("rules") | {"cache_control": one_hour}]},
        {"role": "user", "content": "hi"},
    ]
    request = warm(llm, history)
    assert request["system"] == [{"type": "text", "text": "rules", "cache_control": one_hour}]
    assert breakpoints(request) == 2


def test_many_marked_system_blocks_keep_the_last_three(llm):
    history = [{"role": "system", "content": [text(f"part {n}", marked=True) for n in range(6)]}]
    history.append({"role": "user", "content": "hi"})
    request = warm(llm, history)
    assert [("cache_control" in b) for b in request["system"]] == [False] * 3 + [True] * 3
    assert breakpoints(request) == 4


def test_a_history_ending_in_an_unanswered_tool_call_warms_the_prefix_before_it(llm):
    # given: the last turn paused for approval of a tool call
    history = [
        {"role": "user", "content": "delete the branch"},
        {"role": "assistant", "content": [text("I will run git."), call("t1", "sh")]},
    ]
    # when
    request = warm(llm, history)
    # then: the warm stops before the call (a text-only turn after it is a 400)
    assert request["messages"] == [
        {"role": "user", "content": [text("delete the branch", marked=True), text(WARM_PROMPT)]}
    ]


def test_a_call_answered_late_cuts_the_prefix_there_too(llm):
    history = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [call("t1")]},
        {"role": "user", "content": "never mind"},  # no tool_result
        {"role": "assistant", "content": "ok"},
    ]
    request = warm(llm, history)
    assert [m["role"] for m in request["messages"]] == ["user"]


def test_a_history_of_only_an_unanswered_call_is_nothing_to_warm(api, thread, llm):
    append(thread, [{"id": "a", "role": "assistant", "content": [call("t1")]}])
    details = assert_error(api.post(f"/api/v1/threads/{thread.id}/warm"), 409, "nothing_to_warm")
    assert details == {}
    assert llm.requests == []


def test_tool_results_come_first_and_empty_text_is_never_sent(llm):
    history = [
        {"role": "user", "content": "look"},
        {"role": "assistant", "content": [text(""), call("t1")]},
        {"role": "user", "content": [text("  "), text("and also"), result("t1")]},
        {"role": "tool", "content": [result("t2")]},  # answers no call: sent as text
        {"role": "assistant", "content": [text("", marked=True)]},  # nothing left: skipped
        {"role": "assistant", "content": ""},
    ]
    request = warm(llm, history)
    user = request["messages"][2]["content"]
    assert user[0]["type"] == "tool_result" and user[0]["tool_use_id"] == "t1"
    assert user[1] == text("and also")
    assert user[2]["text"].startswith("[tool result: found")
    assert request["messages"][1]["content"] == [call("t1")]
    sent = [b for m in request["messages"] for b in m["content"] if b["type"] == "text"]
    assert all(b["text"].strip() for b in sent)


def test_a_system_message_mid_history_stays_in_place_as_a_user_note(llm):
    history = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "a"},
        {"role": "system", "content": "The user switched to French."},
        {"role": "assistant", "content": "b"},
    ]
    request = warm(llm, history)
    assert request["system"] == [text("sys", marked=True)]
    assert request["messages"][0] == {
        "role": "user",
        "content": [text("a"), text("[system] The user switched to French.")],
    }


# --- Effort --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "requested", "sent"),
    [
        ("claude-opus-4-7", "xhigh", "xhigh"),
        ("claude-opus-4-7", "max", "max"),
        ("claude-opus-4-6", "xhigh", "high"),
        ("claude-opus-4-6", "max", "max"),
        ("claude-sonnet-4-6", "low", "low"),
        ("claude-opus-4-5-20251101", "max", "high"),
        ("claude-opus-4-5", "medium", "medium"),
        ("claude-haiku-4-5", "high", None),
        ("claude-haiku-4-5-20251001", "low", None),
        ("claude-test", "xhigh", None),
    ],
)
def test_effort_is_sent_only_to_models_that_take_it_at_a_level_they_take(
    llm, model, requested, sent
):
    assert effort_for(model, requested) == sent
    request = warm(llm, [{"role": "user", "content": "hi"}], model=model, effort=requested)
    assert request.get("output_config") == ({"effort": sent} if sent else None)


def test_the_effort_table_is_overridable_in_settings(settings):
    settings.LLM_EFFORT_LEVELS = {"claude-test": ("low", "medium"), "claude-opus-4-7": ()}
    assert effort_for("claude-test", "high") == "medium"
    assert effort_for("claude-opus-4-7", "high") is None


def test_the_effort_setting_reads_family_levels_and_refuses_nonsense(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from config.env import env_levels

    monkeypatch.setenv("X_LEVELS", "claude-x=low,high; claude-y=")
    assert env_levels("X_LEVELS", allowed=("low", "high")) == {
        "claude-x": ("low", "high"),
        "claude-y": (),
    }
    monkeypatch.setenv("X_LEVELS", "claude-x=turbo")
    with pytest.raises(ImproperlyConfigured):
        env_levels("X_LEVELS", allowed=("low", "high"))


# --- Many shapes -------------------------------------------------------------------------


def random_history(rng: random.Random) -> list[dict]:
    history: list[dict] = []
    open_calls: list[str] = []
    for n in range(rng.randint(1, 14)):
        kind = rng.choice(
            ["user", "assistant", "call", "result", "system", "empty", "tool", "misplaced"]
        )
        marked = rng.random() < 0.6
        if kind == "user":
            history.append({"role": "user", "content": [text(f"u{n}", marked)]})
        elif kind == "assistant":
            history.append({"role": "assistant", "content": rng.choice([f"a{n}", ""])})
        elif kind == "call":
            ids = [f"c{n}_{k}" for k in range(rng.randint(1, 2))]
            open_calls = ids
            blocks = [text(rng.choice(["", f"calling {n}"]), marked)]
            history.append({"role": "assistant", "content": blocks + [call(i) for i in ids]})
        elif kind in ("result", "tool"):
            answered = open_calls if rng.random() < 0.8 else [f"stray{n}"]
            blocks = [result(i, marked) for i in answered]
            if rng.random() < 0.5:
                blocks.insert(0, text(f"note {n}", marked))
            history.append({"role": "user" if kind == "result" else "tool", "content": blocks})
            open_calls = []
        elif kind == "misplaced":  # a result in an assistant turn, a call in a user turn
            history.append({"role": "assistant", "content": [result(f"x{n}")]})
            history.append({"role": "user", "content": [call(f"y{n}"), text(f"u{n}")]})
        elif kind == "system":
            history.append({"role": "system", "content": [text(f"s{n}", marked)]})
        else:
            history.append({"role": rng.choice(["user", "assistant"]), "content": [text(" ")]})
    return history


def test_every_history_shape_becomes_a_request_the_api_accepts(llm):
    rng = random.Random(11)
    for case in range(400):
        history = random_history(rng)
        params = warm_request(
            history, model="claude-opus-4-6", reasoning_effort="xhigh", prompt=WARM_PROMPT
        )
        if params is None:  # nothing before the first unanswered call
            system, messages = to_messages_api(history)
            assert not system and not messages
            continue
        body = {"model": "claude-opus-4-6", **params}
        assert request_errors(body) == [], (case, history, body)
    # and a sample through the SDK and HTTP
    for _ in range(20):
        history = random_history(rng)
        if warm_request(history, model="m", reasoning_effort="low", prompt="."):
            warm(llm, history, model="claude-opus-4-6", effort="xhigh")


# --- The stand-in plays the real API ------------------------------------------------------


def raw(llm, **params):
    client = anthropic.Anthropic(api_key="test", base_url=llm.url, max_retries=0)
    return client.messages.create(model=params.pop("model", "claude-test"), **params)


@pytest.mark.parametrize(
    ("params", "says"),
    [
        (
            {"messages": [{"role": "user", "content": [text(f"{n}", True) for n in range(5)]}]},
            "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": [call("t1")]},
                    {"role": "user", "content": "go on"},
                ]
            },
            "`tool_use` ids were found without `tool_result` blocks immediately after: t1",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": [call("t1")]},
                    {"role": "user", "content": [text("x"), result("t1")]},
                ]
            },
            "tool_result blocks must come first",
        ),
        (
            {"messages": [{"role": "user", "content": [text("", True)]}]},
            "text content blocks must be non-empty",
        ),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
            "roles must alternate",
        ),
        (
            {"messages": [{"role": "system", "content": "a"}]},
            "does not match any of the expected tags",
        ),
        (
            {
                "model": "claude-haiku-4-5",
                "output_config": {"effort": "high"},
                "messages": [{"role": "user", "content": "a"}],
            },
            "does not support effort",
        ),
        (
            {
                "model": "claude-opus-4-6",
                "output_config": {"effort": "xhigh"},
                "messages": [{"role": "user", "content": "a"}],
            },
            "'xhigh' is not supported by claude-opus-4-6",
        ),
    ],
)
def test_the_stand_in_answers_400_like_the_api(llm, params, says):
    with pytest.raises(anthropic.BadRequestError) as raised:
        raw(llm, max_tokens=1, **params)
    assert raised.value.status_code == 400
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert says in raised.value.body["error"]["message"]


def test_the_stand_in_accepts_a_well_formed_request(llm):
    reply = raw(
        llm,
        max_tokens=1,
        model="claude-opus-4-7",
        output_config={"effort": "xhigh"},
        messages=[
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": [call("t1")]},
            {"role": "user", "content": [result("t1"), text("b", True)]},
        ],
    )
    assert reply.type == "message"


# --- A provider 400 over HTTP --------------------------------------------------------------


def test_a_provider_400_on_a_warm_is_a_422_with_its_message_and_an_event(api, thread, llm):
    append(thread, [{"id": "u", "role": "user", "content": "hi"}])
    llm.fail_next(1, status=400)
    details = assert_error(api.post(f"/api/v1/threads/{thread.id}/warm"), 422, "provider_rejected")
    assert details == {"reason": "invalid_request_error", "status": 400, "retryable": False}
    body = api.post(f"/api/v1/threads/{thread.id}/warm")  # the next one goes through
    assert body.status_code == 200, body.content
    (event,) = events(thread, "warm.failed")
    assert event["trigger"] == "manual" and event["code"] == "invalid_request_error"
    assert event["status"] == 400 and "stand-in invalid_request_error" in event["error"]


def test_a_provider_400_message_reaches_the_client(api, thread, llm):
    append(thread, [{"id": "u", "role": "user", "content": "hi"}])
    llm.fail_next(1, status=400)
    response = api.post(f"/api/v1/threads/{thread.id}/warm")
    assert response.status_code == 422
    assert "stand-in invalid_request_error" in response.json()["error"]["message"]


def test_the_sdk_is_imported_when_django_starts():
    code = (
        "import sys, django; django.setup(); "
        "print('anthropic' in sys.modules, 'threads.conversation.providers' in sys.modules)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def test_a_timer_warm_with_nothing_to_warm_stops_with_a_reason(thread, llm):
    from datetime import timedelta

    from django.utils import timezone

    from threads.conversation.warming import warm_timer_run, warming_sweep
    from threads.models import Thread

    append(thread, [{"id": "a", "role": "assistant", "content": [call("t1")]}])
    Thread.objects.filter(pk=thread.pk).update(
        warming_enabled=True, next_warm_at=timezone.now() - timedelta(seconds=1)
    )
    ((thread_id, token),) = warming_sweep()
    assert warm_timer_run(thread_id=thread_id, token=token) is None
    assert llm.requests == []
    (event,) = events(thread, "warm.failed")
    assert event["trigger"] == "timer" and event["code"] == "nothing_to_warm"
    assert Thread.objects.get(pk=thread.pk).next_warm_at is None


def test_the_schema_documents_the_warms_422_and_the_new_conflicts(api):
    paths = api.get("/api/schema/", {"format": "json"}).json()["paths"]
    warm_responses = paths["/api/v1/threads/{id}/warm/"]["post"]["responses"]
    assert {"200", "409", "422", "503"} <= set(warm_responses)
    assert "nothing_to_warm" in warm_responses["409"]["description"]
    assert "provider_rejected" in warm_responses["422"]["description"]
    compact = paths["/api/v1/threads/{id}/compact/"]["post"]["responses"]
    assert "nothing_to_compact" in compact["409"]["description"]
