"""Thin Celery tasks: they take ids and call services. Services enqueue them by name
(common.tasks.enqueue_on_commit with the name constant beside the service), never by
importing this module, so the arrows point one way: tasks → services."""

from __future__ import annotations

import logging
import os
import resource
import sys
from datetime import datetime

from celery import shared_task
from django.db.models import Count, Q

from sessions_app.recovery import session_locks_recover
from sessions_app.retention import subsessions_retention_sweep
from threads.conversation.backstop import compaction_backstop
from threads.conversation.compaction import COMPACTION_RUN_TASK, RetryLater, compaction_run
from threads.conversation.warming import SWEEP_BATCH, RetryWarm, warm_timer_run, warming_sweep
from threads.models import Lifecycle, Thread
from threads.storage.fill import HOT_CACHE_FILL_TASK, hot_cache_fill
from threads.storage.sweep import flush_idle_batch, idle_cutoff

logger = logging.getLogger(__name__)


# --- Conversation services: compaction, warming, operations ------------------------------
# Provider failures are retried as Celery retries (countdown, no sleeping worker) on the
# schedule of threads/retry.py; the services decide whether and when, and record the
# provider.retry event, the tasks only hand the countdown to Celery.


@shared_task(bind=True, name=COMPACTION_RUN_TASK, max_retries=None, acks_late=True)
def compaction_run_task(self, compaction_id: str) -> None:
    try:
        compaction_run(compaction_id=compaction_id)
    except RetryLater as exc:
        raise self.retry(countdown=exc.delay_s) from None


@shared_task(name="threads.compaction_backstop", acks_late=True)
def compaction_backstop_task() -> dict:
    return compaction_backstop()


@shared_task(name="threads.warming_sweep", acks_late=True)
def warming_sweep_task() -> int:
    """Claim due timers and fan out one warm task per timer; chain itself while a full
    batch came back (more may be due)."""
    claimed = warming_sweep(limit=SWEEP_BATCH)
    for thread_id, token in claimed:
        warm_thread_task.delay(thread_id, token.isoformat())
    if len(claimed) == SWEEP_BATCH:
        warming_sweep_task.delay()
    return len(claimed)


@shared_task(
    bind=True, name="threads.warm_thread", max_retries=None, acks_late=True, soft_time_limit=150
)
def warm_thread_task(self, thread_id: str, token: str, attempt: int = 0) -> None:
    try:
        warm_timer_run(thread_id=thread_id, token=datetime.fromisoformat(token), attempt=attempt)
    except RetryWarm as exc:
        raise self.retry(
            args=(thread_id, exc.token.isoformat(), attempt + 1), countdown=exc.delay_s
        ) from None


def _rss_mb() -> float:
    """The process's resident set size in MB (current on Linux, else the peak)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB; bytes on macOS
        return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


@shared_task(name="threads.memory_log", ignore_result=True)
def memory_log_task() -> dict:
    """memory:periodic — this worker's RSS and how many conversations are active."""
    counts = Thread.objects.aggregate(
        active=Count("pk", filter=Q(lifecycle=Lifecycle.ACTIVE)),
        warming=Count("pk", filter=Q(next_warm_at__isnull=False)),
    )
    record = {
        "rss_mb": _rss_mb(),
        "active_threads": counts["active"],
        "warm_timers": counts["warming"],
    }
    logger.info(
        "memory:periodic rss_mb=%s active_threads=%s warm_timers=%s",
        record["rss_mb"],
        record["active_threads"],
        record["warm_timers"],
    )
    return record


# --- Tiers -----------------------------------------------------------------------------

FLUSH_SWEEP_MAX_BATCHES = 50  # per beat tick; the next tick carries on


@shared_task(name="threads.flush_idle_threads", acks_late=True, soft_time_limit=540)
def flush_idle_threads(
    after_at: str | None = None,
    after_id: str | None = None,
    cutoff: str | None = None,
    batches: int = 0,
) -> dict:
    """Flush one batch of threads idle longer than COLD_AFTER_SECONDS, then chain the next
    batch (same cutoff, keyset cursor) while a full one came back, up to
    FLUSH_SWEEP_MAX_BATCHES. Claims are per thread (threads.storage.flush_lease), so
    overlapping runs never flush a thread twice; a thread that failed is left hot for the
    next tick."""
    cutoff_at = datetime.fromisoformat(cutoff) if cutoff else idle_cutoff()
    after = (datetime.fromisoformat(after_at), after_id) if after_at and after_id else None
    batch = flush_idle_batch(cutoff=cutoff_at, after=after)
    if batch.cursor is not None and batches + 1 < FLUSH_SWEEP_MAX_BATCHES:
        at, pk = batch.cursor
        flush_idle_threads.delay(at.isoformat(), pk, cutoff_at.isoformat(), batches + 1)
    result = {"flushed": batch.flushed, "skipped": batch.skipped, "failed": batch.failed}
    if any(result.values()):
        logger.info("flush_idle_threads %s", result)
    return result


@shared_task(name=HOT_CACHE_FILL_TASK, acks_late=True, ignore_result=True, soft_time_limit=120)
def hot_cache_fill_task(thread_id: str) -> str:
    """Fill a thread's Redis copy after a read missed it (threads/storage/fill.py)."""
    return hot_cache_fill(thread_id=thread_id)


# --- Sessions --------------------------------------------------------------------------


@shared_task(name="sessions.recover_session_locks", acks_late=True, soft_time_limit=540)
def recover_session_locks_task() -> dict:
    """Revert session locks past their lease (a process died mid-handoff or mid-spawn) and
    dispose the workspaces they left; each revert is claimed by a conditional UPDATE, so
    overlapping runs never revert one lock twice."""
    result = session_locks_recover()
    if any(result.values()):
        logger.info("recover_session_locks %s", result)
    return result


@shared_task(name="sessions.subsessions_retention", acks_late=True, soft_time_limit=540)
def subsessions_retention() -> dict:
    """Archive the sub-sessions each opted-in project's idle_subsession_ttl_seconds says are
    due (sessions_app/retention.py); the archive is a conditional UPDATE, so overlapping
    runs never archive one twice."""
    result = subsessions_retention_sweep()
    if any(result.values()):
        logger.info("subsessions_retention %s", result)
    return result
