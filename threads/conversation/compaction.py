"""Compaction: the older part of a thread's history becomes one summary message.

    compaction_request()  → a Compaction row (queued) + the task, enqueued on commit
    compaction_run()      → the task's body: claim → read → summarize → archive → commit
    compaction_after_settle() / compaction_backstop() → automatic compaction

The run never destroys a message (DESIGN.md invariant 6) and never holds a lock or a
transaction across slow I/O (invariant 4). Its steps, in this order:

1. claim the row (a conditional UPDATE queued → running: two workers never run one);
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

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Count, Exists, F, IntegerField, OuterRef, Q, Sum, When
from django.utils import timezone

from common.errors import DomainError, NotFound, ThreadArchived, ThreadGenerating
from common.ids import new_id
from sessions_app.selectors import thread_is_generating
from threads import events, locks
from threads.conversation.errors import CompactionInProgress, CompactionNotSucceeded, TooShort
from threads.conversation.providers import SUMMARY_MAX_TOKENS, ProviderError, get_provider
from threads.conversation.retry import retry_delay
from threads.events import event_record
from threads.message_format import estimate_tokens
from threads.models import (
    COMPACTION_PENDING,
    CompactedMessageId,
    Compaction,
    CompactionStatus,
    CompactionTrigger,
    Message,
    QueuedMessage,
    QueuedMessageStatus,
    Role,
    Thread,
    ThreadStatus,
    Tier,
)
from threads.selectors import history_read
from threads.storage import cold, hotcache
from threads.storage.tiers import thread_ensure_hot

logger = logging.getLogger(__name__)

PROMPT_HEADER = "Please summarize the following conversation:\n\n"
SUMMARY_PREFIX = "The following is a summary of the previous conversation:\n\n"
TOOL_RESULT_PREVIEW_CHARS = 200
HISTORY_CHANGED_ATTEMPTS = 3
# The backstop re-enqueues a queued compaction whose task should have run this long ago…
BACKSTOP_GRACE = timedelta(seconds=60)
# …and does not auto-compact again a thread whose last compaction failed this recently.
BACKSTOP_FAILED_COOLDOWN = timedelta(hours=1)


class RetryLater(Exception):
    """The provider failed in a retryable way: run the task again in `delay_s` seconds."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(delay_s)
        self.delay_s = delay_s


class _HistoryChanged(Exception):
    """The summarized messages are no longer the ones read: start over."""


class EmptySummary(DomainError):
    code = "empty_summary"
    message = "The model produced an empty summary."


class HistoryChanged(DomainError):
    code = "history_changed"
    message = "The history kept changing during the compaction; nothing was changed."


# --- The prompt and the cut --------------------------------------------------------------


def _flatten(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            block.get("text", "")
            for block in content
            if isinstance(block, dict) and isinstance(block.get("text"), str)
        )
    return ""


def message_text(content: Any) -> str:
    """One message as the prompt shows it: text as is, a tool call as `[tool: name]`, a
    tool result as `[tool result: <its first 200 characters>]`."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(str(block.get("text", "")))
        elif kind in ("tool_use", "server_tool_use"):
            parts.append(f"[tool: {block.get('name', '?')}]")
        elif kind == "tool_result":
            preview = _flatten(block.get("content", ""))[:TOOL_RESULT_PREVIEW_CHARS]
            parts.append(f"[tool result: {preview}]")
    return " ".join(part for part in parts if part)


def build_prompt(messages: list[dict[str, Any]]) -> str:
    """The summary request: the header, then one `role: text` line per message."""
    lines = [f"{m['role']}: {message_text(m['content'])}" for m in messages]
    return PROMPT_HEADER + "\n".join(lines)


def _tool_uses(content: Any) -> list[str]:
    if not isinstance(content, list):
        return []
    return [
        b["id"]
        for b in content
        if isinstance(b, dict) and b.get("type") == "tool_use" and isinstance(b.get("id"), str)
    ]


def _tool_results(message: dict[str, Any]) -> list[str]:
    content = message["content"]
    ids = []
    if isinstance(content, list):
        ids = [
            b["tool_use_id"]
            for b in content
            if isinstance(b, dict)
            and b.get("type") == "tool_result"
            and isinstance(b.get("tool_use_id"), str)
        ]
    return ids


def _is_tool_result(message: dict[str, Any]) -> bool:
    return message["role"] == Role.TOOL or bool(_tool_results(message))


def choose_cut(messages: list[dict[str, Any]], keep_last: int) -> int:
    """How many leading messages to summarize (0: none): all but the last `keep_last`,
    moved earlier while the cut would separate an assistant `tool_use` from the
    `tool_result` that answers it, or leave a tool result first in the kept part."""
    cut = max(len(messages) - keep_last, 0)
    used_at: dict[str, int] = {}
    for index, message in enumerate(messages):
        if message["role"] == Role.ASSISTANT:
            for tool_id in _tool_uses(message["content"]):
                used_at.setdefault(tool_id, index)
    # (use, answer) index pairs: the cut must not fall in (use, answer].
    pairs = [
        (used_at[tool_id], index)
        for index, message in enumerate(messages)
        for tool_id in _tool_results(message)
        if tool_id in used_at and used_at[tool_id] < index
    ]
    moved = True
    while moved and cut > 0:
        moved = False
        for use, answer in pairs:
            if use < cut <= answer:
                cut, moved = use, True
        if cut > 0 and _is_tool_result(messages[cut]):
            cut, moved = cut - 1, True
    return cut


def compaction_threshold(thread: Thread) -> int:
    """The context size (tokens) at which a settled turn triggers auto-compaction; 0 = off."""
    if thread.compaction_threshold_tokens is not None:
        return thread.compaction_threshold_tokens
    return thread.compaction_threshold_percent * thread.compaction_context_window // 100


def turn_context_tokens(thread: Thread) -> int:
    return (
        thread.last_input_tokens + thread.last_cache_read_tokens + thread.last_cache_creation_tokens
    )


def archive_key(*, thread_id: str, compaction_id: str) -> str:
    return f"{settings.COLD_PREFIX}/compactions/{thread_id}/{compaction_id}.json.gz"


# --- Requests --------------------------------------------------------------------------


def _enqueue_on_commit(compaction_id: str) -> None:
    from tasks.tasks import compaction_run_task

    transaction.on_commit(lambda: compaction_run_task.delay(compaction_id))


def _create(thread: Thread, *, trigger: str, keep_last: int, **payload: Any) -> Compaction | None:
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
        _enqueue_on_commit(compaction.pk)
    return compaction


def compaction_request(
    *, thread: Thread, keep_last: int | None = None, trigger: str = CompactionTrigger.MANUAL
) -> Compaction:
    """Queue a compaction of `thread` (the work runs in a task, enqueued on commit).

    409 thread_archived, thread_generating (a session of the thread is active), too_short
    (no more than keep_last messages), compaction_in_progress (one is queued or running)."""
    thread.refresh_from_db()
    if thread.is_archived:
        raise ThreadArchived(thread=thread.pk)
    if thread_is_generating(thread_id=thread.pk):
        raise ThreadGenerating(thread=thread.pk)
    keep = keep_last if keep_last is not None else thread.compaction_keep_last
    if thread.message_count <= keep:
        raise TooShort(message_count=thread.message_count, keep_last=keep)
    compaction = _create(thread, trigger=trigger, keep_last=keep)
    if compaction is None:
        pending = (
            Compaction.objects.filter(thread=thread, status__in=COMPACTION_PENDING)
            .values_list("pk", flat=True)
            .first()
        )
        raise CompactionInProgress(compaction=pending)
    return compaction


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
    return _create(
        thread,
        trigger=CompactionTrigger.AUTO,
        keep_last=thread.compaction_keep_last,
        context_tokens=context,
        threshold=threshold,
    )


# --- The run ---------------------------------------------------------------------------


@dataclass
class _Read:
    history_version: int
    tokens_before: int
    older: list[dict[str, Any]]

    @property
    def cut_seq(self) -> int:
        return self.older[-1]["seq"]


def _event(compaction: Compaction, kind: str, **payload: Any) -> None:
    event_record(
        tenant_id=compaction.thread.tenant_id,
        thread_id=compaction.thread_id,
        kind=kind,
        payload={"compaction": compaction.pk, **payload},
    )


def _fail(compaction: Compaction, code: str, message: str) -> None:
    with transaction.atomic():
        updated = Compaction.objects.filter(
            pk=compaction.pk, status=CompactionStatus.RUNNING
        ).update(
            status=CompactionStatus.FAILED,
            error=f"{code}: {message}",
            finished_at=timezone.now(),
        )
        if updated:
            _event(compaction, events.COMPACTION_FAILED, code=code, error=message)
    logger.warning("compaction %s failed: %s: %s", compaction.pk, code, message)


def _requeue_for_retry(compaction: Compaction, exc: ProviderError, delay_s: float) -> None:
    """Back to queued until the retry is due, and a provider.retry event."""
    with transaction.atomic():
        Compaction.objects.filter(pk=compaction.pk, status=CompactionStatus.RUNNING).update(
            status=CompactionStatus.QUEUED,
            retry_at=timezone.now() + timedelta(seconds=delay_s),
            error=f"{exc.reason}: {exc.message}",
        )
        _event(
            compaction,
            events.PROVIDER_RETRY,
            attempt=compaction.attempts,
            delay_s=delay_s,
            code=exc.reason,
            status=exc.provider_status,
            operation="compaction",
        )


def compaction_run(*, compaction_id: str) -> Compaction | None:
    """The task's body. Returns the compaction, or None when there was nothing to claim
    (already running elsewhere, done, or gone). Raises RetryLater for a retryable
    provider failure (the row is queued again and a provider.retry event recorded)."""
    claimed = Compaction.objects.filter(pk=compaction_id, status=CompactionStatus.QUEUED).update(
        status=CompactionStatus.RUNNING,
        started_at=timezone.now(),
        attempts=F("attempts") + 1,
        retry_at=None,
    )
    if not claimed:
        return None
    compaction = Compaction.objects.select_related("thread").get(pk=compaction_id)
    try:
        _run(compaction)
    except ProviderError as exc:
        delay = retry_delay(compaction.attempts) if exc.retryable else None
        if delay is not None:
            _requeue_for_retry(compaction, exc, delay)
            raise RetryLater(delay) from exc
        _fail(compaction, exc.reason, exc.message)
    except DomainError as exc:
        _fail(compaction, exc.code, exc.message)
    except Exception as exc:
        _fail(compaction, "internal_error", f"{type(exc).__name__}: {exc}")
        raise
    compaction.refresh_from_db()
    return compaction


def _read(thread: Thread, keep_last: int) -> _Read:
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
    return _Read(
        history_version=version,
        tokens_before=sum(m["token_estimate"] for m in history),
        older=history[:cut],
    )


def _archive_body(thread: Thread, compaction: Compaction, older: list[dict[str, Any]]) -> bytes:
    messages = [
        {
            "id": m["message_id"],
            "seq": m["seq"],
            "role": m["role"],
            "content": m["content"],
            "metadata": m["metadata"],
            "token_estimate": m["token_estimate"],
            "created_at": m["created_at"].isoformat(),
        }
        for m in older
    ]
    canonical = json.dumps(messages, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return cold.gzip_json(
        {
            "v": 1,
            "kind": "compaction_originals",
            "tenant": thread.tenant_id,
            "thread": thread.pk,
            "compaction": compaction.pk,
            "first_seq": older[0]["seq"],
            "cut_seq": older[-1]["seq"],
            "messages": messages,
            "checksum": "sha256:" + hashlib.sha256(canonical.encode()).hexdigest(),
        }
    )


def _archive(key: str, body: bytes) -> None:
    """Write, then read back: the originals must be in the store before they are deleted."""
    cold.put(key, body)
    if cold.get(key) != body:
        raise cold.ColdStorageUnavailable("The archived originals did not read back.", key=key)


def _discard_archive(key: str) -> None:
    try:
        cold.delete(key)
    except cold.ColdStorageUnavailable:
        logger.warning("could not delete the unused compaction archive %s", key)


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
            prompt=build_prompt(read.older), max_tokens=SUMMARY_MAX_TOKENS
        )
        provider_ms = round((time.monotonic() - t0) * 1000)
        summary = completion.text.strip()
        if not summary:
            raise EmptySummary

        key = archive_key(thread_id=thread.pk, compaction_id=compaction.pk)
        t0 = time.monotonic()
        _archive(key, _archive_body(thread, compaction, read.older))
        archive_ms = round((time.monotonic() - t0) * 1000)

        t0 = time.monotonic()
        try:
            _commit(
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
        except _HistoryChanged:
            logger.info("compaction %s: history changed during the run; again", compaction.pk)
            continue
        except BaseException:
            _discard_archive(key)
            raise
        return
    _discard_archive(archive_key(thread_id=thread.pk, compaction_id=compaction.pk))
    raise HistoryChanged


def _record_compacted_ids(thread_id: str, *, cut_seq: int, compaction_id: str) -> None:
    """Record the ids and seqs of the messages about to be summarized away (seq ≤ cut_seq)
    as CompactedMessageId rows: one INSERT … SELECT from the rows themselves (the ORM has
    none; cf. services._copy_messages), inside the commit's transaction and row lock, so an
    append sees either the message or its id, never neither. The ids are disjoint from those
    already recorded; DO NOTHING only keeps an inconsistency from failing the compaction."""
    qn = connection.ops.quote_name
    ids, messages = CompactedMessageId._meta, Message._meta

    def col(meta, name: str) -> str:
        return qn(meta.get_field(name).column)

    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(ids.db_table)} "
            f"({col(ids, 'thread')}, {col(ids, 'message_id')}, {col(ids, 'seq')}, "
            f"{col(ids, 'compaction')}) "
            f"SELECT {col(messages, 'thread')}, {col(messages, 'message_id')}, "
            f"{col(messages, 'seq')}, %s FROM {qn(messages.db_table)} "
            f"WHERE {col(messages, 'thread')} = %s AND {col(messages, 'seq')} <= %s "
            "ON CONFLICT DO NOTHING",
            [compaction_id, thread_id, cut_seq],
        )


def _commit(
    compaction: Compaction,
    read: _Read,
    *,
    summary: str,
    key: str,
    provider_name: str,
    usage: dict[str, int],
    timings: dict[str, int],
    started: float,
    commit_started: float,
) -> None:
    thread = compaction.thread
    older = read.older
    with transaction.atomic():
        locked = locks.lock_thread(thread.pk)
        if locked.status == ThreadStatus.ARCHIVED:
            raise ThreadArchived(thread=thread.pk)
        if locked.tier != Tier.HOT:
            raise _HistoryChanged  # flushed meanwhile: the rows are in the cold store
        if locked.history_version != read.history_version:
            # Something wrote since the read. Appends are fine (they land after the cut
            # and are kept below); anything that touched the summarized range is not.
            # Seqs are never reused and rows never edited, so the same seqs are the same
            # messages.
            summarized = Message.objects.filter(thread_id=thread.pk, seq__lte=read.cut_seq)
            if list(summarized.order_by("seq").values_list("seq", flat=True)) != [
                m["seq"] for m in older
            ]:
                raise _HistoryChanged

        kept = Message.objects.filter(thread_id=thread.pk, seq__gt=read.cut_seq)
        kept_stats = kept.aggregate(count=Count("pk"), tokens=Sum("token_estimate"))
        kept_count, kept_tokens = kept_stats["count"], kept_stats["tokens"] or 0
        # Their ids stay known to appends (invariant 2) before the rows go.
        _record_compacted_ids(thread.pk, cut_seq=read.cut_seq, compaction_id=compaction.pk)
        Message.objects.filter(thread_id=thread.pk, seq__lte=read.cut_seq).delete()

        # The summary goes first, so the kept messages move after it: new seqs continue
        # after last_seq (never reused, as in messages_replace). Every new seq is above
        # every old one, so the shifting UPDATE never collides with the unique (thread, seq).
        summary_seq = locked.last_seq + 1
        offset = summary_seq - read.cut_seq
        kept.update(seq=F("seq") + offset)
        content = SUMMARY_PREFIX + summary
        summary_tokens = estimate_tokens(content)
        summary_id = new_id("msg")
        now = timezone.now()
        Message.objects.create(
            thread_id=thread.pk,
            message_id=summary_id,
            seq=summary_seq,
            role=Role.SYSTEM,
            content=content,
            metadata={
                "compaction": compaction.pk,
                "messages_summarized": len(older),
                "archive_key": key,
            },
            token_estimate=summary_tokens,
            created_at=now,
        )
        tokens_after = summary_tokens + kept_tokens
        Thread.objects.filter(pk=thread.pk).update(
            last_seq=locked.last_seq + offset,
            message_count=kept_count + 1,
            token_estimate=tokens_after,
            history_version=F("history_version") + 1,
            updated_at=now,
            # The last turn's usage described a context that no longer exists; zeroing it
            # keeps the backstop from compacting again before the next settle.
            last_input_tokens=0,
            last_cache_read_tokens=0,
            last_cache_creation_tokens=0,
        )
        timings = {
            **timings,
            "commit_ms": round((time.monotonic() - commit_started) * 1000),
            "total_ms": round((time.monotonic() - started) * 1000),
        }
        Compaction.objects.filter(pk=compaction.pk).update(
            status=CompactionStatus.SUCCEEDED,
            error="",
            messages_summarized=len(older),
            messages_kept=kept_count,
            tokens_before=read.tokens_before,
            tokens_after=tokens_after,
            summary=summary,
            summary_message_id=summary_id,
            cut_seq=read.cut_seq,
            archive_key=key,
            provider=provider_name,
            usage=usage,
            timings=timings,
            finished_at=now,
        )
        _event(
            compaction,
            events.THREAD_COMPACTED,
            trigger=compaction.trigger,
            messages_summarized=len(older),
            messages_kept=kept_count,
            tokens_before=read.tokens_before,
            tokens_after=tokens_after,
            archive_key=key,
        )
        hotcache.on_commit_drop(thread_id=thread.pk)


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


# --- The backstop ----------------------------------------------------------------------


def _due_threads(now: datetime, limit: int) -> list[Thread]:
    context = F("last_input_tokens") + F("last_cache_read_tokens") + F("last_cache_creation_tokens")
    threshold = Case(
        When(compaction_threshold_tokens__isnull=False, then=F("compaction_threshold_tokens")),
        default=F("compaction_threshold_percent") * F("compaction_context_window") / 100,
        output_field=IntegerField(),
    )
    pending = Compaction.objects.filter(thread=OuterRef("pk"), status__in=COMPACTION_PENDING)
    failed_recently = Compaction.objects.filter(
        thread=OuterRef("pk"),
        status=CompactionStatus.FAILED,
        created_at__gte=now - BACKSTOP_FAILED_COOLDOWN,
    )
    steering = QueuedMessage.objects.filter(
        thread=OuterRef("pk"), status=QueuedMessageStatus.QUEUED
    )
    return list(
        Thread.objects.alias(context=context, threshold=threshold)
        .filter(
            status=ThreadStatus.OPEN,
            tier=Tier.HOT,
            threshold__gt=0,
            context__gte=F("threshold"),
            message_count__gt=F("compaction_keep_last"),
        )
        .exclude(Exists(pending))
        .exclude(Exists(failed_recently))
        .exclude(Exists(steering))
        .order_by("updated_at")[:limit]
    )


def compaction_backstop(*, limit: int = 100) -> dict[str, list[str]]:
    """Pick up what the on-commit path missed. Returns the compaction ids it (re)enqueued:

    - `stale`: queued compactions whose task should have run a while ago (the enqueue was
      lost: a crash between commit and enqueue, a broker outage), and running ones whose
      worker died (older than the task time limit), put back to queued;
    - `auto`: threads over their threshold with no compaction pending (a settle whose
      decision waited for queued steering messages, or a lost decision)."""
    from tasks.tasks import compaction_run_task

    now = timezone.now()
    stale_running = Compaction.objects.filter(
        status=CompactionStatus.RUNNING,
        started_at__lt=now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT) - BACKSTOP_GRACE,
    ).values_list("pk", "started_at")[:limit]
    stale = []
    for pk, started_at in list(stale_running):
        # Conditional on the claim we saw, so a run that is alive after all keeps its row.
        if Compaction.objects.filter(
            pk=pk, status=CompactionStatus.RUNNING, started_at=started_at
        ).update(status=CompactionStatus.QUEUED, retry_at=None):
            stale.append(pk)
    stale += list(
        Compaction.objects.filter(status=CompactionStatus.QUEUED)
        .filter(
            Q(retry_at__lte=now - BACKSTOP_GRACE)
            | Q(retry_at__isnull=True, created_at__lte=now - BACKSTOP_GRACE)
        )
        .exclude(pk__in=stale)
        .values_list("pk", flat=True)[:limit]
    )
    for pk in stale:  # the claim (queued → running) keeps a duplicate from running twice
        compaction_run_task.delay(pk)

    auto = []
    for thread in _due_threads(now, limit):
        if thread_is_generating(thread_id=thread.pk):
            continue
        compaction = _create(
            thread,
            trigger=CompactionTrigger.AUTO,
            keep_last=thread.compaction_keep_last,
            context_tokens=turn_context_tokens(thread),
            threshold=compaction_threshold(thread),
            source="backstop",
        )
        if compaction is not None:
            auto.append(compaction.pk)
    return {"stale": stale, "auto": auto}
