"""Cache warming: the percentages, the timer (arm, clear, claim, re-arm, cap), the warm call,
manual warms over the API, retries, and the sweep on real workers — two of them racing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from config.celery import app
from tasks.tasks import warming_sweep_task
from tests.conftest import assert_error
from tests.threads.conversation.helpers import (
    append,
    events,
    in_other_connection,
    say,
    start_turn,
    worker_env,
)
from tests.workers import celery_worker, wait_for
from threads import services
from threads.conversation.providers import WARM_PROMPT, Usage
from threads.conversation.warming import (
    CLAIM_LEASE,
    RetryWarm,
    cache_pct,
    retention_pct,
    warm_timer_run,
    warming_on_settle,
    warming_on_turn_start,
    warming_sweep,
)
from threads.models import Event, Thread


def url(thread) -> str:
    return f"/api/v1/threads/{thread.id}/warm"


def enable(thread: Thread, **columns) -> Thread:
    Thread.objects.filter(pk=thread.pk).update(warming_enabled=True, **columns)
    thread.refresh_from_db()
    return thread


def make_due(thread: Thread) -> None:
    Thread.objects.filter(pk=thread.pk).update(next_warm_at=timezone.now() - timedelta(seconds=1))


@pytest.fixture
def chatty(thread):
    append(thread, say(6))
    return thread


# --- The percentages ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "cache", "retention"),
    [
        (Usage(input_tokens=12, cache_read_tokens=900, cache_creation_tokens=88), 90, 91),
        (Usage(input_tokens=100), 0, 0),
        (Usage(), 0, 0),
        (Usage(input_tokens=1, cache_read_tokens=1), 50, 100),
        (Usage(cache_read_tokens=1, cache_creation_tokens=7), 13, 13),  # 12.5 rounds up
        (Usage(input_tokens=5, cache_creation_tokens=995), 0, 0),
    ],
)
def test_cache_and_retention_percentages(usage, cache, retention):
    assert (cache_pct(usage), retention_pct(usage)) == (cache, retention)


# --- The timer ---------------------------------------------------------------------------


def test_settle_arms_the_timer_only_when_warming_is_enabled(chatty):
    assert warming_on_settle(thread=chatty) is None
    chatty.refresh_from_db()
    assert chatty.next_warm_at is None

    enable(chatty, warming_interval_s=30, idle_warm_count=3)
    before = timezone.now()
    due = warming_on_settle(thread=chatty)
    after = timezone.now()
    chatty.refresh_from_db()
    assert chatty.next_warm_at == due
    assert before + timedelta(seconds=30) <= due <= after + timedelta(seconds=30)
    assert chatty.idle_warm_count == 0


def test_turn_start_clears_the_timer_and_closing_turns_warming_off(chatty):
    enable(chatty)
    warming_on_settle(thread=chatty)
    warming_on_turn_start(thread=chatty)
    chatty.refresh_from_db()
    assert chatty.next_warm_at is None

    warming_on_settle(thread=chatty)
    services.thread_close(thread=chatty)
    chatty.refresh_from_db()
    assert (chatty.warming_enabled, chatty.next_warm_at) == (False, None)


def test_the_sweep_claims_due_timers_once(chatty, api, project):
    # given: one due timer, one not yet due, one due but with warming off
    enable(chatty)
    make_due(chatty)
    later = services.thread_create(tenant=api.tenant, project_id=project.id)
    enable(later, next_warm_at=timezone.now() + timedelta(minutes=1))
    off = services.thread_create(tenant=api.tenant, project_id=project.id)
    Thread.objects.filter(pk=off.pk).update(next_warm_at=timezone.now() - timedelta(seconds=1))
    # when
    before = timezone.now()
    claimed = warming_sweep()
    after = timezone.now()
    # then: only the due one, moved to a lease that is its token
    assert [pk for pk, _ in claimed] == [chatty.pk]
    chatty.refresh_from_db()
    assert chatty.next_warm_at == claimed[0][1]
    assert before + CLAIM_LEASE <= chatty.next_warm_at <= after + CLAIM_LEASE
    assert warming_sweep() == []


# --- The warm ----------------------------------------------------------------------------


def test_a_timer_warm_sends_the_prefix_and_re_arms(chatty, llm, settings):
    # given: a model that takes effort, and a system note a runtime added mid-conversation
    settings.LLM_MODEL = "claude-sonnet-4-6"
    enable(chatty, warming_interval_s=60, reasoning_effort="medium")
    append(chatty, [{"id": "sys", "role": "system", "content": "You are terse."}])
    make_due(chatty)
    version, count = chatty.history_version, chatty.message_count
    ((thread_id, token),) = warming_sweep()
    # when
    before = timezone.now()
    result = warm_timer_run(thread_id=thread_id, token=token)
    after = timezone.now()
    # then: the request is the real turn's prefix plus the warm prompt, max_tokens 1; the
    # mid-conversation system note stays in its place (moving it into `system` would change
    # the start of every later prompt and lose the cached prefix)
    (request,) = llm.warm_requests()
    assert llm.rejected == []
    assert request["max_tokens"] == 1
    assert request["output_config"] == {"effort": "medium"}
    assert "system" not in request
    last = request["messages"][-1]
    assert last["role"] == "user" and last["content"] == [
        {"type": "text", "text": "[system] You are terse.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": WARM_PROMPT},
    ]
    marked = [
        block
        for message in request["messages"]
        for block in message["content"]
        if "cache_control" in block
    ]
    assert len(marked) == 1
    # the result: percentages, a re-armed timer, an event — and nothing in the history
    assert (result.cache_pct, result.retention_pct) == (90, 91)
    chatty.refresh_from_db()
    assert chatty.next_warm_at == result.next_warm_at
    interval = timedelta(seconds=60)
    assert before + interval <= chatty.next_warm_at <= after + interval
    assert (chatty.last_cache_pct, chatty.last_retention_pct, chatty.idle_warm_count) == (90, 91, 1)
    assert chatty.last_warm_at is not None
    assert (chatty.history_version, chatty.message_count) == (version, count)
    (event,) = events(chatty, "warm.completed")
    assert event["trigger"] == "timer" and event["cache_pct"] == 90
    assert event["usage"] == {
        "input_tokens": 12,
        "output_tokens": 1,
        "cache_read_tokens": 900,
        "cache_creation_tokens": 88,
    }


def test_the_timer_stops_after_max_idle_warms(chatty, llm):
    enable(chatty, warming_max_idle_warms=2)
    for _ in range(2):
        make_due(chatty)
        ((thread_id, token),) = warming_sweep()
        result = warm_timer_run(thread_id=thread_id, token=token)
    assert result.capped and result.next_warm_at is None
    chatty.refresh_from_db()
    assert chatty.next_warm_at is None and chatty.idle_warm_count == 2
    assert events(chatty, "warming.capped") == [{"idle_warms": 2, "max_idle_warms": 2}]
    # a new turn starts the count over
    warming_on_settle(thread=chatty)
    chatty.refresh_from_db()
    assert chatty.idle_warm_count == 0 and chatty.next_warm_at is not None


def test_a_stale_claim_warms_nothing(chatty, llm):
    enable(chatty)
    make_due(chatty)
    ((thread_id, token),) = warming_sweep()
    warming_on_turn_start(thread=chatty)  # a turn started: the timer is cleared
    assert warm_timer_run(thread_id=thread_id, token=token) is None
    assert llm.requests == []


@pytest.mark.django_db(transaction=True)
def test_the_result_is_dropped_when_a_turn_starts_during_the_warm(api, project, llm):
    # given: a due timer; the turn starts while the provider is answering the warm
    thread = services.thread_create(tenant=api.tenant, project_id=project.id)
    append(thread, say(4))
    enable(thread)
    make_due(thread)
    ((thread_id, token),) = warming_sweep()
    llm.on_request = in_other_connection(
        lambda body: warming_on_turn_start(thread=Thread.objects.get(pk=thread.pk))
    )
    # when
    result = warm_timer_run(thread_id=thread_id, token=token)
    # then
    assert result.dropped
    thread.refresh_from_db()
    assert thread.next_warm_at is None and thread.last_warm_at is None
    assert events(thread, "warm.completed") == []


def test_a_warm_skips_a_thread_whose_turn_is_running(chatty, llm):
    enable(chatty)
    make_due(chatty)
    ((thread_id, token),) = warming_sweep()
    start_turn(chatty)
    assert warm_timer_run(thread_id=thread_id, token=token) is None
    assert llm.requests == []


def test_an_overloaded_provider_is_retried_within_the_warming_interval(chatty, llm):
    # given: 240 s interval → waits of 5, 10, 30, 60 fit (105 s); the next (300) does not
    enable(chatty, warming_interval_s=240)
    make_due(chatty)
    ((thread_id, token),) = warming_sweep()
    llm.fail_next(10, status=529)
    # when: the task retries with the renewed token each time
    attempt = 0
    while True:
        try:
            result = warm_timer_run(thread_id=thread_id, token=token, attempt=attempt)
            break
        except RetryWarm as retry:
            chatty.refresh_from_db()
            assert chatty.next_warm_at == retry.token  # the claim covers the wait
            token, attempt = retry.token, attempt + 1
    # then: four retries, then the warm failed and the timer stopped
    assert result is None
    retries = events(chatty, "provider.retry")
    assert [r["attempt"] for r in retries] == [1, 2, 3, 4]
    assert {r["code"] for r in retries} == {"overloaded_error"}
    for retry, nominal in zip(retries, (5, 10, 30, 60), strict=True):
        assert nominal * 0.9 <= retry["delay_s"] <= nominal * 1.1
    chatty.refresh_from_db()
    assert chatty.next_warm_at is None
    assert events(chatty, "warm.failed")[0]["code"] == "overloaded_error"
    assert len(llm.warm_requests()) == 5


# --- Manual warms over the API -----------------------------------------------------------


def test_a_manual_warm_answers_the_usage_and_restarts_the_timer(api, chatty, llm):
    enable(chatty, warming_interval_s=100, idle_warm_count=5)
    response = api.post(url(chatty))
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"usage", "cache_pct", "retention_pct", "next_warm_at"}
    assert body["usage"]["cache_read_tokens"] == 900
    assert (body["cache_pct"], body["retention_pct"]) == (90, 91)
    chatty.refresh_from_db()
    assert chatty.next_warm_at is not None and chatty.idle_warm_count == 0
    assert body["next_warm_at"] is not None
    assert events(chatty, "warm.completed")[0]["trigger"] == "manual"


def test_a_manual_warm_works_with_the_timer_off_and_leaves_it_off(api, chatty, llm):
    response = api.post(url(chatty))
    assert response.status_code == 200, response.content
    assert response.json()["next_warm_at"] is None
    chatty.refresh_from_db()
    assert chatty.next_warm_at is None and chatty.last_cache_pct == 90


def test_the_local_provider_warms_with_zero_usage(api, chatty, settings):
    settings.LLM_PROVIDER = "local"
    body = api.post(url(chatty)).json()
    assert body["usage"] == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_tokens": 0,
        "cache_creation_tokens": 0,
    }
    assert (body["cache_pct"], body["retention_pct"]) == (0, 0)


def test_manual_warm_refusals(api, thread, chatty, llm, project):
    empty = services.thread_create(tenant=api.tenant, project_id=project.id)
    assert_error(api.post(url(empty)), 409, "no_history")
    start_turn(chatty)
    assert_error(api.post(url(chatty)), 409, "thread_generating")
    archived = services.thread_create(tenant=api.tenant, project_id=project.id)
    append(archived, say(2))
    services.thread_archive(thread=archived)
    assert_error(api.post(url(archived)), 409, "thread_archived")
    assert llm.requests == []


def test_a_failing_provider_is_a_503_not_a_500(api, chatty, llm):
    llm.fail_next(1, status=529)
    details = assert_error(api.post(url(chatty)), 503, "provider_unavailable")
    assert details["retryable"] is True and details["status"] == 529
    llm.fail_next(1, status=401)
    details = assert_error(api.post(url(chatty)), 503, "provider_unavailable")
    assert details["retryable"] is False


def test_another_tenants_thread_cannot_be_warmed(outsider, chatty, llm):
    assert_error(outsider.post(url(chatty)), 404, "not_found")
    assert llm.requests == []


@pytest.mark.parametrize(
    "warming",
    [
        {"interval_s": 0},
        {"interval_s": -3},
        {"interval_s": "soon"},
        {"interval_s": 10**7},
        {"max_idle_warms": -1},
        {"enabled": "maybe"},
        {"enabled": None},
        {"next_warm_at": "2030-01-01T00:00:00Z"},
    ],
)
def test_a_bad_warming_setting_is_a_400(api, thread, warming):
    response = api.patch(f"/api/v1/threads/{thread.id}/", {"warming": warming})
    assert_error(response, 400, "validation_error")


def test_disabling_warming_clears_the_timer(api, chatty):
    enable(chatty, next_warm_at=timezone.now())
    response = api.patch(f"/api/v1/threads/{chatty.id}/", {"warming": {"enabled": False}})
    assert response.status_code == 200, response.content
    assert response.json()["warming"]["next_warm_at"] is None


# --- Real workers ------------------------------------------------------------------------


def _due_threads(api, project, n: int) -> list[Thread]:
    threads = []
    for _ in range(n):
        thread = services.thread_create(tenant=api.tenant, project_id=project.id)
        append(thread, say(2))
        enable(thread)
        make_due(thread)
        threads.append(thread)
    return threads


def _broker_is_idle() -> bool:
    """No task message queued on the (Redis) test broker, and none delivered but unfinished:
    tasks ack late, so a message stays in the unacked hash until its task has returned."""
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        queued = channel.client.llen(app.conf.task_default_queue)
        return queued == 0 and channel.client.hlen(channel.unacked_key) == 0


def _wait_until_the_broker_is_idle() -> None:
    """Idle twice in a row: a message being handed to a worker is briefly in neither place."""
    streak = 0

    def idle_again() -> bool:
        nonlocal streak
        streak = streak + 1 if _broker_is_idle() else 0
        return streak >= 2

    wait_for(idle_again, timeout=60)


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_sweep_and_warms_due_threads(api, project, llm):
    (thread,) = _due_threads(api, project, 1)
    with celery_worker(extra_env=worker_env(llm=llm)):
        warming_sweep_task.delay()
        wait_for(lambda: Event.objects.filter(thread_id=thread.pk, kind="warm.completed").exists())
    thread.refresh_from_db()
    assert thread.last_cache_pct == 90 and thread.next_warm_at > timezone.now()
    assert len(llm.warm_requests()) == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_the_sweep_warm_each_due_timer_once(api, project, llm):
    # given: 30 due timers and two workers with two processes each
    threads = _due_threads(api, project, 30)
    env = worker_env(llm=llm)
    with celery_worker(concurrency=2, extra_env=env), celery_worker(concurrency=2, extra_env=env):
        # when: sweeps run concurrently on both
        for _ in range(12):
            warming_sweep_task.delay()
        wait_for(
            lambda: Event.objects.filter(kind="warm.completed").count() >= len(threads),
            timeout=60,
        )
        # Every sweep, and every warm a sweep fanned out (a duplicate too, were there one),
        # has finished: nothing more can reach the provider.
        _wait_until_the_broker_is_idle()
    # then: exactly one warm per due timer
    completed = list(
        Event.objects.filter(kind="warm.completed").values_list("thread_id", flat=True)
    )
    assert sorted(completed) == sorted(t.pk for t in threads)
    assert len(llm.warm_requests()) == len(threads)


def test_turns_start_and_settle_clear_and_arm_the_timer(api, chatty):
    enable(chatty, warming_interval_s=50, next_warm_at=timezone.now())
    session = api.post(
        "/api/v1/sessions/", {"thread": chatty.id, "actor": {"kind": "user", "id": "u"}}
    ).json()["id"]
    assert api.post(f"/api/v1/sessions/{session}/turns/start").status_code == 200
    chatty.refresh_from_db()
    assert chatty.next_warm_at is None
    usage = {
        "input_tokens": 1,
        "cache_read_tokens": 0,
        "cache_creation_tokens": 0,
        "output_tokens": 1,
    }
    before = timezone.now()
    settled = api.post(f"/api/v1/sessions/{session}/turns/settle", {"usage": usage})
    after = timezone.now()
    assert settled.status_code == 200, settled.content
    chatty.refresh_from_db()
    interval = timedelta(seconds=50)
    assert before + interval <= chatty.next_warm_at <= after + interval


def test_a_manual_warm_of_a_cold_thread_hydrates_it_first(api, chatty, llm, s3):
    from threads.storage.tiers import thread_flush

    thread_flush(thread=chatty)
    response = api.post(url(chatty))
    assert response.status_code == 200, response.content
    chatty.refresh_from_db()
    assert chatty.tier == "hot"
    (request,) = llm.warm_requests()
    assert len(request["messages"]) == 7  # six messages, then the warm prompt
