"""The two writes of a compaction run: the originals archived to cold storage (written and
read back before anything is deleted), then the history rewritten in one short transaction
under the thread's row lock, only if the summarized messages are still the ones read."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Sum
from django.utils import timezone

from common.errors import ThreadArchived
from common.ids import new_id
from threads import events, locks
from threads.conversation.prompt import SUMMARY_PREFIX
from threads.events import event_record
from threads.message_format import estimate_tokens
from threads.models import (
    CompactedMessageId,
    Compaction,
    CompactionStatus,
    Message,
    Role,
    Thread,
    ThreadStatus,
    Tier,
)
from threads.storage import cold, hotcache

logger = logging.getLogger(__name__)


class HistoryMoved(Exception):
    """The summarized messages are no longer the ones read: the run starts over."""


class ClaimLost(Exception):
    """The compaction is no longer this run's (its lease expired and another run took it)."""


@dataclass
class HistoryRead:
    """What a run read: every message up to the cut (`older`), and of those the ones the
    summary replaces and the ones it keeps (prompt.protected: leading system, pinned)."""

    history_version: int
    older: list[dict[str, Any]]
    summarized: list[dict[str, Any]]
    leading: list[dict[str, Any]]
    pinned: list[dict[str, Any]]

    @property
    def cut_seq(self) -> int:
        return self.older[-1]["seq"]


def compaction_event(compaction: Compaction, kind: str, **payload: Any) -> None:
    event_record(
        tenant_id=compaction.thread.tenant_id,
        thread_id=compaction.thread_id,
        kind=kind,
        payload={"compaction": compaction.pk, **payload},
    )


def archive_key(*, thread_id: str, compaction_id: str) -> str:
    return f"{settings.COLD_PREFIX}/compactions/{thread_id}/{compaction_id}.json.gz"


def archive_body(thread: Thread, compaction: Compaction, older: list[dict[str, Any]]) -> bytes:
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


def archive_write(key: str, body: bytes) -> None:
    """Write, then read back: the originals must be in the store before they are deleted."""
    cold.put_verified(key, body)


def archive_discard(key: str) -> None:
    try:
        cold.delete(key)
    except cold.ColdStorageUnavailable:
        logger.warning("could not delete the unused compaction archive %s", key)


def _record_compacted_ids(thread_id: str, *, seqs: list[int], compaction_id: str) -> None:
    """Record the ids and seqs of the messages about to be summarized away (`seqs`) as
    CompactedMessageId rows: one INSERT … SELECT from the rows themselves (the ORM has
    none; cf. services._copy_messages), inside the commit's transaction and row lock, so an
    append sees either the message or its id, never neither. The ids are disjoint from those
    already recorded; DO NOTHING only keeps an inconsistency from failing the compaction."""
    qn = connection.ops.quote_name
    ids, messages = CompactedMessageId._meta, Message._meta

    def col(meta, name: str) -> str:
        return qn(meta.get_field(name).column)

    marks = ", ".join(["%s"] * len(seqs))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(ids.db_table)} "
            f"({col(ids, 'thread')}, {col(ids, 'message_id')}, {col(ids, 'seq')}, "
            f"{col(ids, 'compaction')}) "
            f"SELECT {col(messages, 'thread')}, {col(messages, 'message_id')}, "
            f"{col(messages, 'seq')}, %s FROM {qn(messages.db_table)} "
            f"WHERE {col(messages, 'thread')} = %s AND {col(messages, 'seq')} IN ({marks}) "
            "ON CONFLICT DO NOTHING",
            [compaction_id, thread_id, *seqs],
        )


def rewrite_commit(
    compaction: Compaction,
    read: HistoryRead,
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
            raise HistoryMoved  # flushed meanwhile: the rows are in the cold store
        if locked.history_version != read.history_version:
            # Something wrote since the read. Appends are fine (they land after the cut
            # and are kept below); anything that touched the summarized range is not.
            # Seqs are never reused and rows never edited, so the same seqs are the same
            # messages.
            summarized = Message.objects.filter(thread_id=thread.pk, seq__lte=read.cut_seq)
            if list(summarized.order_by("seq").values_list("seq", flat=True)) != [
                m["seq"] for m in older
            ]:
                raise HistoryMoved

        kept = Message.objects.filter(thread_id=thread.pk, seq__gt=read.cut_seq)
        kept_stats = kept.aggregate(count=Count("pk"), tokens=Sum("token_estimate"))
        kept_count, kept_tokens = kept_stats["count"], kept_stats["tokens"] or 0
        summarized_seqs = [m["seq"] for m in read.summarized]
        # Their ids stay known to appends (invariant 2) before the rows go.
        _record_compacted_ids(thread.pk, seqs=summarized_seqs, compaction_id=compaction.pk)
        Message.objects.filter(thread_id=thread.pk, seq__in=summarized_seqs).delete()

        # The new order: the leading system messages, the summary, the pinned messages, the
        # kept ones. New seqs continue after last_seq (never reused, as in
        # messages_replace), so no shifting UPDATE collides with the unique (thread, seq).
        # (The kept rows move first: `kept` is "seq > cut_seq", which the moved leading and
        # pinned rows would match too.)
        base = locked.last_seq + 1
        summary_seq = base + len(read.leading)
        offset = summary_seq + 1 + len(read.pinned) - (read.cut_seq + 1)
        kept.update(seq=F("seq") + offset)
        moved = [(m, base + i) for i, m in enumerate(read.leading)]
        moved += [(m, summary_seq + 1 + i) for i, m in enumerate(read.pinned)]
        for message, seq in moved:
            Message.objects.filter(thread_id=thread.pk, seq=message["seq"]).update(seq=seq)
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
                "messages_summarized": len(read.summarized),
                "archive_key": key,
            },
            token_estimate=summary_tokens,
            created_at=now,
        )
        protected = read.leading + read.pinned
        protected_tokens = sum(m["token_estimate"] for m in protected)
        tokens_before = sum(m["token_estimate"] for m in read.older) + kept_tokens
        tokens_after = summary_tokens + protected_tokens + kept_tokens
        kept_count += len(protected)
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
        # Fenced by the run's claim: a run whose lease expired and was taken over rolls back.
        succeeded = Compaction.objects.filter(
            pk=compaction.pk, status=CompactionStatus.RUNNING, attempts=compaction.attempts
        ).update(
            status=CompactionStatus.SUCCEEDED,
            lease_expires_at=None,
            error="",
            messages_summarized=len(read.summarized),
            messages_kept=kept_count,
            tokens_before=tokens_before,
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
        if not succeeded:
            raise ClaimLost
        compaction_event(
            compaction,
            events.THREAD_COMPACTED,
            trigger=compaction.trigger,
            messages_summarized=len(read.summarized),
            messages_kept=kept_count,
            tokens_before=tokens_before,
            tokens_after=tokens_after,
            archive_key=key,
        )
        hotcache.on_commit_drop(thread_id=thread.pk)
