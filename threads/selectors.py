"""Reads: threads, messages and events, always within one tenant."""

from __future__ import annotations

import bisect
import json
import math
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from common.errors import InvalidInput, NotFound, ThreadBusy
from threads.models import MESSAGE_COLUMNS, Event, Message, Thread, Tier
from threads.storage import hotcache

METADATA_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def metadata_filter(params: dict[str, str]) -> Q:
    """`metadata.<key>=<value>` → the key equals the value, as a string or as JSON.

    `?metadata.priority=1` matches both {"priority": "1"} and {"priority": 1}."""
    condition = Q()
    for name, value in params.items():
        if not name.startswith("metadata."):
            continue
        key = name[len("metadata.") :]
        if not key or len(key) > 64 or "__" in key or not set(key) <= METADATA_KEY_CHARS:
            raise InvalidInput(
                "Metadata filter keys are 1–64 letters, digits, '_', '-' or '.'.",
                parameter=name,
            )
        # The explicit __exact keeps a key named like a lookup (isnull, contains, regex, …)
        # a key: without it `metadata__isnull` would be that lookup on the whole column.
        lookup = f"metadata__{key}__exact"
        match = Q(**{lookup: value})
        try:
            decoded = json.loads(value)
        except ValueError:
            pass
        else:
            # A number, true/false or null; not NaN or ±Infinity (json.loads reads "NaN",
            # "Infinity" and "1e400" as floats jsonb cannot hold: a database error, not a
            # match). Such a value can only be stored as a string, which `match` covers.
            if not isinstance(decoded, str | dict | list) and not (
                isinstance(decoded, float) and not math.isfinite(decoded)
            ):
                match |= Q(**{lookup: decoded})
        condition &= match
    return condition


def message_dict(
    message_id: str,
    seq: int,
    role: str,
    content: Any,
    metadata: dict[str, Any],
    token_estimate: int,
    created_at: datetime,
) -> dict[str, Any]:
    """A message as the API shows it, from a row of MESSAGE_COLUMNS."""
    return {
        "id": message_id,
        "seq": seq,
        "role": role,
        "content": content,
        "metadata": metadata,
        "token_estimate": token_estimate,
        "created_at": created_at.isoformat().replace("+00:00", "Z"),
    }


def message_json(*row: Any) -> str:
    """A message as the API's JSON, from a row of MESSAGE_COLUMNS: the form the Redis cache
    holds and cold snapshots store. Canonical (sorted keys, compact), so the same message
    gives the same bytes whichever path produced it."""
    return json.dumps(message_dict(*row), separators=(",", ":"), sort_keys=True, ensure_ascii=False)


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
    from threads.storage.tiers import thread_ensure_hot

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


def events_after(
    *, queryset: QuerySet[Event], tenant_id: str, after: str | None
) -> QuerySet[Event]:
    """Events after the tenant's event `after` (exclusive); an unknown id is bad input."""
    if not after:
        return queryset
    position = (
        Event.objects.filter(tenant_id=tenant_id, public_id=after)
        .values_list("id", flat=True)
        .first()
    )
    if position is None:
        raise InvalidInput("Unknown event id in 'after'.", parameter="after")
    return queryset.filter(id__gt=position)


def history_read(*, thread_id: str, up_to_seq: int | None = None) -> list[dict[str, Any]]:
    """The thread's messages in seq order, as dicts (optionally only seq ≤ up_to_seq)."""
    query = Message.objects.filter(thread_id=thread_id)
    if up_to_seq is not None:
        query = query.filter(seq__lte=up_to_seq)
    return list(query.order_by("seq").values(*MESSAGE_COLUMNS))
