"""The idle-thread sweep: the Celery task (also on a real worker), its claims, the command."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from tasks.schedules import SCHEDULES
from tasks.tasks import flush_idle_threads
from tests.workers import celery_worker, wait_for
from threads import history, services
from threads.models import Event, Message, Thread
from threads.storage import cold, sweep

pytestmark = pytest.mark.django_db


def idle(thread, *ids, hours=2) -> Thread:
    """`thread` with messages, last active `hours` ago."""
    if ids:
        history.messages_append(
            thread=thread, messages=[{"id": i, "role": "user", "content": i} for i in ids]
        )
    Thread.objects.filter(pk=thread.pk).update(
        last_activity_at=timezone.now() - timedelta(hours=hours)
    )
    return Thread.objects.get(pk=thread.pk)


def tier(thread) -> str:
    return Thread.objects.values_list("tier", flat=True).get(pk=thread.pk)


def new_thread(api, project):
    return services.thread_create(tenant=api.tenant, project_id=project.id)


def test_the_sweep_runs_every_five_minutes():
    [schedule] = [s for s in SCHEDULES if s.task == "threads.flush_idle_threads"]
    assert schedule.every_seconds == 300


def test_the_sweep_flushes_idle_threads_and_leaves_the_others(api, project, thread, s3):
    # given
    sleeping = idle(thread, "a", "b")
    archived = idle(new_thread(api, project), "c")
    services.thread_archive(thread=archived)
    idle(archived)
    recent = new_thread(api, project)
    history.messages_append(thread=recent, messages=[{"role": "user", "content": "now"}])

    # when
    result = flush_idle_threads.delay().get()

    # then idle threads of any status are cold, the recent one is still hot
    assert result == {"flushed": 2, "skipped": 0, "failed": 0}
    assert tier(sleeping) == tier(archived) == "cold"
    assert tier(recent) == "hot"
    assert Message.objects.filter(thread_id__in=[sleeping.pk, archived.pk]).count() == 0


def test_the_sweep_skips_a_thread_whose_session_runs_a_turn(api, thread, s3):
    from sessions_app.models import Session

    generating = idle(thread, "a")
    Session.objects.create(
        tenant=api.tenant, thread=generating, project=generating.project, status="active"
    )

    assert flush_idle_threads.delay().get() == {"flushed": 0, "skipped": 0, "failed": 0}
    assert tier(generating) == "hot"


def test_the_sweep_goes_through_every_batch(api, project, thread, s3, monkeypatch):
    monkeypatch.setattr(sweep, "SWEEP_BATCH_SIZE", 2)
    threads = [idle(thread, "a")] + [idle(new_thread(api, project), "x") for _ in range(4)]

    flush_idle_threads.delay().get()

    assert {tier(t) for t in threads} == {"cold"}
    assert Event.objects.filter(kind="thread.flushed").count() == 5


def test_a_thread_that_changed_during_its_flush_is_retried_once(thread, s3, monkeypatch):
    # given a state change (not activity) that lands during the first snapshot write
    sleeping = idle(thread, "a")
    real_put = cold.put_conditional
    calls = []

    def put_racing_a_state_change(key, body, **condition):
        calls.append(key)
        if len(calls) == 1:
            services.thread_state_set(thread=Thread.objects.get(pk=sleeping.pk), state={"x": 1})
        real_put(key, body, **condition)

    monkeypatch.setattr(cold, "put_conditional", put_racing_a_state_change)

    # when
    batch = sweep.flush_idle_batch()

    # then the second attempt flushed it, state included
    assert (batch.flushed, batch.skipped, len(calls)) == (1, 0, 2)
    assert tier(sleeping) == "cold"


def test_a_thread_that_became_active_during_its_flush_is_skipped(thread, s3, monkeypatch):
    sleeping = idle(thread, "a")
    real_put = cold.put_conditional

    def put_racing_an_append(key, body, **condition):
        history.messages_append(
            thread=Thread.objects.get(pk=sleeping.pk),
            messages=[{"id": "b", "role": "user", "content": "b"}],
        )
        real_put(key, body, **condition)

    monkeypatch.setattr(cold, "put_conditional", put_racing_an_append)

    batch = sweep.flush_idle_batch()

    assert (batch.flushed, batch.skipped) == (0, 1)
    assert tier(sleeping) == "hot"
    assert Message.objects.filter(thread_id=sleeping.pk).count() == 2


def test_a_store_failure_counts_as_failed_and_leaves_the_thread_hot(thread, s3):
    sleeping = idle(thread, "a")
    bucket = s3.bucket
    s3.stop()
    try:
        batch = sweep.flush_idle_batch()
    finally:
        s3.start()
        s3.create_bucket(bucket)

    assert (batch.flushed, batch.failed) == (0, 1)
    assert tier(sleeping) == "hot"
    # and the next sweep gets it
    assert sweep.flush_idle_batch().flushed == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sweeps_never_flush_the_same_thread(api, project, thread, s3):
    threads = [idle(thread, "a")] + [idle(new_thread(api, project), "x") for _ in range(9)]
    results = []

    def sweep_once():
        try:
            results.append(sweep.flush_idle_batch())
        finally:
            connection.close()

    sweepers = [threading.Thread(target=sweep_once) for _ in range(3)]
    for s in sweepers:
        s.start()
    for s in sweepers:
        s.join(timeout=60)

    assert sum(r.flushed for r in results) == 10
    assert sum(r.failed for r in results) == 0
    assert {tier(t) for t in threads} == {"cold"}
    per_thread = Event.objects.filter(kind="thread.flushed").values_list("thread_id", flat=True)
    assert sorted(per_thread) == sorted(t.id for t in threads)  # each exactly once


@pytest.mark.django_db(transaction=True)
def test_the_sweep_on_a_real_celery_worker(api, project, thread, s3):
    sleeping = idle(thread, "a", "b")
    recent = new_thread(api, project)
    env = {
        "COLD_STORAGE": "s3",
        "AWS_STORAGE_BUCKET_NAME": s3.bucket,
        "AWS_S3_ENDPOINT_URL": s3.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }

    with celery_worker(extra_env=env):
        flush_idle_threads.delay()
        wait_for(lambda: tier(sleeping) == "cold", timeout=30)

    assert Message.objects.filter(thread_id=sleeping.pk).count() == 0
    assert tier(recent) == "hot"
    assert Event.objects.filter(kind="thread.flushed", thread_id=sleeping.id).count() == 1


def test_the_flush_idle_threads_command(api, project, thread, s3):
    idle(thread, "a")
    idle(new_thread(api, project), "b")
    new_thread(api, project)  # recent
    out, err = StringIO(), StringIO()

    call_command("flush_idle_threads", stdout=out, stderr=err)

    assert out.getvalue().strip().splitlines()[-1] == "flushed 2, skipped 0, failed 0"
    assert "2/2" in err.getvalue()  # the progress bar
    assert Thread.objects.filter(tier="cold").count() == 2


def test_the_command_takes_its_own_idle_threshold(thread, s3):
    idle(thread, "a", hours=0)
    out = StringIO()

    call_command("flush_idle_threads", "--older-than", "0", "--no-progress", stdout=out)

    assert out.getvalue().strip() == "flushed 1, skipped 0, failed 0"
