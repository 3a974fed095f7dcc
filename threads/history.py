"""Writes of a thread's message history: append (idempotent per id), truncate, replace.

Seqs are assigned under the thread's row lock, so they stay contiguous and are never
reused; every write runs on a hot thread (tiers.on_hot_thread hydrates a cold one first)
and tells the hot cache what changed once it has committed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from common.errors import InvalidInput, PayloadTooLarge
from common.ids import new_id
from threads import events
from threads.events import thread_event
from threads.message_format import estimate_tokens
from threads.models import CompactedMessageId, Message, Thread
from threads.storage import hotcache
from threads.storage.tiers import lock_hot, on_hot_thread


@dataclass
class MessageIn:
    id: str
    role: str
    content: Any
    metadata: dict[str, Any]
    token_estimate: int = 0
    client_id: bool = True

    def row(self, *, thread_id: str, seq: int, created_at) -> Message:
        return Message(
            thread_id=thread_id,
            message_id=self.id,
            seq=seq,
            role=self.role,
            content=self.content,
            metadata=self.metadata,
            token_estimate=self.token_estimate,
            created_at=created_at,
        )


@dataclass
class AppendResult:
    appended: int = 0
    duplicates: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    last_seq: int = 0


def _prepare(messages: list[dict[str, Any]]) -> list[MessageIn]:
    """Give every message an id and a token estimate, and enforce MAX_MESSAGE_BYTES."""
    limit = settings.MAX_MESSAGE_BYTES
    prepared = []
    for index, raw in enumerate(messages):
        size = len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode())
        if size > limit:
            raise PayloadTooLarge(
                f"Message {index} is {size} bytes; the limit is {limit}.",
                index=index,
                bytes=size,
                limit=limit,
            )
        client_id = raw.get("id")
        prepared.append(
            MessageIn(
                id=client_id or new_id("msg"),
                role=raw["role"],
                content=raw["content"],
                metadata=raw.get("metadata") or {},
                token_estimate=estimate_tokens(raw["content"]),
                client_id=bool(client_id),
            )
        )
    return prepared


def _known_ids(thread_id: str, ids: list[str]) -> dict[str, int]:
    """{id: seq} of those of `ids` the thread already has: its live messages and the ones a
    compaction summarized away (which answer with the seq they had). One round trip, a
    UNION ALL (the two sets are disjoint); read into a dict, so no ORDER BY."""
    live = (
        Message.objects.filter(thread_id=thread_id, message_id__in=ids)
        .order_by()
        .values_list("message_id", "seq")
    )
    compacted = CompactedMessageId.objects.filter(
        thread_id=thread_id, message_id__in=ids
    ).values_list("message_id", "seq")
    return dict(live.union(compacted, all=True))


# What an append reads under the lock: not metadata or state, which can be large.
_APPEND_COLUMNS = ("tenant_id", "status", "last_seq", "history_version", "message_count")


@on_hot_thread
def messages_append(*, thread: Thread, messages: list[dict[str, Any]]) -> AppendResult:
    """Append a batch, idempotent per message id.

    Seqs are assigned under the thread's row lock, so concurrent appends serialize per
    thread and seqs stay contiguous; the duplicate check runs under the same lock, so two
    clients retrying the same id store it once — also an id a compaction summarized away,
    which answers with the seq it had. A 2xx means the rows are committed.
    """
    prepared = _prepare(messages)
    result = AppendResult()
    with transaction.atomic():
        locked = lock_hot(thread, *_APPEND_COLUMNS)
        locked.require_open()
        client_ids = [m.id for m in prepared if m.client_id]
        known = _known_ids(thread.pk, client_ids) if client_ids else {}
        seq = locked.last_seq
        rows, tokens, now = [], 0, timezone.now()
        for m in prepared:
            if m.id in known:
                result.duplicates += 1
                result.messages.append({"id": m.id, "seq": known[m.id]})
                continue
            seq += 1
            known[m.id] = seq
            tokens += m.token_estimate
            rows.append(m.row(thread_id=thread.pk, seq=seq, created_at=now))
            result.messages.append({"id": m.id, "seq": seq})
        if rows:
            Message.objects.bulk_create(rows)
            Thread.objects.filter(pk=thread.pk).update(
                last_seq=seq,
                message_count=F("message_count") + len(rows),
                token_estimate=F("token_estimate") + tokens,
                history_version=F("history_version") + 1,
                updated_at=now,
                last_activity_at=now,
            )
            hotcache.on_commit_append(
                thread_id=thread.pk,
                old_version=locked.history_version,
                new_version=locked.history_version + 1,
                members=hotcache.members_of(rows),
            )
        result.appended = len(rows)
        result.last_seq = seq
    return result


@on_hot_thread
def messages_truncate(*, thread: Thread, from_id: str) -> int:
    """Remove the message `from_id` and every later one; returns how many were removed.
    Ids compacted away stay known (a truncation only ever removes live messages)."""
    with transaction.atomic():
        locked = lock_hot(thread)
        locked.require_open()
        start = (
            Message.objects.filter(thread_id=thread.pk, message_id=from_id)
            .values_list("seq", flat=True)
            .first()
        )
        if start is None:
            return 0
        doomed = Message.objects.filter(thread_id=thread.pk, seq__gte=start)
        tokens = doomed.aggregate(total=Sum("token_estimate"))["total"] or 0
        removed, _ = doomed.delete()
        Thread.objects.filter(pk=thread.pk).update(
            message_count=F("message_count") - removed,
            token_estimate=F("token_estimate") - tokens,
            history_version=F("history_version") + 1,
            updated_at=timezone.now(),
            last_activity_at=timezone.now(),
        )
        hotcache.on_commit_truncate(
            thread_id=thread.pk,
            old_version=locked.history_version,
            new_version=locked.history_version + 1,
            from_seq=start,
        )
        thread_event(locked, events.THREAD_HISTORY_TRUNCATED, from_id=from_id, removed=removed)
    thread.refresh_from_db()
    return removed


@on_hot_thread
def messages_replace(*, thread: Thread, messages: list[dict[str, Any]]) -> AppendResult:
    """Replace the whole history. New seqs continue after the old last_seq (never reused).

    A replacement resets the history's identity: the ids of the messages it removes are
    forgotten (a later append of one is new), and so are the ids earlier compactions
    summarized away — they were part of the same history, and keeping them would make an
    append of an id the client just discarded a silent duplicate."""
    prepared = _prepare(messages)
    ids = [m.id for m in prepared]
    if len(set(ids)) != len(ids):
        raise InvalidInput("Message ids must be unique within a replacement.", code="duplicate_id")
    result = AppendResult()
    with transaction.atomic():
        locked = lock_hot(thread)
        locked.require_open()
        removed, _ = Message.objects.filter(thread_id=thread.pk).delete()
        CompactedMessageId.objects.filter(thread_id=thread.pk).delete()
        seq, now, rows = locked.last_seq, timezone.now(), []
        for m in prepared:
            seq += 1
            rows.append(m.row(thread_id=thread.pk, seq=seq, created_at=now))
            result.messages.append({"id": m.id, "seq": seq})
        Message.objects.bulk_create(rows, batch_size=500)
        Thread.objects.filter(pk=thread.pk).update(
            last_seq=seq,
            message_count=len(rows),
            token_estimate=sum(m.token_estimate for m in prepared),
            history_version=F("history_version") + 1,
            updated_at=now,
            last_activity_at=now,
        )
        hotcache.on_commit_rebuild(
            thread_id=thread.pk,
            history_version=locked.history_version + 1,
            members=hotcache.members_of(rows),
            state=locked.state,
        )
        thread_event(locked, events.THREAD_HISTORY_REPLACED, removed=removed, messages=len(rows))
        result.appended, result.last_seq = len(rows), seq
    return result
