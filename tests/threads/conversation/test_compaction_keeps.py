"""Compaction that never makes a conversation worse: the system prompt and pinned messages
survive, a second summary folds the first in, nothing new is refused, a summary that is not
smaller is not applied, the local summary is useful, tool inputs reach the prompt."""

from __future__ import annotations

import pytest

from tests.conftest import assert_error
from tests.threads.conversation.helpers import append, events, history, say
from threads.conversation.compaction import compaction_request, compaction_run
from threads.conversation.local_summary import summarize
from threads.conversation.prompt import (
    FOLD_HEADER,
    PROMPT_HEADER,
    TOOL_INPUT_PREVIEW_CHARS,
    build_prompt,
    choose_cut,
)
from threads.conversation.providers import LocalProvider
from threads.models import Compaction, Message

SYSTEM = {"id": "sys", "role": "system", "content": "You are the billing agent. Never refund."}


def url(thread, suffix: str) -> str:
    return f"/api/v1/threads/{thread.id}/{suffix}"


def compact(api, thread, capture, **body) -> Compaction:
    with capture(execute=True):
        response = api.post(url(thread, "compact"), body)
    assert response.status_code == 202, response.content
    return Compaction.objects.get(pk=response.json()["id"])


def contents(thread) -> list[tuple[str, str, object]]:
    return list(
        Message.objects.filter(thread=thread)
        .order_by("seq")
        .values_list("message_id", "role", "content")
    )


# --- What is never summarized ---------------------------------------------------------------


def test_the_system_prompt_survives_and_later_warms_send_it(
    api, thread, llm, s3, django_capture_on_commit_callbacks
):
    # given
    append(thread, [SYSTEM, *say(14)])
    # when
    compaction = compact(api, thread, django_capture_on_commit_callbacks, keep_last=5)
    # then: the system prompt first, then the summary, then the kept part
    assert compaction.status == "succeeded", compaction.error
    rows = contents(thread)
    assert rows[0] == ("sys", "system", SYSTEM["content"])
    assert rows[1][1] == "system" and rows[1][0] == compaction.summary_message_id
    assert [mid for mid, _, _ in rows[2:]] == [f"m{i}" for i in range(9, 14)]
    (request,) = llm.summary_requests()
    assert "Never refund" not in request["messages"][0]["content"]
    assert compaction.messages_summarized == 9 and compaction.messages_kept == 6
    # and a warm sends the system prompt ahead of the summary
    assert api.post(url(thread, "warm")).status_code == 200
    system = llm.warm_requests()[-1]["system"]
    assert system[0]["text"] == SYSTEM["content"] and "summary" in system[1]["text"]


def test_pinned_messages_survive_with_their_tool_partner(
    api, thread, llm, s3, django_capture_on_commit_callbacks
):
    # given: a pinned decision, and a pinned tool call whose result is not pinned
    messages = say(12)
    messages[2] |= {"metadata": {"pinned": True}}
    messages[4] = {
        "id": "m4",
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "t", "name": "ledger", "input": {"y": 2026}}],
        "metadata": {"pinned": True},
    }
    messages[5] = {
        "id": "m5",
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "t", "content": "42 invoices"}],
    }
    append(thread, messages)
    # when
    compaction = compact(api, thread, django_capture_on_commit_callbacks, keep_last=3)
    # then: summary, then the pinned ones (and the result answering the pinned call)
    assert compaction.status == "succeeded", compaction.error
    ids = [mid for mid, _ in history(thread)]
    assert ids[0] == compaction.summary_message_id
    assert ids[1:] == ["m2", "m4", "m5", "m9", "m10", "m11"]
    assert Message.objects.get(thread=thread, message_id="m2").metadata == {"pinned": True}
    archived = api.get(url(thread, f"compactions/{compaction.id}/originals")).json()["results"]
    assert [m["id"] for m in archived] == ["m0", "m1", "m3", "m6", "m7", "m8"]
    # and the history still reads back through the API in that order
    listed = api.get(url(thread, "messages")).json()["results"]
    assert [m["id"] for m in listed] == ids


def test_an_unanswered_tool_call_is_never_summarized_apart_from_its_result():
    messages = [
        *say(4),
        {"role": "assistant", "content": [{"type": "tool_use", "id": "late", "name": "sh"}]},
        *say(6, start=5),
    ]
    assert choose_cut(messages, 2) == 4  # not past the call whose result is still to come


# --- Nothing new, and folding ----------------------------------------------------------------


def test_compacting_again_with_nothing_new_is_refused(
    api, thread, llm, s3, django_capture_on_commit_callbacks
):
    append(thread, [SYSTEM, *say(14)])
    compact(api, thread, django_capture_on_commit_callbacks, keep_last=5)
    before = history(thread)
    # when: the older part is now the system prompt and the summary
    response = api.post(url(thread, "compact"), {"keep_last": 5})
    # then
    details = assert_error(response, 409, "nothing_to_compact")
    assert details == {"keep_last": 5}
    assert history(thread) == before
    assert len(llm.summary_requests()) == 1
    assert Compaction.objects.filter(thread=thread).count() == 1


def test_a_cold_thread_with_nothing_new_fails_at_run_time_with_the_same_code(
    api, thread, llm, s3, django_capture_on_commit_callbacks
):
    from threads.storage.tiers import thread_flush

    append(thread, say(14))
    compact(api, thread, django_capture_on_commit_callbacks, keep_last=5)
    thread_flush(thread=thread)
    thread.refresh_from_db()
    # when: a cold thread is not checked at request time (its rows are in the archive)
    compaction = compaction_request(thread=thread, keep_last=5)
    compaction_run(compaction_id=compaction.id)
    # then
    compaction.refresh_from_db()
    assert compaction.status == "failed"
    assert compaction.error.startswith("nothing_to_compact")
    assert events(thread, "compaction.failed")[-1]["code"] == "nothing_to_compact"


def test_a_new_summary_folds_the_previous_one_in(
    api, thread, llm, s3, django_capture_on_commit_callbacks
):
    append(thread, say(14))
    first = compact(api, thread, django_capture_on_commit_callbacks, keep_last=5)
    append(thread, say(6, start=14))
    # when
    second = compact(api, thread, django_capture_on_commit_callbacks, keep_last=5)
    # then: the prompt asks to fold the summary's lines, marked `summary:`, not quoted
    assert second.status == "succeeded", second.error
    prompt = llm.summary_requests()[-1]["messages"][0]["content"]
    assert prompt.startswith(FOLD_HEADER)
    assert f"summary: {first.summary}" in prompt
    assert "system: The following is a summary" not in prompt
    assert second.messages_summarized == 7  # the first summary and m9..m14
    rows = history(thread)
    assert rows[0][0] == second.summary_message_id
    assert sum(1 for _, role in rows if role == "system") == 1


def test_repeated_local_compactions_never_grow_and_never_quote_themselves(
    api, thread, settings, s3, django_capture_on_commit_callbacks
):
    settings.LLM_PROVIDER = "local"
    append(thread, [SYSTEM, *say(30)])
    sizes = []
    for round_ in range(4):
        compaction = compact(api, thread, django_capture_on_commit_callbacks, keep_last=4)
        assert compaction.status == "succeeded", compaction.error
        assert compaction.tokens_after < compaction.tokens_before
        summary = Message.objects.get(thread=thread, message_id=compaction.summary_message_id)
        assert summary.content.endswith(compaction.summary)
        text = compaction.summary
        assert "- system: -" not in text and "summary: " not in text
        lines = text.splitlines()
        assert len(lines) == len(set(lines)), text
        sizes.append(compaction.tokens_after)
        append(thread, say(12, start=100 + 20 * round_, prefix=f"r{round_}-"))
    # the covered count adds up (26, then 12 more each round), and the first topic is
    # still there after four rounds
    assert lines[0] == "Earlier in this conversation (62 messages):"
    assert lines[1] == "- user: Message number 0 talks about topic 0."
    assert max(sizes) <= sizes[0] * 3


# --- Not smaller: not applied ---------------------------------------------------------------


def test_a_summary_longer_than_what_it_replaces_is_not_applied(
    api, thread, llm, s3, django_capture_on_commit_callbacks
):
    append(thread, say(14))
    before = history(thread)
    llm.summary = "A very long summary. " * 200
    # when
    compaction = compact(api, thread, django_capture_on_commit_callbacks, keep_last=10)
    # then
    assert compaction.status == "failed"
    assert compaction.error.startswith("summary_not_smaller")
    assert history(thread) == before
    (event,) = events(thread, "compaction.failed")
    assert event["code"] == "summary_not_smaller"
    assert event["summary_tokens"] > event["replaced_tokens"]
    detail = api.get(url(thread, f"compactions/{compaction.id}/")).json()
    assert detail["status"] == "failed" and "not smaller" in detail["error"]


# --- The local summary and the prompt --------------------------------------------------------


def long_conversation() -> str:
    lines = ["user: We need to migrate the billing service to PostgreSQL 16."]
    for n in range(100):
        lines.append(f"assistant: Checked table invoices_{n % 7}. It needs an index.")
        lines.append("user: Okay, continue with the next table.")  # said 100 times
        if n % 10 == 0:
            lines.append(f'assistant: [tool: psql {{"query":"select {n}"}}]')
    lines.append("user: Finally, schedule the cutover for Friday night.")
    return PROMPT_HEADER + "\n".join(lines)


def test_the_local_summary_is_useful_deterministic_and_bounded():
    prompt = long_conversation()
    text = summarize(prompt, max_chars=2000)
    assert text == summarize(prompt, max_chars=2000)
    lines = text.splitlines()
    assert len(lines) == len(set(lines)), text  # no repeated line
    assert lines[0] == "Earlier in this conversation (212 messages):"
    assert "migrate the billing service" in lines[1]  # the first topic …
    assert "cutover for Friday night" in text  # … and the last
    assert lines[-1] == "Tools used: psql (10)"
    assert len(text) <= 2000
    assert "statements)" not in text
    assert LocalProvider().summarize(prompt=prompt, max_tokens=100).text.count("\n") < 15


def test_the_local_summary_of_a_summary_folds_it_in():
    first = summarize(long_conversation(), max_chars=1500)
    prompt = build_prompt(
        [
            {
                "role": "system",
                "content": "The following is a summary of the previous conversation:\n\n" + first,
                "metadata": {"compaction": "cmp_x"},
            },
            {"role": "user", "content": "Also move the reports service. [tool: sh]"},
            {"role": "assistant", "content": "The reports service moved."},
        ]
    )
    second = summarize(prompt, max_chars=1500)
    assert second.startswith("Earlier in this conversation (214 messages):")
    assert "- summary:" not in second and "- system:" not in second
    assert "migrate the billing service" in second and "reports service moved" in second
    assert second.splitlines()[-1] == "Tools used: psql (10), sh"
    assert len(second.splitlines()) == len(set(second.splitlines()))


@pytest.mark.parametrize("size", [10, 10_000])
def test_tool_inputs_reach_the_prompt_bounded(size):
    prompt = build_prompt(
        [
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t", "name": "write", "input": {"body": "x" * size}}
                ],
            }
        ]
    )
    line = prompt.removeprefix(PROMPT_HEADER)
    assert line.startswith('assistant: [tool: write {"body":"xxxxxxxxxx')
    assert len(line) <= len("assistant: [tool: write ]") + TOOL_INPUT_PREVIEW_CHARS
