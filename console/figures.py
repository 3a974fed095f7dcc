"""The figures of the dashboard and of /metrics: reads only, each cheap on big tables.

Nothing here counts messages or events: hot rows are the sum of the threads'
message_count counters, the trail's figures come from console/tally.py, and the size of
the message table is the planner's estimate on PostgreSQL (exact on SQLite, the embedded
default, where tables are small). Threads, sessions, handoffs and task results are
grouped by their status columns (rows per thread, session or handoff, never per message).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Sum
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from common.health import readiness_checks
from config.celery import app as celery_app
from handoffs.models import Handoff
from sessions_app.models import Session, SessionStatus
from threads.models import Message, Thread
from threads.storage import hotcache

logger = logging.getLogger(__name__)

STUCK_LIMIT = 20
FAILED_RECENTLY = timedelta(hours=24)


def threads_by_tier_lifecycle() -> list[dict[str, Any]]:
    """[{tier, lifecycle, threads, messages, cold_bytes}] in one GROUP BY over threads."""
    return list(
        Thread.objects.order_by()
        .values("tier", "lifecycle")
        .annotate(threads=Count("id"), messages=Sum("message_count"), cold_bytes=Sum("cold_bytes"))
        .order_by("tier", "lifecycle")
    )


def message_rows_estimate() -> tuple[int | None, bool]:
    """(rows in the message table, exact?): pg_class.reltuples on PostgreSQL, None before
    the table was first analyzed (autovacuum does it)."""
    table = Message._meta.db_table
    if connection.vendor != "postgresql":
        return Message.objects.count(), True
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [table]
        )
        row = cursor.fetchone()
    estimate = int(row[0]) if row and row[0] is not None else -1
    return (estimate if estimate >= 0 else None), False


def redis_usage() -> dict[str, Any] | None:
    """Redis memory in use (the whole instance) and the keys of our database; None
    without Redis or when it does not answer."""
    if not hotcache.enabled():
        return None
    try:
        from django_redis import get_redis_connection

        client = get_redis_connection("default")
        return {"used_bytes": int(client.info("memory")["used_memory"]), "keys": client.dbsize()}
    except Exception as exc:  # a figure, never an error page
        logger.warning("redis figures unavailable: %s", exc)
        return None


def sessions_by_status() -> dict[str, int]:
    counts = dict(
        Session.objects.order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return {status: counts.get(status, 0) for status in SessionStatus.values}


@dataclass
class Stuck:
    locked: list[Session]
    hitl: list[Session]
    failed: list[Session]


def stuck_sessions() -> Stuck:
    """Locked past their lease (the session_locked_lease partial index), awaiting a human
    longer than STUCK_HITL_SECONDS, failed in the last 24 hours; at most STUCK_LIMIT each."""
    now = timezone.now()
    base = Session.objects.only("id", "thread_id", "status", "lock_expires_at", "updated_at")
    hitl_since = now - timedelta(seconds=settings.STUCK_HITL_SECONDS)
    return Stuck(
        locked=list(
            base.filter(status=SessionStatus.LOCKED, lock_expires_at__lt=now).order_by(
                "lock_expires_at"
            )[:STUCK_LIMIT]
        ),
        hitl=list(
            base.filter(status=SessionStatus.AWAITING_HITL, updated_at__lt=hitl_since).order_by(
                "updated_at"
            )[:STUCK_LIMIT]
        ),
        failed=list(
            base.filter(
                status=SessionStatus.FAILED, updated_at__gte=now - FAILED_RECENTLY
            ).order_by("-updated_at")[:STUCK_LIMIT]
        ),
    )


def handoffs_by_outcome() -> dict[str, int]:
    return dict(
        Handoff.objects.order_by()
        .values_list("outcome")
        .annotate(n=Count("id"))
        .values_list("outcome", "n")
    )


def beat_schedules() -> list[dict[str, Any]]:
    """Each periodic task with its last run (beat's last_run_at) and the outcome of its
    latest stored result (the beat tasks keep theirs: CELERY_TASK_ANNOTATIONS)."""
    tasks = list(PeriodicTask.objects.select_related("interval", "crontab").order_by("name"))
    latest = {
        name: TaskResult.objects.filter(task_name=name, date_done=done)
        .values("status", "date_done", "task_id", "id")
        .first()
        for name, done in TaskResult.objects.filter(task_name__in={t.task for t in tasks})
        .order_by()
        .values_list("task_name")
        .annotate(done=Max("date_done"))
        .values_list("task_name", "done")
    }
    return [
        {
            "task": task,
            "schedule": str(task.interval or task.crontab or task.schedule),
            "last_run_at": task.last_run_at,
            "result": latest.get(task.task),
        }
        for task in tasks
    ]


def task_results_by_status() -> dict[str, int]:
    """Stored task results (kept CELERY_RESULT_EXPIRES) by state: FAILURE, RETRY, SUCCESS…"""
    return dict(
        TaskResult.objects.order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )


def task_results_recent(status: str, limit: int = 10) -> list[TaskResult]:
    return list(
        TaskResult.objects.filter(status=status)
        .only("id", "task_id", "task_name", "status", "date_done", "result")
        .order_by("-date_done")[:limit]
    )


def queue_depths() -> dict[str, int | None]:
    """Messages waiting in each queue the workers consume (None: the broker did not answer).
    One passive queue_declare per queue: Redis LLEN, a file count on the filesystem broker.
    A queue the broker does not know yet (nothing was ever sent to it) holds nothing."""
    names = [queue.name for queue in celery_app.amqp.queues.values()] or ["celery"]
    depths: dict[str, int | None] = dict.fromkeys(names)
    try:
        with celery_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=2)
            for name in names:
                channel = conn.channel()  # a refused declare may close its channel
                try:
                    depths[name] = channel.queue_declare(queue=name, passive=True).message_count
                except conn.channel_errors:
                    depths[name] = 0
                finally:
                    channel.close()
    except Exception as exc:  # the broker is down
        logger.warning("queue depth unavailable: %s", exc)
    return depths


def readiness() -> dict[str, dict[str, str]]:
    return readiness_checks()[0]
