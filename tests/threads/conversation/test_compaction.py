"""Compaction: the cut, the prompt, the run (provider → archive → one short transaction), the
API, automatic compaction, the backstop, retries and a real worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from config.celery import app as celery_app
from tests.conftest import assert_error
from tests.threads.conversation.helpers import (
    append,
    events,
    history,
    in_other_connection,
    say,
    start_turn,
    worker_env,
)
from tests.workers import celery_worker, wait_for
from threads import history as thread_history
from threads import services
from threads.conversation.backstop import compaction_backstop
from threads.conversation.compaction import (
    compaction_after_settle,
    compaction_request,
    compaction_run,
)
from threads.conversation.prompt import PROMPT_HEADER, build_prompt, choose_cut
from threads.conversation.queue import queue_enqueue
from threads.conversation.rewrite import SUMMARY_PREFIX
from threads.models import Compaction, Event, Message, Thread
from threads.storage import cold


def url(thread, suffix: str = "") -> str:
    return f"/api/v1/threads/{thread.id}/{suffix}"


def msg(role: str, content, id: str | None = None) -> dict:
    return {"role": role, "content": content, **({"id": id} if id else {})}


def tool_use(tool_id: str, name: str = "grep") -> dict:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": {"q": "x"}}


def tool_result(tool_id: str, text: str = "found it") -> dict:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": text}


# --- The cut -------------------------------------------------------------------------------


def test_the_cut_keeps_the_last_keep_last_messages():
    messages = say(15)
    assert choose_cut(messages, 10) == 5
    assert choose_cut(messages, 15) == 0
    assert choose_cut(messages, 20) == 0


def test_the_cut_never_separates_a_tool_use_from_its_result():
    # given: the kept part would start with the tool_result answering message 4's tool_use
    messages = [
        *say(4),
        msg("assistant", [{"type": "text", "text": "let me look"}, tool_use("t1")]),  # 4
        msg("user", [tool_result("t1")]),  # 5
        *say(3, start=6),  # 6, 7, 8
    ]
    # when: keep_last 4 puts the cut between 4 and 5
    cut = choose_cut(messages, 4)
    # then: it moved before the tool_use
    assert cut == 4
    assert messages[cut]["content"][1]["type"] == "tool_use"


def test_the_cut_moves_past_chained_tool_calls_and_tool_role_results():
    messages = [
        *say(2),
        msg("assistant", [tool_use("a")]),  # 2
        msg("user", [tool_result("a")]),  # 3
        msg("assistant", [tool_use("b")]),  # 4
        msg("tool", [tool_result("b")]),  # 5
        msg("assistant", "done"),  # 6
    ]
    assert choose_cut(messages, 2) == 4  # not between 4 and 5: 5 answers 4
    assert choose_cut(messages, 1) == 6
    assert choose_cut(messages, 3) == 4


def test_the_cut_is_zero_when_everything_older_is_one_open_tool_call():
    messages = [msg("assistant", [tool_use("a")]), msg("user", [tool_result("a")])]
    assert choose_cut(messages, 1) == 0


# --- The prompt ----------------------------------------------------------------------------


def test_the_prompt_lists_role_text_lines_with_tool_calls_and_results_abbreviated():
    long_result = "x" * 300
    prompt = build_prompt(
        [
            msg("user", "Find the bug."),
            msg("assistant", [{"type": "text", "text": "Searching."}, tool_use("t", "grep")]),
            msg("user", [tool_result("t", long_result)]),
            msg("tool", [tool_result("u", [{"type": "text", "text": "nested"}])]),
        ]
    )
    assert prompt == (
        "Please summarize the following conversation:\n\n"
        "user: Find the bug.\n"
        'assistant: Searching. [tool: grep {"q":"x"}]\n'
        f"user: [tool result: {'x' * 200}]\n"
        "tool: [tool result: nested]"
    )
    assert prompt.startswith(PROMPT_HEADER)


# --- The run -------------------------------------------------------------------------------


@pytest.fixture
def long_thread(thread):
    append(thread, say(15))
    return thread


def test_a_compaction_replaces_the_older_part_with_one_summary_message(
    api, long_thread, llm, s3, django_capture_on_commit_callbacks
):
    thread = long_thread
    before = thread.history_version
    with django_capture_on_commit_callbacks(execute=True):  # the hot cache holds 15 messages
        assert len(api.get(url(thread, "messages")).json()["results"]) == 15
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(url(thread, "compact"), {})
    # then: 202 with the queued compaction, which the task then ran
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["trigger"] == "manual"
    assert body["id"].startswith("cmp_")
    compaction = Compaction.objects.get(pk=body["id"])
    assert compaction.status == "succeeded", compaction.error
    assert (compaction.messages_summarized, compaction.messages_kept) == (5, 10)
    assert compaction.provider == "anthropic"
    assert compaction.tokens_after < compaction.tokens_before
    assert set(compaction.timings) >= {"provider_ms", "archive_ms", "commit_ms", "total_ms"}

    rows = history(thread)
    assert rows[0][1] == "system"
    assert [mid for mid, _ in rows[1:]] == [f"m{i}" for i in range(5, 15)]
    summary = Message.objects.get(thread=thread, message_id=rows[0][0])
    assert summary.content == SUMMARY_PREFIX + compaction.summary
    assert summary.metadata["compaction"] == compaction.pk

    thread.refresh_from_db()
    assert thread.message_count == 11
    assert thread.history_version == before + 1
    seqs = list(Message.objects.filter(thread=thread).order_by("seq").values_list("seq", flat=True))
    assert seqs[0] > 15 and seqs == sorted(seqs) and thread.last_seq == seqs[-1]

    # the provider was asked for exactly the documented prompt, at most 2000 tokens
    (request,) = llm.summary_requests()
    assert request["max_tokens"] == 2000
    assert request["messages"][0]["content"] == build_prompt(
        [{"role": m["role"], "content": m["content"]} for m in say(5)]
    )
    (event,) = events(thread, "thread.compacted")
    assert event["messages_summarized"] == 5 and event["compaction"] == compaction.pk
    # and readers see the new history (the hot cache stayed coherent)
    listed = api.get(url(thread, "messages")).json()["results"]
    assert [m["id"] for m in listed] == [mid for mid, _ in rows]


def test_the_originals_are_archived_and_served_paginated(
    api, long_thread, llm, s3, django_capture_on_commit_callbacks
):
    thread = long_thread
    with django_capture_on_commit_callbacks(execute=True):
        cid = api.post(url(thread, "compact"), {"keep_last": 4}).json()["id"]
    compaction = Compaction.objects.get(pk=cid)
    assert compaction.archive_key.endswith(f"/compactions/{thread.id}/{cid}.json.gz")
    head = s3.client().head_object(Bucket=s3.bucket, Key=compaction.archive_key)
    assert head["ContentType"] == "application/gzip"
    assert len(cold.gunzip_json(cold.get(compaction.archive_key))["messages"]) == 11

    # when: paging through GET …/originals
    first = api.get(url(thread, f"compactions/{cid}/originals"), {"limit": 6})
    assert first.status_code == 200, first.content
    page1 = first.json()
    second = api.get(
        url(thread, f"compactions/{cid}/originals"), {"limit": 6, "cursor": page1["next"]}
    ).json()
    # then
    originals = page1["results"] + second["results"]
    assert second["next"] is None
    assert [m["id"] for m in originals] == [f"m{i}" for i in range(11)]
    assert originals[3]["content"] == say(15)[3]["content"]
    assert [m["seq"] for m in originals] == list(range(1, 12))

    listed = api.get(url(thread, "compactions")).json()
    assert [c["id"] for c in listed["results"]] == [cid] and listed["next"] is None
    detail = api.get(url(thread, f"compactions/{cid}/"))
    assert detail.status_code == 200 and detail.json()["messages_summarized"] == 11


def test_originals_of_a_compaction_that_did_not_succeed_are_a_409(api, long_thread):
    compaction = Compaction.objects.create(thread=long_thread, trigger="manual", keep_last=10)
    response = api.get(url(long_thread, f"compactions/{compaction.id}/originals"))
    assert_error(response, 409, "compaction_not_succeeded")


def test_an_empty_summary_fails_the_compaction_and_changes_nothing(api, long_thread, llm, s3):
    # given
    llm.summary = ""
    compaction = compaction_request(thread=long_thread)
    before = history(long_thread)
    # when
    compaction_run(compaction_id=compaction.id)
    # then
    compaction.refresh_from_db()
    assert compaction.status == "failed"
    assert compaction.error.startswith("empty_summary")
    assert history(long_thread) == before
    assert events(long_thread, "compaction.failed")[0]["code"] == "empty_summary"


def test_a_failing_archive_write_fails_the_compaction_and_keeps_every_message(long_thread, llm, s3):
    compaction = compaction_request(thread=long_thread)
    before = history(long_thread)
    s3.stop()
    try:
        compaction_run(compaction_id=compaction.id)
    finally:
        s3.start()
        s3.create_bucket(s3.bucket)
    compaction.refresh_from_db()
    assert compaction.status == "failed"
    assert compaction.error.startswith("cold_storage_unavailable")
    assert history(long_thread) == before


def test_the_local_provider_compacts_offline_and_deterministically(long_thread, settings, s3):
    settings.LLM_PROVIDER = "local"
    compaction = compaction_request(thread=long_thread, keep_last=3)
    compaction_run(compaction_id=compaction.id)
    compaction.refresh_from_db()
    assert compaction.status == "succeeded", compaction.error
    assert compaction.provider == "local"
    assert "topic" in compaction.summary


@pytest.mark.django_db(transaction=True)
def test_a_message_appended_during_the_compaction_is_kept(api, project, llm, s3):
    # given: a thread, and a provider during whose answer another client appends
    thread = services.thread_create(tenant=api.tenant, project_id=project.id)
    append(thread, say(15))
    llm.on_request = in_other_connection(
        lambda body: thread_history.messages_append(
            thread=Thread.objects.get(pk=thread.pk),
            messages=[{"id": "late", "role": "user", "content": "appended meanwhile"}],
        )
    )
    compaction = compaction_request(thread=thread)
    # when
    compaction_run(compaction_id=compaction.id)
    # then: the compaction committed, and the late message is the newest one
    compaction.refresh_from_db()
    assert compaction.status == "succeeded", compaction.error
    rows = history(thread)
    assert rows[-1] == ("late", "user")
    assert [mid for mid, _ in rows[1:-1]] == [f"m{i}" for i in range(5, 15)]
    thread.refresh_from_db()
    assert thread.message_count == 12
    assert compaction.messages_kept == 11


@pytest.mark.django_db(transaction=True)
def test_a_truncation_of_the_summarized_part_during_the_run_makes_it_start_over(
    api, project, llm, s3
):
    # given: during the first summary, m2..end are truncated and new messages appended
    thread = services.thread_create(tenant=api.tenant, project_id=project.id)
    append(thread, say(15))
    calls = []

    def rewrite(body):
        calls.append(1)
        if len(calls) == 1:
            fresh = Thread.objects.get(pk=thread.pk)
            thread_history.messages_truncate(thread=fresh, from_id="m2")
            thread_history.messages_append(thread=fresh, messages=say(12, start=100, prefix="n"))

    llm.on_request = in_other_connection(rewrite)
    compaction = compaction_request(thread=thread)
    # when
    compaction_run(compaction_id=compaction.id)
    # then: the second run summarized what the history had become; nothing was lost
    compaction.refresh_from_db()
    assert compaction.status == "succeeded", compaction.error
    assert len(calls) == 2
    archived = cold.gunzip_json(cold.get(compaction.archive_key))["messages"]
    assert [m["id"] for m in archived] == ["m0", "m1", "n100", "n101"]
    assert [mid for mid, _ in history(thread)[1:]] == [f"n{i}" for i in range(102, 112)]


def test_compaction_of_a_cold_thread_hydrates_it_first(long_thread, llm, s3):
    # given: a thread flushed to cold storage (no message rows left)
    from threads.storage.tiers import thread_flush

    thread_flush(thread=long_thread)
    long_thread.refresh_from_db()
    assert long_thread.tier == "cold" and not Message.objects.filter(thread=long_thread).exists()
    # when
    compaction = compaction_request(thread=long_thread)
    compaction_run(compaction_id=compaction.id)
    # then: hydrated, then compacted over the restored history
    compaction.refresh_from_db()
    assert compaction.status == "succeeded", compaction.error
    long_thread.refresh_from_db()
    assert long_thread.tier == "hot"
    assert [mid for mid, _ in history(long_thread)[1:]] == [f"m{i}" for i in range(5, 15)]
    kinds = list(
        Event.objects.filter(thread_id=long_thread.pk)
        .filter(kind__in=("thread.hydrated", "thread.compacted"))
        .order_by("id")
        .values_list("kind", flat=True)
    )
    assert kinds == ["thread.hydrated", "thread.compacted"]
    archived = cold.gunzip_json(cold.get(compaction.archive_key))["messages"]
    assert [m["id"] for m in archived] == [f"m{i}" for i in range(5)]


def test_a_compacted_thread_flushes_and_hydrates_with_its_summary(long_thread, llm, s3):
    from threads.storage.tiers import thread_flush, thread_hydrate

    compaction = compaction_request(thread=long_thread)
    compaction_run(compaction_id=compaction.id)
    before = history(long_thread)
    thread_flush(thread=long_thread)
    thread_hydrate(thread=long_thread)
    assert history(long_thread) == before


def test_compaction_of_an_archived_thread_at_run_time_fails(long_thread, llm, s3):
    compaction = compaction_request(thread=long_thread)
    services.thread_archive(thread=long_thread)
    compaction_run(compaction_id=compaction.id)
    compaction.refresh_from_db()
    assert compaction.status == "failed" and compaction.error.startswith("thread_archived")


def test_a_compaction_runs_once_even_when_its_task_is_delivered_twice(long_thread, llm, s3):
    compaction = compaction_request(thread=long_thread)
    assert compaction_run(compaction_id=compaction.id) is not None
    assert compaction_run(compaction_id=compaction.id) is None
    assert len(llm.summary_requests()) == 1


# --- Refusals and bad input --------------------------------------------------------------


def test_a_thread_with_no_more_than_keep_last_messages_is_too_short(api, thread):
    append(thread, say(10))
    details = assert_error(api.post(url(thread, "compact"), {}), 409, "too_short")
    assert details == {"message_count": 10, "keep_last": 10}
    assert_error(api.post(url(thread, "compact"), {"keep_last": 12}), 409, "too_short")
    assert api.post(url(thread, "compact"), {"keep_last": 3}).status_code == 202


def test_compaction_is_refused_while_a_turn_is_running(api, long_thread):
    start_turn(long_thread)
    assert_error(api.post(url(long_thread, "compact"), {}), 409, "thread_generating")


def test_compaction_of_an_archived_thread_is_refused(api, long_thread):
    services.thread_archive(thread=long_thread)
    assert_error(api.post(url(long_thread, "compact"), {}), 409, "thread_archived")


def test_a_second_compaction_while_one_is_queued_is_refused(api, long_thread):
    first = api.post(url(long_thread, "compact"), {})  # its task runs on commit: not here
    assert first.status_code == 202
    details = assert_error(api.post(url(long_thread, "compact"), {}), 409, "compaction_in_progress")
    assert details["compaction"] == first.json()["id"]


@pytest.mark.django_db(transaction=True)
def test_of_concurrent_compaction_requests_exactly_one_is_queued(api, project, s3, monkeypatch):
    import threading

    from django.db import connection

    from threads.conversation import compaction as compaction_module
    from threads.conversation.errors import CompactionInProgress

    thread = services.thread_create(tenant=api.tenant, project_id=project.id)
    append(thread, say(12))
    # The queued compaction's task is recorded, not run: run eagerly, it could end before a
    # slower racer asks, and a request after it has ended is rightly queued.
    enqueued: list[tuple] = []
    monkeypatch.setattr(compaction_module, "enqueue_on_commit", lambda *args: enqueued.append(args))
    outcomes: list[str] = []
    start = threading.Barrier(6)

    def request():
        try:
            start.wait()
            compaction_request(thread=Thread.objects.get(pk=thread.pk))
            outcomes.append("queued")
        except CompactionInProgress:
            outcomes.append("conflict")
        finally:
            connection.close()

    racers = [threading.Thread(target=request) for _ in range(6)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sorted(outcomes) == ["conflict"] * 5 + ["queued"]
    assert Compaction.objects.filter(thread=thread).count() == 1
    assert len(enqueued) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"keep_last": 0},
        {"keep_last": -1},
        {"keep_last": "many"},
        {"keep_last": 10**9},
        {"keep_last": None},
        {"keep_last": 2.5},
        {"unknown": 1},
        [],
        "x",
    ],
)
def test_a_bad_compact_body_is_a_400(api, long_thread, body):
    response = api.post(url(long_thread, "compact"), body)
    assert_error(response, 400, "validation_error")


@pytest.mark.parametrize(
    "compaction",
    [
        {"threshold_percent": 101},
        {"threshold_percent": -1},
        {"threshold_tokens": -5},
        {"threshold_tokens": "lots"},
        {"context_window": 10},
        {"keep_last": 0},
        {"keep_last": True},
        {"nonsense": 1},
    ],
)
def test_a_bad_compaction_setting_is_a_400(api, thread, compaction):
    response = api.patch(f"/api/v1/threads/{thread.id}/", {"compaction": compaction})
    assert_error(response, 400, "validation_error")


@pytest.mark.parametrize(
    ("suffix", "query"),
    [
        ("compactions", {"cursor": "garbage"}),
        ("compactions", {"limit": 0}),
        ("compactions/{cid}/originals", {"cursor": "-1"}),
        ("compactions/{cid}/originals", {"cursor": "x"}),
        ("compactions/{cid}/originals", {"limit": 5000}),
    ],
)
def test_bad_list_parameters_are_a_400(api, long_thread, llm, s3, suffix, query):
    compaction = compaction_request(thread=long_thread)
    compaction_run(compaction_id=compaction.id)
    response = api.get(url(long_thread, suffix.format(cid=compaction.id)), query)
    assert_error(response, 400, "validation_error")


def test_compaction_settings_are_patchable(api, thread):
    response = api.patch(
        f"/api/v1/threads/{thread.id}/",
        {"compaction": {"threshold_tokens": 5000, "keep_last": 4}},
    )
    assert response.status_code == 200, response.content
    assert response.json()["compaction"]["threshold_tokens"] == 5000
    assert response.json()["compaction"]["keep_last"] == 4


def test_another_tenants_thread_and_compactions_are_404(api, outsider, long_thread):
    compaction = Compaction.objects.create(thread=long_thread, trigger="manual", keep_last=10)
    for method, suffix in [
        ("post", "compact"),
        ("get", "compactions"),
        ("get", f"compactions/{compaction.id}/"),
        ("get", f"compactions/{compaction.id}/originals"),
    ]:
        response = getattr(outsider, method)(url(long_thread, suffix))
        assert_error(response, 404, "not_found")
    # and an unknown compaction of our own thread
    assert_error(api.get(url(long_thread, "compactions/cmp_000000000000/")), 404, "not_found")


# --- Automatic compaction ----------------------------------------------------------------


def settle(thread: Thread, **usage) -> None:
    Thread.objects.filter(pk=thread.pk).update(**usage)


def test_a_settled_turn_over_the_threshold_queues_an_auto_compaction(
    long_thread, llm, s3, django_capture_on_commit_callbacks
):
    # given: 85 % of 200000 is 170000
    settle(long_thread, last_input_tokens=1000, last_cache_read_tokens=168000)
    assert compaction_after_settle(thread=long_thread) is None
    settle(long_thread, last_cache_creation_tokens=1000)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        compaction = compaction_after_settle(thread=long_thread)
    # then
    assert compaction is not None and compaction.trigger == "auto"
    compaction.refresh_from_db()
    assert compaction.status == "succeeded", compaction.error
    long_thread.refresh_from_db()
    assert long_thread.last_input_tokens == 0  # the backstop will not compact it again
    assert compaction_backstop()["auto"] == []


def test_threshold_tokens_wins_over_the_percentage_and_zero_disables(long_thread):
    Thread.objects.filter(pk=long_thread.pk).update(
        compaction_threshold_tokens=500, last_input_tokens=600
    )
    assert compaction_after_settle(thread=long_thread) is not None
    Compaction.objects.all().delete()
    Thread.objects.filter(pk=long_thread.pk).update(compaction_threshold_tokens=0)
    assert compaction_after_settle(thread=long_thread) is None
    Thread.objects.filter(pk=long_thread.pk).update(
        compaction_threshold_tokens=None, compaction_threshold_percent=0
    )
    Thread.objects.filter(pk=long_thread.pk).update(last_input_tokens=10**9)
    assert compaction_after_settle(thread=long_thread) is None


def test_auto_compaction_waits_while_steering_messages_are_queued(long_thread):
    settle(long_thread, last_input_tokens=190_000)
    queue_enqueue(thread=long_thread, content="also check the tests")
    assert compaction_after_settle(thread=long_thread) is None


def test_auto_compaction_is_not_queued_twice(long_thread):
    settle(long_thread, last_input_tokens=190_000)
    assert compaction_after_settle(thread=long_thread) is not None
    assert compaction_after_settle(thread=long_thread) is None
    assert Compaction.objects.filter(thread=long_thread).count() == 1


def test_the_backstop_picks_up_a_missed_decision_and_a_lost_task(
    long_thread, api, project, llm, s3, django_capture_on_commit_callbacks
):
    # given: a thread over its threshold with no compaction (the decision was missed) …
    settle(long_thread, last_input_tokens=190_000)
    # … and another thread whose queued compaction's task never ran
    other = services.thread_create(tenant=api.tenant, project_id=project.id)
    append(other, say(14))  # (4 to summarize: a summary of 2 short ones would be longer)
    lost = compaction_request(thread=other)
    Compaction.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    # when
    with django_capture_on_commit_callbacks(execute=True):
        picked = compaction_backstop()
    # then
    assert picked["stale"] == [lost.pk]
    (auto,) = picked["auto"]
    assert Compaction.objects.get(pk=auto).trigger == "auto"
    for pk in (lost.pk, auto):
        assert Compaction.objects.get(pk=pk).status == "succeeded"


def test_the_backstop_requeues_a_compaction_whose_worker_died(long_thread, llm, s3):
    compaction = compaction_request(thread=long_thread)
    Compaction.objects.filter(pk=compaction.pk).update(
        status="running", started_at=timezone.now() - timedelta(hours=1)
    )
    assert compaction_backstop()["stale"] == [compaction.pk]  # eager: it ran right away
    compaction.refresh_from_db()
    assert compaction.status == "succeeded"


# --- Provider retries --------------------------------------------------------------------


def test_an_overloaded_provider_is_retried_and_each_retry_recorded(
    api, long_thread, llm, s3, django_capture_on_commit_callbacks
):
    # given: the provider answers 529 twice, then 429 once, then succeeds
    llm.fail_next(2, status=529)
    llm.fail_next(1, status=429)
    # when: the task runs eagerly; Celery re-applies an eager retry at once, without the
    # countdown (when eager exceptions do not propagate, as in a worker)
    propagates = celery_app.conf.task_eager_propagates
    celery_app.conf.task_eager_propagates = False
    try:
        with django_capture_on_commit_callbacks(execute=True):
            cid = api.post(url(long_thread, "compact"), {}).json()["id"]
    finally:
        celery_app.conf.task_eager_propagates = propagates
    # then
    compaction = Compaction.objects.get(pk=cid)
    assert compaction.status == "succeeded", compaction.error
    assert compaction.attempts == 4
    retries = events(long_thread, "provider.retry")
    assert [r["attempt"] for r in retries] == [1, 2, 3]
    assert [r["code"] for r in retries] == ["overloaded_error"] * 2 + ["rate_limit_error"]
    for retry, nominal in zip(retries, (5, 10, 30), strict=True):
        assert nominal * 0.9 <= retry["delay_s"] <= nominal * 1.1
    assert len(llm.summary_requests()) == 4


def test_a_retry_puts_the_compaction_back_to_queued_until_it_is_due(long_thread, llm, s3):
    from threads.conversation.compaction import RetryLater

    llm.fail_next(1, status=503)
    compaction = compaction_request(thread=long_thread)
    with pytest.raises(RetryLater) as raised:
        compaction_run(compaction_id=compaction.id)
    compaction.refresh_from_db()
    assert compaction.status == "queued"
    assert 4.5 <= raised.value.delay_s <= 5.5
    assert compaction.retry_at > timezone.now()


def test_a_non_retryable_provider_error_fails_at_once(long_thread, llm, s3):
    llm.fail_next(1, status=400)
    compaction = compaction_request(thread=long_thread)
    compaction_run(compaction_id=compaction.id)
    compaction.refresh_from_db()
    assert compaction.status == "failed"
    assert compaction.error.startswith("invalid_request_error")
    assert events(long_thread, "provider.retry") == []


def test_retries_stop_when_the_next_wait_would_pass_eight_hours(long_thread, llm, s3):
    # given: 21 attempts already failed (5 s … 30 m: 8 h minus a little waited)
    llm.fail_next(1, status=529)
    compaction = compaction_request(thread=long_thread)
    Compaction.objects.filter(pk=compaction.pk).update(attempts=21)
    # when
    compaction_run(compaction_id=compaction.id)
    # then
    compaction.refresh_from_db()
    assert compaction.status == "failed"
    assert compaction.error.startswith("overloaded_error")


# --- A real worker -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_compacts_and_the_originals_come_back(api, project, llm, s3):
    thread = services.thread_create(tenant=api.tenant, project_id=project.id)
    append(thread, say(20))
    with celery_worker(extra_env=worker_env(llm=llm, s3=s3)):
        cid = api.post(url(thread, "compact"), {"keep_last": 5}).json()["id"]
        wait_for(
            lambda: Compaction.objects.filter(pk=cid, status__in=("succeeded", "failed")).exists()
        )
    compaction = Compaction.objects.get(pk=cid)
    assert compaction.status == "succeeded", compaction.error
    originals = api.get(url(thread, f"compactions/{cid}/originals")).json()["results"]
    assert [m["id"] for m in originals] == [f"m{i}" for i in range(15)]
    assert len(history(thread)) == 6


# --- Through the sessions API (turns/start, turns/settle) --------------------------------


def start_session(api, thread) -> str:
    created = api.post(
        "/api/v1/sessions/", {"thread": thread.id, "actor": {"kind": "agent", "id": "a"}}
    )
    assert created.status_code == 201, created.content
    session = created.json()["id"]
    assert api.post(f"/api/v1/sessions/{session}/turns/start").status_code == 200
    return session


def settle_over(api, session: str, tokens: int):
    usage = {
        "input_tokens": 10,
        "cache_read_tokens": tokens,
        "cache_creation_tokens": 0,
        "output_tokens": 5,
    }
    return api.post(f"/api/v1/sessions/{session}/turns/settle", {"usage": usage})


def test_a_settle_over_the_threshold_compacts_the_thread(
    api, long_thread, llm, s3, django_capture_on_commit_callbacks
):
    session = start_session(api, long_thread)
    with django_capture_on_commit_callbacks(execute=True):
        response = settle_over(api, session, 180_000)
    assert response.status_code == 200, response.content
    assert response.json()["queued_messages"] == 0
    (compaction,) = Compaction.objects.filter(thread=long_thread)
    assert (compaction.trigger, compaction.status) == ("auto", "succeeded")
    assert events(long_thread, "compaction.requested")[0]["context_tokens"] == 180_010


def test_a_settle_with_queued_steering_messages_leaves_compaction_for_later(
    api, long_thread, llm, django_capture_on_commit_callbacks
):
    session = start_session(api, long_thread)
    api.post(f"/api/v1/threads/{long_thread.id}/queue", {"content": "one more thing"})
    with django_capture_on_commit_callbacks(execute=True):
        response = settle_over(api, session, 180_000)
    assert response.json()["queued_messages"] == 1
    assert not Compaction.objects.filter(thread=long_thread).exists()
