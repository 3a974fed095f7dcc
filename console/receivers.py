"""Keep "retrying" meaning "waiting for a retry" (the dashboard's retrying tasks).

Most tasks store no result when they succeed (CELERY_TASK_IGNORE_RESULT) but do store their
retries, so a task that retried and then succeeded would stay RETRY until its row expires.
Its success marks that row SUCCESS: one UPDATE by the unique task_id, and only for a run
that was a retry (request.retries > 0), so first runs cost nothing."""

from __future__ import annotations

from celery import states
from celery.signals import task_success
from django.utils import timezone
from django_celery_results.models import TaskResult


def retried_task_succeeded(sender=None, **kwargs) -> None:
    request = getattr(sender, "request", None)
    if request is None or not request.retries or request.is_eager:
        return
    TaskResult.objects.filter(task_id=request.id, status=states.RETRY).update(
        status=states.SUCCESS, date_done=timezone.now()
    )


def connect() -> None:
    task_success.connect(retried_task_succeeded, dispatch_uid="console.retried_task_succeeded")
