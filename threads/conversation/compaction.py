"""Compaction: the older part of a thread's history becomes one summary message.

    compaction_request()  → a Compaction row (queued) + the task, enqueued on commit
    compaction_run()      → the task's body: claim → read → summarize → archive → commit
    compaction_after_settle() → automatic compaction (backstop.py picks up what it missed)

The prompt and the cut are prompt.py's; the archive and the rewrite are rewrite.py's.

The run never destroys a message (DESIGN.md invariant 6) and never holds a lock or a
transaction across slow I/O (invariant 4). Its steps, in this order:

1. claim the row (a conditional UPDATE queued → running: two workers never run one) with a
   short lease that a heartbeat renews while the run lives (common/leases.py); a run whose
   worker died is taken over once the lease has expired (the backstop queues it again, a new
   request fails it), and every later write of the run is fenced by its claim (status
   running and its `attempts`), so a stalled run that lost its lease changes nothing;
2. hydrate a cold thread, read the history (no lock), pick the cut;
3. ask the provider for a summary of the older part (outside any transaction);
4. write the older messages to cold storage and read them back (gzip JSON, `archive_key`);
5. in one short transaction under the thread's row lock, and only if the summarized
   messages are exactly the ones read in step 2 (nothing truncated, replaced or flushed
   meanwhile; appends are fine, they land after the cut and are kept), replace them with
   the summary message (their ids stay known to appends: CompactedMessageId), record the
   Compaction and the event `thread.compacted`.

If step 5 finds the history changed under it, the run starts again from step 2 (a few
times); if the provider fails with something retryable, the row goes back to queued and the
task retries on the schedule of threads/retry.py.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Subquery
from django.utils import timezone

from common.errors import DomainError, NotFound, ThreadArchived, ThreadGenerating
from common.leases import Heartbeat
from common.tasks import enqueue_on_commit
from sessions_app.selectors import thread_is_generating
from threads import events
from threads.conversation import rewrite
from threads.conversation.claims import (
    LeaseLost,
    check_lease,
    claimed,
    compaction_fail_expired,
    lease_renew,
    lease_until,
)
from threads.conversation.errors import (
    CompactionInProgress,
    CompactionNotSucceeded,
    EmptySummary,
    HistoryChanged,
    NothingToCompact,
    SummaryNotSmaller,
    TooShort,
)
from threads.conversation.prompt import (
    SUMMARY_PREFIX,
    build_prompt,
    choose_cut,
    is_pinned,
    is_summary,
    protected,
)
from threads.conversation.providers import SUMMARY_MAX_TOKENS, ProviderError, get_provider
from threads.conversation.retry import retry_delay
from threads.events import event_record
from threads.message_format import estimate_tokens
from threads.models import (
    COMPACTION_PENDING,
    Compaction,
    CompactionStatus,
    CompactionTrigger,
    Message,
    QueuedMessage,
    QueuedMessageStatus,
    Role,
    Thread,
    Tier,
)
from threads.selectors import history_read
from threads.storage import cold
from threads.storage.tiers import thread_ensure_hot

logger = logging.getLogger(__name__)

HISTORY_CHANGED_ATTEMPTS = 3
# The Celery task that runs a compaction (tasks/tasks.py registers it under this name).
COMPACTION_RUN_TASK = "threads.compaction_run"


class RetryLater(Exception):
    """The provider failed in a retryable way: run the task again in `delay_s` seconds."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(delay_s)
        self.delay_s = delay_s


def compaction_threshold(thread: Thread) -> int:
    """The context size (tokens) at which a settled turn triggers auto-compaction; 0 = off."""
    if thread.compaction_threshold_tokens is not None:
        return thread.compaction_threshold_tokens
    return thread.compaction_threshold_percent * thread.compaction_context_window // 100


def turn_context_tokens(thread: Thread) -> int:
    return (
        thread.last_input_tokens + thread.last_cache_read_tokens + thread.last_cache_creation_tokens
    )


# --- Requests --------------------------------------------------------------------------


def compaction_create(
    thread: Thread, *, trigger: str, keep_last: int, **payload: Any
) -> Compaction | None:
    """Insert a queued Compaction, or None when one is already queued or running (the
    partial unique constraint decides, so two racing requests cannot both insert)."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                compaction = Compaction.objects.create(
                    thread=thread, trigger=trigger, keep_last=keep_last
                )
        except IntegrityError:
            return None
        event_record(
            tenant_id=thread.tenant_id,
            thread_id=thread.pk,
            kind=events.COMPACTION_REQUESTED,
            payload={"compaction": compaction.pk, "trigger": trigger, "keep_last": keep_last}
            | payload,
        )
        enqueue_on_commit(COMPACTION_RUN_TASK, compaction.pk)
    return compaction


def compaction_request(
    *, thread: Thread, keep_last: int | None = None, trigger: str = CompactionTrigger.MANUAL
) -> Compaction:
    """Queue a compaction of `thread` (the work runs in a task, enqueued on commit).

    409 thread_archived, thread_generating (a session of the thread is active), too_short
    (no more than keep_last messages), nothing_to_compact (the older messages are all kept
    anyway: system prompt, pinned, the previous summary), compaction_in_progress (one is
    queued or running)."""
    thread.refresh_from_db()
    if thread.is_archived:
        raise ThreadArchived(thread=thread.pk)
    if thread_is_generating(thread_id=thread.pk):
        raise ThreadGenerating(thread=thread.pk)
    keep = keep_last if keep_last is not None else thread.compaction_keep_last
    if thread.message_count <= keep:
        raise TooShort(message_count=thread.message_count, keep_last=keep)
    if thread.tier == Tier.HOT and not _summarizable(thread, keep):
        raise NothingToCompact(keep_last=keep)
    compaction = compaction_create(thread, trigger=trigger, keep_last=keep)
    if compaction is None and compaction_fail_expired(thread_id=thread.pk):
        compaction = compaction_create(thread, trigger=trigger, keep_last=keep)
    if compaction is None:
        pending = (
            Compaction.objects.filter(thread=thread, status__in=COMPACTION_PENDING)
            .values_list("pk", flat=True)
            .first()
        )
        raise CompactionInProgress(compaction=pending)
    return compaction


def _summarizable(thread: Thread, keep_last: int) -> bool:
    """Whether a message older than the last `keep_last` is neither a leading system
    message, nor pinned, nor a previous summary: the cheap refusal of the common case (a
    compaction asked again with nothing new); the run decides exactly, tool pairs included.
    It stops at the first such message, which usually comes within the first few."""
    rows = Message.objects.filter(thread_id=thread.pk)
    last_older = rows.order_by("-seq").values_list("seq", flat=True)[keep_last : keep_last + 1]
    older = rows.filter(seq__lte=Subquery(last_older)).order_by("seq")
    leading = True
    for role, metadata in older.values_list("role", "metadata").iterator(chunk_size=100):
        message = {"role": role, "metadata": metadata}
        leading = leading and role == Role.SYSTEM
        if not (leading or is_pinned(message) or is_summary(message)):
            return True
    return False


def _steering_queued(thread_id: str) -> bool:
    return QueuedMessage.objects.filter(
        thread_id=thread_id, status=QueuedMessageStatus.QUEUED
    ).exists()


def compaction_after_settle(*, thread: Thread) -> Compaction | None:
    """The auto-compaction decision, after `turns/settle` recorded the turn's usage.

    Queues a compaction (trigger auto, task enqueued on commit — call it inside the
    settle's transaction) when the turn's context reached the thread's threshold, unless
    one is already queued or running, or steering messages are still queued (the next turn
    will take them; the decision waits for that turn's settle)."""
    thread = Thread.objects.get(pk=thread.pk)
    threshold = compaction_threshold(thread)
    context = turn_context_tokens(thread)
    if not threshold or context < threshold:
        return None
    if thread.is_archived or thread.message_count <= thread.compaction_keep_last:
        return None
    if _steering_queued(thread.pk) or thread_is_generating(thread_id=thread.pk):
        return None  # the next turn's settle decides (another session may still be running)
    return compaction_create(
        thread,
        trigger=CompactionTrigger.AUTO,
        keep_last=thread.compaction_keep_last,
        context_tokens=context,
        threshold=threshold,
    )


# --- The run ---------------------------------------------------------------------------


def _fail(compaction: Compaction, code: str, message: str, **details: Any) -> None:
    with transaction.atomic():
        updated = claimed(compaction).update(
            status=CompactionStatus.FAILED,
            error=f"{code}: {message}",
            finished_at=timezone.now(),
            lease_expires_at=None,
        )
        if updated:
            rewrite.compaction_event(
                compaction, events.COMPACTION_FAILED, **details, code=code, error=message
            )
    logger.warning("compaction %s failed: %s: %s", compaction.pk, code, message)


def _requeue_for_retry(compaction: Compaction, exc: ProviderError, delay_s: float) -> bool:
    """Back to queued until the retry is due, and a provider.retry event; False when the
    compaction is no longer this run's (taken over: the other run decides)."""
    with transaction.atomic():
        if not claimed(compaction).update(
            status=CompactionStatus.QUEUED,
            retry_at=timezone.now() + timedelta(seconds=delay_s),
            error=f"{exc.reason}: {exc.message}",
            lease_expires_at=None,
        ):
            return False
        rewrite.compaction_event(
            compaction,
            events.PROVIDER_RETRY,
            attempt=compaction.attempts,
            delay_s=delay_s,
            code=exc.reason,
            status=exc.provider_status,
            operation="compaction",
        )
    return True


def compaction_run(*, compaction_id: str) -> Compaction | None:
    """The task's body. Returns the compaction, or None when there was nothing to claim
    (already running elsewhere, done, or gone). Raises RetryLater for a retryable
    provider failure (the row is queued again and a provider.retry event recorded)."""
    claimed = Compaction.objects.filter(pk=compaction_id, status=CompactionStatus.QUEUED).update(
        status=CompactionStatus.RUNNING,
        started_at=timezone.now(),
        attempts=F("attempts") + 1,
        retry_at=None,
        lease_expires_at=lease_until(),
    )
    if not claimed:
        return None
    compaction = Compaction.objects.select_related("thread").get(pk=compaction_id)
    beat = Heartbeat(
        lambda: lease_renew(compaction),
        every=settings.COMPACTION_LEASE_SECONDS / 3,
        name=f"compaction {compaction.pk}",
    )
    try:
        with beat:
            _run(compaction)
    except LeaseLost:
        logger.warning("compaction %s: lease lost to another run; this one stops", compaction.pk)
        return None
    except ProviderError as exc:
        delay = retry_delay(compaction.attempts) if exc.retryable else None
        if delay is not None:
            if not _requeue_for_retry(compaction, exc, delay):
                return None
            raise RetryLater(delay) from exc
        _fail(compaction, exc.reason, exc.message, provider_status=exc.provider_status)
    except DomainError as exc:
        _fail(compaction, exc.code, exc.message, **exc.details)
    except Exception as exc:
        _fail(compaction, "internal_error", f"{type(exc).__name__}: {exc}")
        raise
    compaction.refresh_from_db()
    return compaction


def _read(thread: Thread, keep_last: int) -> rewrite.HistoryRead:
    version = thread.history_version
    history = history_read(thread_id=thread.pk)
    if len(history) <= keep_last:
        raise TooShort(message_count=len(history), keep_last=keep_last)
    cut = choose_cut(history, keep_last)
    if cut == 0:
        raise TooShort(
            "Every older message belongs to a tool call answered in the kept part.",
            message_count=len(history),
            keep_last=keep_last,
        )
    leading, pinned = protected(history, cut)
    kept = set(leading) | set(pinned)
    summarized = [m for i, m in enumerate(history[:cut]) if i not in kept]
    if all(is_summary(m) for m in summarized):
        raise NothingToCompact(keep_last=keep_last, pinned=len(pinned), system=len(leading))
    return rewrite.HistoryRead(
        history_version=version,
        older=history[:cut],
        summarized=summarized,
        leading=[history[i] for i in leading],
        pinned=[history[i] for i in pinned],
    )


def _run(compaction: Compaction) -> None:
    thread = compaction.thread
    provider = get_provider()
    started = time.monotonic()
    for _ in range(HISTORY_CHANGED_ATTEMPTS):
        thread.refresh_from_db()
        if thread.is_archived:
            raise ThreadArchived(thread=thread.pk)
        thread = thread_ensure_hot(thread=thread)
        read = _read(thread, compaction.keep_last)

        t0 = time.monotonic()
        completion = provider.summarize(
            prompt=build_prompt(read.summarized), max_tokens=SUMMARY_MAX_TOKENS
        )
        provider_ms = round((time.monotonic() - t0) * 1000)
        summary = completion.text.strip()
        if not summary:
            raise EmptySummary
        # The summary replaces the summarized messages: it must be smaller, or the
        # compaction would make the conversation longer (tokens_after > tokens_before).
        summary_tokens = estimate_tokens(SUMMARY_PREFIX + summary)
        replaced_tokens = sum(m["token_estimate"] for m in read.summarized)
        if summary_tokens >= replaced_tokens:
            raise SummaryNotSmaller(summary_tokens=summary_tokens, replaced_tokens=replaced_tokens)

        key = rewrite.archive_key(thread_id=thread.pk, compaction_id=compaction.pk)
        check_lease(compaction)
        t0 = time.monotonic()
        rewrite.archive_write(key, rewrite.archive_body(thread, compaction, read.summarized))
        archive_ms = round((time.monotonic() - t0) * 1000)

        t0 = time.monotonic()
        try:
            rewrite.rewrite_commit(
                compaction,
                read,
                summary=summary,
                key=key,
                provider_name=provider.name,
                usage=completion.usage.as_dict(),
                timings={"provider_ms": provider_ms, "archive_ms": archive_ms},
                started=started,
                commit_started=t0,
            )
        except rewrite.HistoryMoved:
            logger.info("compaction %s: history changed during the run; again", compaction.pk)
            continue
        except rewrite.ClaimLost:
            raise LeaseLost from None  # the archive is the run that took over's now: keep it
        except BaseException:
            rewrite.archive_discard(key)
            raise
        return
    rewrite.archive_discard(rewrite.archive_key(thread_id=thread.pk, compaction_id=compaction.pk))
    raise HistoryChanged


# --- Reads -----------------------------------------------------------------------------


def compaction_originals(*, compaction: Compaction) -> list[dict[str, Any]]:
    """The archived original messages of a succeeded compaction, in seq order."""
    if compaction.status != CompactionStatus.SUCCEEDED or not compaction.archive_key:
        raise CompactionNotSucceeded(status=compaction.status)
    try:
        body = cold.gunzip_json(cold.get(compaction.archive_key))
    except cold.ColdObjectMissing:
        raise NotFound("The archived originals are missing.", key=compaction.archive_key) from None
    except ValueError as exc:
        raise cold.ColdStorageUnavailable(
            "The archived originals are unreadable.", key=compaction.archive_key
        ) from exc
    return body["messages"]
