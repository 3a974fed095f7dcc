"""History pages through the tiers: hydrate a cold thread, serve from the Redis cache when
it holds the thread's history_version, else from the database (refilling the cache)."""

from __future__ import annotations

import bisect
import json
from typing import Any

from common.errors import NotFound, ThreadBusy
from threads.message_format import message_json
from threads.models import MESSAGE_COLUMNS, Message, Thread, Tier
from threads.storage import hotcache
from threads.storage.tiers import thread_ensure_hot


def messages_page(
    *, thread: Thread, after_seq: int, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Up to `limit` messages after `after_seq`, in seq order, plus the next cursor (as
    dicts; the API uses messages_page_json and never parses them)."""
    members, next_seq = messages_page_json(thread=thread, after_seq=after_seq, limit=limit)
    return [json.loads(member) for member in members], next_seq


def messages_page_json(
    *, thread: Thread, after_seq: int, limit: int
) -> tuple[list[bytes], int | None]:
    """Up to `limit` messages after `after_seq` as the API's JSON (one bytes per message, in
    seq order), plus the next cursor. A cold thread is hydrated first.

    Served from the Redis cache when it holds the row's history_version; otherwise from the
    database, rebuilding the cache with the whole history on the way (threads up to
    hotcache.max_messages(); longer ones are read page by page).

    No transaction spans the thread row and the message query, so the row is checked again
    after the messages are read (a seqlock): if a flush happened in between (tier or
    last_flushed_at changed) what was read may be partial — hydrate and read again; if only
    history_version moved, the page is a consistent newer state, served but not cached
    under the older version's label."""
    for _ in range(3):
        thread_ensure_hot(thread=thread)
        cached = hotcache.page(thread=thread, after_seq=after_seq, limit=limit)
        if cached is not None:
            return cached
        served = _page_from_database(thread, after_seq, limit)
        if served is not None:
            return served
        thread.refresh_from_db()
    raise ThreadBusy("The thread was flushed repeatedly while being read; retry.")


def _page_from_database(
    thread: Thread, after_seq: int, limit: int
) -> tuple[list[bytes], int | None] | None:
    whole = hotcache.available() and thread.message_count <= hotcache.max_messages()
    query = Message.objects.filter(thread_id=thread.pk).order_by("seq")
    if not whole:
        query = query.filter(seq__gt=after_seq)[: limit + 1]
    members = [(row[1], message_json(*row).encode()) for row in query.values_list(*MESSAGE_COLUMNS)]

    recheck = (
        Thread.objects.filter(pk=thread.pk)
        .values_list("tier", "last_flushed_at", "history_version")
        .first()
    )
    if recheck is None:
        raise NotFound("Thread not found.")
    tier, flushed_at, version = recheck
    if tier != Tier.HOT or flushed_at != thread.last_flushed_at:
        return None  # flushed meanwhile: the rows read may be partial
    if whole:
        if version == thread.history_version:
            hotcache.rebuild(
                thread_id=thread.pk, history_version=version, members=members, state=thread.state
            )
        start = bisect.bisect_right(members, after_seq, key=lambda member: member[0])
        members = members[start : start + limit + 1]
    more = len(members) > limit
    members = members[:limit]
    return [member for _, member in members], (members[-1][0] if more else None)
