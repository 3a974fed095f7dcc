"""Reads: threads, messages and events, always within one tenant."""

from __future__ import annotations

import json
from typing import Any

from django.db.models import Q, QuerySet

from common.errors import InvalidInput
from threads.models import Event, Message, Thread

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
        match = Q(**{f"metadata__{key}": value})
        try:
            decoded = json.loads(value)
        except ValueError:
            decoded = None
        if decoded is not None and not isinstance(decoded, str | dict | list):
            match |= Q(**{f"metadata__{key}": decoded})
        condition &= match
    return condition


def messages_page(
    *, thread: Thread, after_seq: int, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Up to `limit` messages after `after_seq`, in seq order, plus the next cursor.

    Rows are read as tuples and shaped here: a DRF serializer per message costs more than
    the query for a 1,000-message page."""
    rows = list(
        Message.objects.filter(thread_id=thread.pk, seq__gt=after_seq)
        .order_by("seq")
        .values_list(
            "message_id", "seq", "role", "content", "metadata", "token_estimate", "created_at"
        )[: limit + 1]
    )
    more = len(rows) > limit
    rows = rows[:limit]
    page = [
        {
            "id": message_id,
            "seq": seq,
            "role": role,
            "content": content,
            "metadata": metadata,
            "token_estimate": tokens,
            "created_at": created_at.isoformat().replace("+00:00", "Z"),
        }
        for message_id, seq, role, content, metadata, tokens, created_at in rows
    ]
    return page, (rows[-1][1] if more else None)


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
