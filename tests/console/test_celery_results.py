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
from tests.workers import celery_worker, wait_for


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
