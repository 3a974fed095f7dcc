"""Cold objects shared with other tools: a flush never silently replaces an object that
someone else wrote.

zeitlich (and anything speaking its v1 snapshot) reads and writes the same key as
Threadline (`<COLD_PREFIX>/messages/<thread id>.json.gz`). S3 has no lock, so Threadline
remembers the tag of the object it last wrote or read (ColdObject) and a flush writes only
on top of that tag:

- S3 with COLD_CONDITIONAL_WRITES: PutObject with `If-Match: <recorded ETag>` (or
  `If-None-Match: *` when it knows of no object) — the store settles the race atomically;
- otherwise (filesystem, S3-compatible stores without conditional writes): the object is
  read and its tag compared just before the write; a write landing in between is not seen.

A mismatch is 409 cold_object_changed and the thread stays hot with all its rows. An object
with no recorded tag (written before tags were kept) is taken as ours only when it is a
Threadline snapshot of this same thread with a valid checksum.
"""

from __future__ import annotations

import functools
from typing import Any

from django.db import connection
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from common.errors import DomainError
from threads.storage import cold
from threads.storage.models import ColdObject
from threads.storage.snapshot import messages_sha256


class ColdObjectChanged(DomainError):
    code = "cold_object_changed"
    message = (
        "The thread's cold object was written by another tool since Threadline last read or "
        "wrote it; nothing was overwritten. Import or hydrate its content first, or flush "
        "with ?overwrite=true to replace it."
    )


def recorded_tag_of_outer_thread(*, key: str) -> Subquery:
    """The tag recorded for `key` of the thread of an outer query (correlated on
    OuterRef("pk")): a flush reads it with the thread row, in one SELECT."""
    tags = ColdObject.objects.filter(thread_id=OuterRef("pk"), key=key).values("etag")[:1]
    return Subquery(tags)


def snapshot_write(
    *, thread_id: str, key: str, body: bytes, expected: str | None, overwrite: bool = False
) -> str:
    """Write a snapshot of `thread_id` at `key` on top of `expected`, the recorded tag (the
    caller read it with the thread row: recorded_tag_of_outer_thread); its new tag.
    When the object is not the recorded one, it is replaced only if there is nothing of
    anyone else's in it — it is gone, unreadable, or a Threadline snapshot of this very
    thread (written before tags were recorded, or by a flush that failed before recording)
    — or `overwrite` says the operator chose to drop the other writes. A v1 snapshot
    another tool wrote is refused: 409 cold_object_changed."""
    try:
        return cold.put_conditional(key, body, if_match=expected)
    except cold.ColdPreconditionFailed:
        pass
    try:
        current_body, current = cold.get_tagged(key)
    except cold.ColdObjectMissing:
        current_body, current = b"", None
    if current is None or overwrite or _nothing_foreign(thread_id, current_body):
        try:
            return cold.put_conditional(key, body, if_match=current)
        except cold.ColdPreconditionFailed:
            pass  # written again in between: someone else is active, refuse
    raise ColdObjectChanged(thread=thread_id, key=key, expected=expected, found=current)


def _nothing_foreign(thread_id: str, body: bytes) -> bool:
    try:
        data: Any = cold.gunzip_json(body)
    except ValueError:
        return True  # not a snapshot at all: nothing to keep
    if not isinstance(data, dict) or data.get("v") != 1:
        return True
    messages = data.get("messages")
    return (
        isinstance(messages, list)
        and data.get("thread_id") == thread_id
        and data.get("sha256") == messages_sha256(messages)
    )


def tag_record(*, thread_id: str, key: str, etag: str) -> None:
    """Remember the tag of the object this thread just wrote (a flush, once its write is
    verified) or read (a hydrate, in the transaction that restores the rows). One
    INSERT … ON CONFLICT DO UPDATE: update_or_create took a transaction, a SELECT … FOR
    UPDATE and a savepoint (six round trips, a tenth of a small flush's database time)."""
    with connection.cursor() as cursor:
        cursor.execute(_tag_upsert_sql(), [thread_id, key, etag, timezone.now()])


@functools.cache
def _tag_upsert_sql() -> str:
    qn = connection.ops.quote_name
    meta = ColdObject._meta
    names = ("thread", "key", "etag", "recorded_at")
    pk, *rest = (qn(meta.get_field(name).column) for name in names)
    return (
        f"INSERT INTO {qn(meta.db_table)} ({pk}, {', '.join(rest)}) VALUES (%s, %s, %s, %s) "
        f"ON CONFLICT ({pk}) DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in rest)
    )
