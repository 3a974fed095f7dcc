"""Enqueue a Celery task by its name, so a service never imports the tasks room above it.

Tasks import the services they run; services name the task they want (a constant beside
the service) and hand it here. The task is looked up in the app's registry when it is sent,
so task_always_eager (tests) and routing behave as for `task.delay()`.
"""

from __future__ import annotations

from typing import Any

from celery import current_app
from django.db import transaction


def enqueue(name: str, *args: Any) -> None:
    """Send task `name` with `args` now."""
    current_app.tasks[name].apply_async(args)


def enqueue_on_commit(name: str, *args: Any) -> None:
    """Send task `name` once the current transaction commits (a worker never sees
    uncommitted rows; a rolled-back transaction sends nothing)."""
    transaction.on_commit(lambda: enqueue(name, *args))
