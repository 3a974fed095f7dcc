"""thread_export: a thread as the export document (document.py), streamed.

A hot thread's messages are read from the database in batches of EXPORT_BATCH by seq, up to
the last_seq read at the start, with no transaction open while the client reads (the stream
may take minutes). If the history changed meanwhile (a write, a truncation, a flush, a
compaction), the stream stops before the checksum: the document is visibly incomplete,
never silently mixed. A cold thread is exported from its snapshot without hydrating it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from common.errors import ColdSnapshotCorrupt
from threads.conversation.compaction import compaction_originals
from threads.message_format import iso_datetime, message_json_bytes
from threads.models import (
    MESSAGE_COLUMNS,
    CompactedMessageId,
    Compaction,
    CompactionStatus,
    Message,
    Thread,
    Tier,
)
from threads.portability import document
from threads.storage import cold, snapshot

EXPORT_BATCH = 1000


class ExportInterrupted(Exception):
    """The thread's history changed during the export; the stream ends without a trailer."""


def _iso(value) -> str | None:
    return iso_datetime(value) if value is not None else None


def thread_fields(thread: Thread) -> dict[str, Any]:
    return {
        "id": thread.pk,
        "project": thread.project_id,
        "title": thread.title,
        "metadata": thread.metadata,
        "status": thread.status,
        "lifecycle": thread.lifecycle,
        "reasoning_effort": thread.reasoning_effort,
        "fork_of": thread.fork_of_id,
        "last_seq": thread.last_seq,
        "history_version": thread.history_version,
        "message_count": thread.message_count,
        "token_estimate": thread.token_estimate,
        "created_at": _iso(thread.created_at),
        "compaction": {
            "threshold_tokens": thread.compaction_threshold_tokens,
            "threshold_percent": thread.compaction_threshold_percent,
            "context_window": thread.compaction_context_window,
            "keep_last": thread.compaction_keep_last,
        },
    }


def _compactions(thread: Thread, *, originals: bool) -> list[dict[str, Any]]:
    records = []
    for c in Compaction.objects.filter(thread_id=thread.pk).order_by("created_at", "id"):
        record = {
            "id": c.pk,
            "trigger": c.trigger,
            "status": c.status,
            "keep_last": c.keep_last,
            "messages_summarized": c.messages_summarized,
            "messages_kept": c.messages_kept,
            "tokens_before": c.tokens_before,
            "tokens_after": c.tokens_after,
            "summary": c.summary,
            "summary_message_id": c.summary_message_id,
            "cut_seq": c.cut_seq,
            "provider": c.provider,
            "usage": c.usage,
            "created_at": _iso(c.created_at),
            "finished_at": _iso(c.finished_at),
        }
        if originals and c.status == CompactionStatus.SUCCEEDED and c.archive_key:
            record["originals"] = compaction_originals(compaction=c)
        records.append(record)
    return records


@dataclass
class Export:
    thread: Thread
    filename: str
    stream: Iterator[bytes]


def thread_export(*, thread: Thread, originals: bool = False) -> Export:
    """Everything the stream needs that can fail with a clear error (a missing or corrupt
    snapshot → 503, archives unreadable → 503/404) is read before the first byte is sent."""
    head = {
        "format": document.FORMAT,
        "version": document.VERSION,
        "exported_at": _iso(timezone.now()),
        "thread": thread_fields(thread),
        "state": thread.state,
        "compacted_ids": [
            {"id": message_id, "seq": seq, "compaction": compaction_id}
            for message_id, seq, compaction_id in CompactedMessageId.objects.filter(
                thread_id=thread.pk
            )
            .order_by("seq")
            .values_list("message_id", "seq", "compaction_id")
        ],
        "compactions": _compactions(thread, originals=originals),
    }
    if thread.tier == Tier.COLD:
        messages: Iterator[bytes] = _cold_messages(thread)
    else:
        messages = _hot_messages(thread)
    return Export(
        thread=thread,
        filename=f"{thread.pk}.threadline.json.gz",
        stream=document.document_stream(head, messages),
    )


def _cold_messages(thread: Thread) -> Iterator[bytes]:
    key = thread.cold_key or snapshot.snapshot_key(thread.pk)
    try:
        body = cold.get(key)
    except cold.ColdObjectMissing as exc:
        raise ColdSnapshotCorrupt(thread=thread.pk, key=key, reason="missing") from exc
    decoded = snapshot.snapshot_decode(body, thread=thread, key=key)
    del body
    return (message_json_bytes(*row) for row in decoded.rows)


def _hot_messages(thread: Thread) -> Iterator[bytes]:
    after, up_to, sent = 0, thread.last_seq, 0
    while True:
        rows = list(
            Message.objects.filter(thread_id=thread.pk, seq__gt=after, seq__lte=up_to)
            .order_by("seq")
            .values_list(*MESSAGE_COLUMNS)[:EXPORT_BATCH]
        )
        for row in rows:
            yield message_json_bytes(*row)
        sent += len(rows)
        if len(rows) < EXPORT_BATCH:
            break
        after = rows[-1][1]
    now = Thread.objects.filter(pk=thread.pk).values_list("tier", "history_version").first()
    if now != (Tier.HOT, thread.history_version) or sent != thread.message_count:
        raise ExportInterrupted(thread.pk)
