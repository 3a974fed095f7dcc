"""Prompt-cache warming: between turns, re-send a thread's prefix so the provider's cache
(5 minutes by default) is still there when the next turn comes.

The timer is `Thread.next_warm_at`:

- turn start clears it (warming_on_turn_start); settle arms it at now + interval when
  warming is enabled (warming_on_settle); closing the thread turns warming off and clears it;
- the beat sweep (warming_sweep) claims due timers with a conditional UPDATE that moves
  `next_warm_at` to a short lease. The lease value is the claim's token: the warm that
  follows only counts if the timer still holds its token when it commits, so a turn that
  started meanwhile (which cleared the timer), a manual warm (which re-armed it) or another
  sweep (which cannot claim an unexpired lease) all win over it. A worker that dies mid-warm
  leaves the lease to expire, and the next sweep claims the timer again;
- a successful warm re-arms it at now + interval; a failed one leaves it off until the next
  settle. After `max_idle_warms` consecutive warms with no turn in between it stops
  (event warming.capped); 0 means no cap.

The warm itself (warm_timer_run / warm_now) reads the history with no lock, calls the
provider outside any transaction, then records the result in a short transaction under the
thread's row lock. Nothing is written to the history.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from common.errors import NotFound, ThreadArchived, ThreadGenerating
from sessions_app.selectors import thread_is_generating
from threads import events, locks
from threads.conversation.errors import NoHistory, NothingToWarm
from threads.conversation.providers import ProviderError, Usage, get_provider
from threads.conversation.retry import retry_delay
from threads.events import event_record
from threads.models import Lifecycle, Thread, ThreadStatus
from threads.selectors import history_read
from threads.storage.tiers import thread_ensure_hot

logger = logging.getLogger(__name__)

# How long a claimed timer belongs to its warm before a sweep may claim it again: longer
# than a warm takes (the SDK's timeout for it is 60 s).
CLAIM_LEASE = timedelta(seconds=120)
SWEEP_BATCH = 500


def _ratio_pct(part: int, whole: int) -> int:
    """round(100 × part / whole), halves up, 0 when whole is 0 (exact integer arithmetic)."""
    if whole <= 0:
        return 0
    return (200 * part + whole) // (2 * whole)


def cache_pct(usage: Usage) -> int:
    """How much of the prompt came from the cache."""
    return _ratio_pct(
        usage.cache_read_tokens,
        usage.input_tokens + usage.cache_read_tokens + usage.cache_creation_tokens,
    )


def retention_pct(usage: Usage) -> int:
    """How much of the cacheable prefix was still cached (the rest had to be written)."""
    return _ratio_pct(
        usage.cache_read_tokens, usage.cache_read_tokens + usage.cache_creation_tokens
    )


@dataclass
class WarmResult:
    usage: Usage
    cache_pct: int
    retention_pct: int
    next_warm_at: datetime | None
    dropped: bool = False
    capped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "usage": self.usage.as_dict(),
            "cache_pct": self.cache_pct,
            "retention_pct": self.retention_pct,
            "next_warm_at": self.next_warm_at,
        }


class RetryWarm(Exception):
    """A retryable provider failure: warm again in `delay_s` with the renewed `token`."""

    def __init__(self, delay_s: float, token: datetime) -> None:
        super().__init__(delay_s)
        self.delay_s, self.token = delay_s, token


# --- Timer transitions -------------------------------------------------------------------


def warming_on_turn_start(*, thread: Thread) -> None:
    """A turn started: no warm while it runs, and the idle count starts over."""
    Thread.objects.filter(pk=thread.pk).update(next_warm_at=None, idle_warm_count=0)


def warming_on_settle(*, thread: Thread) -> datetime | None:
    """A turn settled: arm the timer at now + interval when warming is enabled."""
    settings_row = (
        Thread.objects.filter(pk=thread.pk, warming_enabled=True, status=ThreadStatus.OPEN)
        .exclude(lifecycle=Lifecycle.CLOSED)
        .values_list("warming_interval_s", flat=True)
        .first()
    )
    if settings_row is None:
        Thread.objects.filter(pk=thread.pk).update(idle_warm_count=0)
        return None
    due = timezone.now() + timedelta(seconds=settings_row)
    Thread.objects.filter(pk=thread.pk, warming_enabled=True).update(
        next_warm_at=due, idle_warm_count=0
    )
    return due


def _due(now: datetime) -> Q:
    return (
        Q(next_warm_at__lte=now, warming_enabled=True, status=ThreadStatus.OPEN)
        & ~Q(lifecycle=Lifecycle.CLOSED)
        & ~Q(lifecycle=Lifecycle.ACTIVE)
    )


def warming_sweep(*, limit: int = SWEEP_BATCH) -> list[tuple[str, datetime]]:
    """Claim up to `limit` due timers; returns [(thread id, token)] to warm.

    The due rows are locked with SKIP LOCKED (a concurrent sweep takes others, never the
    same) and moved to the lease by a conditional UPDATE in the same short transaction. A
    sweep that read a row before another committed its claim re-checks `next_warm_at` when
    it locks the row (PostgreSQL re-evaluates the WHERE on the new version) and skips it."""
    now = timezone.now()
    lease = now + CLAIM_LEASE
    with transaction.atomic():
        # The partial index thread_warm_due (next_warm_at IS NOT NULL) serves this.
        ids = locks.lock_due_threads(_due(now), order_by="next_warm_at", limit=limit)
        if not ids:
            return []
        claimed = Thread.objects.filter(_due(now), pk__in=ids).update(next_warm_at=lease)
        if claimed != len(ids):  # cannot happen under the row locks; claim nothing then
            raise RuntimeError("due timers changed under their row locks")
    return [(pk, lease) for pk in ids]


def _release(thread_id: str, token: datetime) -> bool:
    """Stop the timer if it still holds our claim (a failed or pointless warm)."""
    return bool(Thread.objects.filter(pk=thread_id, next_warm_at=token).update(next_warm_at=None))


# --- The warm ----------------------------------------------------------------------------


def _prefix(thread: Thread) -> list[dict[str, Any]]:
    return [{"role": m["role"], "content": m["content"]} for m in history_read(thread_id=thread.pk)]


def _completed_event(thread: Thread, result: WarmResult, trigger: str, **payload: Any) -> None:
    event_record(
        tenant_id=thread.tenant_id,
        thread_id=thread.pk,
        kind=events.WARM_COMPLETED,
        payload={
            "trigger": trigger,
            "usage": result.usage.as_dict(),
            "cache_pct": result.cache_pct,
            "retention_pct": result.retention_pct,
            "next_warm_at": result.next_warm_at.isoformat() if result.next_warm_at else None,
            **payload,
        },
    )


def warm_timer_run(*, thread_id: str, token: datetime, attempt: int = 0) -> WarmResult | None:
    """The sweep's warm of one claimed timer. None when there was nothing to do (the claim
    went stale, warming was turned off, a turn is running, the history is empty).

    Raises RetryWarm for a retryable provider failure while retrying is still worth it:
    the waits follow threads/retry.py but within the thread's interval (a warm that comes
    later than that is pointless: the cache it was to keep has expired)."""
    thread = Thread.objects.filter(pk=thread_id).first()
    if thread is None or thread.next_warm_at != token:
        return None
    if (
        not thread.warming_enabled
        or thread.is_archived
        or thread.lifecycle == Lifecycle.CLOSED
        or thread.message_count == 0
        or thread_is_generating(thread_id=thread.pk)
    ):
        _release(thread_id, token)  # a turn start / settle re-arms it when relevant
        return None

    try:
        thread = thread_ensure_hot(thread=thread)
        usage = get_provider().warm(
            history=_prefix(thread), reasoning_effort=thread.reasoning_effort
        )
    except NothingToWarm as exc:
        _warm_failed(thread, token, exc.code, exc.message)
        return None
    except ProviderError as exc:
        delay = (
            retry_delay(attempt + 1, budget_s=thread.warming_interval_s) if exc.retryable else None
        )
        renewed = _renew_for_retry(thread, token, exc, attempt + 1, delay)
        if renewed is not None:
            raise RetryWarm(delay, renewed) from exc
        _warm_failed(thread, token, exc.reason, exc.message, status=exc.provider_status)
        return None
    try:
        return _commit_timer_warm(thread, token, usage)
    except NotFound:  # deleted during the warm: nothing to record
        return None


def _renew_for_retry(
    thread: Thread, token: datetime, exc: ProviderError, attempt: int, delay: float | None
) -> datetime | None:
    """Extend the claim over the wait and record provider.retry; None when not retrying."""
    if delay is None:
        return None
    renewed = timezone.now() + timedelta(seconds=delay) + CLAIM_LEASE
    with transaction.atomic():
        if not Thread.objects.filter(pk=thread.pk, next_warm_at=token).update(next_warm_at=renewed):
            return None  # the timer moved on (a turn started): nothing to retry
        event_record(
            tenant_id=thread.tenant_id,
            thread_id=thread.pk,
            kind=events.PROVIDER_RETRY,
            payload={
                "attempt": attempt,
                "delay_s": delay,
                "code": exc.reason,
                "status": exc.provider_status,
                "operation": "warm",
            },
        )
    return renewed


def _warm_failed(thread: Thread, token: datetime, code: str, message: str, **payload: Any) -> None:
    with transaction.atomic():
        if _release(thread.pk, token):
            _failed_event(thread, "timer", code, message, **payload)
    logger.warning("warm of %s failed: %s", thread.pk, message)


def _failed_event(thread: Thread, trigger: str, code: str, message: str, **payload: Any) -> None:
    event_record(
        tenant_id=thread.tenant_id,
        thread_id=thread.pk,
        kind=events.WARM_FAILED,
        payload={"trigger": trigger, "code": code, "error": message, **payload},
    )


def _commit_timer_warm(thread: Thread, token: datetime, usage: Usage) -> WarmResult:
    now = timezone.now()
    with transaction.atomic():
        locked = locks.lock_thread(thread.pk)
        result = WarmResult(
            usage=usage,
            cache_pct=cache_pct(usage),
            retention_pct=retention_pct(usage),
            next_warm_at=locked.next_warm_at,
        )
        if locked.next_warm_at != token or thread_is_generating(thread_id=locked.pk):
            # A turn started (it cleared the timer), or a manual warm re-armed it: this
            # result is stale, and the timer is someone else's now.
            result.dropped = True
            return result
        count = locked.idle_warm_count + 1
        cap = locked.warming_max_idle_warms
        result.capped = bool(cap) and count >= cap
        result.next_warm_at = (
            None if result.capped else now + timedelta(seconds=locked.warming_interval_s)
        )
        Thread.objects.filter(pk=thread.pk).update(
            next_warm_at=result.next_warm_at,
            last_warm_at=now,
            last_cache_pct=result.cache_pct,
            last_retention_pct=result.retention_pct,
            idle_warm_count=count,
        )
        _completed_event(locked, result, "timer", idle_warms=count)
        if result.capped:
            event_record(
                tenant_id=locked.tenant_id,
                thread_id=locked.pk,
                kind=events.WARMING_CAPPED,
                payload={"idle_warms": count, "max_idle_warms": cap},
            )
    return result


def warm_now(*, thread: Thread) -> WarmResult:
    """A manual warm (POST /threads/{id}/warm, the admin's "warm now"), whether or not the
    timer is enabled; when it is, the timer restarts at now + interval.

    409 thread_archived, thread_generating (also when a turn started during the warm: the
    result is dropped), no_history, nothing_to_warm (nothing but an unanswered tool call);
    422 provider_rejected when the provider refuses the request (its message in the
    error), 503 provider_unavailable when it fails; both recorded as warm.failed."""
    thread.refresh_from_db()
    if thread.is_archived:
        raise ThreadArchived(thread=thread.pk)
    if thread_is_generating(thread_id=thread.pk):
        raise ThreadGenerating(thread=thread.pk)
    if thread.message_count == 0:
        raise NoHistory(thread=thread.pk)
    thread = thread_ensure_hot(thread=thread)
    history = _prefix(thread)
    if not history:
        raise NoHistory(thread=thread.pk)
    try:
        usage = get_provider().warm(history=history, reasoning_effort=thread.reasoning_effort)
    except ProviderError as exc:
        with transaction.atomic():
            _failed_event(thread, "manual", exc.reason, exc.message, status=exc.provider_status)
        raise

    now = timezone.now()
    with transaction.atomic():
        locked = locks.lock_thread(thread.pk)
        if thread_is_generating(thread_id=locked.pk):
            raise ThreadGenerating("A turn started during the warm; its result was dropped.")
        rearm = locked.warming_enabled and locked.lifecycle != Lifecycle.CLOSED
        result = WarmResult(
            usage=usage,
            cache_pct=cache_pct(usage),
            retention_pct=retention_pct(usage),
            next_warm_at=(
                now + timedelta(seconds=locked.warming_interval_s) if rearm else locked.next_warm_at
            ),
        )
        changes: dict[str, Any] = {
            "last_warm_at": now,
            "last_cache_pct": result.cache_pct,
            "last_retention_pct": result.retention_pct,
        }
        if rearm:
            changes.update(next_warm_at=result.next_warm_at, idle_warm_count=0)
        Thread.objects.filter(pk=thread.pk).update(**changes)
        _completed_event(locked, result, "manual")
    return result
