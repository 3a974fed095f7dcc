"""Task results reach the database (django-celery-results) from a real worker: the beat
sweeps keep theirs, other tasks only their failures; the dashboard and /metrics show them."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django_celery_results.models import TaskResult

from config.celery import app
from tasks.tasks import warming_sweep_task
from tests.threads.conversation.helpers import worker_env
from tests.workers import celery_worker, wait_for
from threads import services
from threads.conversation.compaction import COMPACTION_RUN_TASK, compaction_request
from threads.history import messages_append


@pytest.mark.django_db(transaction=True)
def test_a_worker_stores_sweep_results_and_failures_and_the_dashboard_shows_them(settings):
    settings.METRICS_TOKEN = "t"
    with celery_worker():
        warming_sweep_task.delay()
        # a task that fails: a warm of a timer with no token argument (TypeError)
        app.send_task("threads.warm_thread", args=["thd_missing"])
        app.send_task("threads.hot_cache_fill", args=["thd_missing"])
        wait_for(
            lambda: (
                TaskResult.objects.filter(
                    task_name="threads.warming_sweep", status="SUCCESS"
                ).exists()
                and TaskResult.objects.filter(status="FAILURE").exists()
            )
        )

    failure = TaskResult.objects.get(status="FAILURE")
    assert failure.task_name == "threads.warm_thread"
    assert "TypeError" in failure.result
    # a task that ignores its result and succeeds leaves no row
    assert set(TaskResult.objects.values_list("task_name", flat=True)) == {
        "threads.warming_sweep",
        "threads.warm_thread",
    }

    user = get_user_model().objects.create_superuser("op", "op@example.com", "pw-op-12345")
    client = Client()
    client.force_login(user)
    html = client.get("/admin/").content.decode()
    row = re.search(r'<tr data-schedule="warming-sweep">(.*?)</tr>', html, re.S).group(1)
    assert "SUCCESS" in row
    assert re.search(r'data-figure="task-failures" href="[^"]+">1<', html)
    assert "threads.warm_thread" in html

    metrics = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer t").content.decode()
    assert 'threadline_celery_task_results{state="FAILURE"} 1.0' in metrics


@pytest.mark.django_db(transaction=True)
def test_a_retrying_task_shows_as_retrying_until_its_retry_succeeds(api, project, llm):
    thread = services.thread_create(tenant=api.tenant, project_id=project.id)
    messages_append(
        thread=thread,
        messages=[
            {"id": f"m{i}", "role": "user" if i % 2 == 0 else "assistant", "content": f"t {i}"}
            for i in range(14)
        ],
    )
    llm.fail_next(1, status=529)  # the first summary call is overloaded: a retry in ~5 s
    with celery_worker(extra_env=worker_env(llm=llm)):
        compaction = compaction_request(thread=thread, keep_last=2)  # enqueued on commit
        retrying = wait_for(
            lambda: TaskResult.objects.filter(task_name=COMPACTION_RUN_TASK, status="RETRY").first()
        )
        wait_for(
            lambda: TaskResult.objects.filter(task_id=retrying.task_id, status="SUCCESS").exists()
        )
    compaction.refresh_from_db()
    assert compaction.status == "succeeded" and compaction.attempts == 2
    assert not TaskResult.objects.filter(status="RETRY").exists()
