"""Reads only: metadata filters, events, histories from the database. No writes, no
hydration, no cache rebuilds (those are threads.storage's)."""

from __future__ import annotations

import json
import math
from typing import Any

from django.db.models import Q, QuerySet

from common.api.parsers import too_deep, unstorable_string
from common.errors import InvalidInput, NotFound
from threads.models import MESSAGE_COLUMNS, Event, Message

METADATA_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def metadata_filter(params: dict[str, str], *, vendor: str = "postgresql") -> Q:
    """`metadata.<key>=<value>` → the key equals the value, as a string or as JSON.

    `?metadata.priority=1` matches both {"priority": "1"} and {"priority": 1}. On PostgreSQL
    each is a containment (`metadata @> {"priority": 1}`), served by the GIN index
    thread_metadata_gin; elsewhere a key lookup (`metadata -> 'priority'`)."""
    condition = Q()
    if "metadata" in params:
        condition &= metadata_contains(params["metadata"], vendor=vendor)
    for name, value in params.items():
        if not name.startswith("metadata."):
            continue
        key = name[len("metadata.") :]
        if not key or len(key) > 64 or "__" in key or not set(key) <= METADATA_KEY_CHARS:
            raise InvalidInput(
                "Metadata filter keys are 1–64 letters, digits, '_', '-' or '.'.",
                parameter=name,
            )
        candidates: list[Any] = [value]
        try:
            decoded = json.loads(value)
        except ValueError:
            pass
        else:
            # A number, true/false or null; not NaN or ±Infinity (json.loads reads "NaN",
            # "Infinity" and "1e400" as floats jsonb cannot hold: a database error, not a
            # match). Such a value can only be stored as a string, which the first covers.
            if not isinstance(decoded, str | dict | list) and not (
                isinstance(decoded, float) and not math.isfinite(decoded)
            ):
                candidates.append(decoded)
        match = Q()
        for candidate in candidates:
            match |= _metadata_equals(key, candidate, vendor)
        condition &= match
    return condition


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"{literal} is out of range")
    return value


def metadata_contains(raw: str, *, vendor: str = "postgresql") -> Q:
    """`?metadata=<JSON object>` → the thread's metadata contains it (`metadata @> …`, served
    by the GIN index thread_metadata_gin). Elsewhere (SQLite has no containment) each
    top-level key must equal its value."""
    try:
        document = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite)
    except (ValueError, RecursionError):
        raise InvalidInput("metadata must be a JSON object.", parameter="metadata") from None
    if not isinstance(document, dict):
        raise InvalidInput("metadata must be a JSON object.", parameter="metadata")
    if too_deep(document) or unstorable_string(document) is not None:  # jsonb refuses those
        raise InvalidInput(
            "metadata must not nest deeper than 100 levels or hold NUL or lone surrogates.",
            parameter="metadata",
        )
    if vendor == "postgresql":
        return Q(metadata__contains=document)
    condition = Q()
    for key, value in document.items():
        condition &= Q(metadata__has_key=key) & Q(**{f"metadata__{key}__exact": value})
    return condition


def _metadata_equals(key: str, value: Any, vendor: str) -> Q:
    if vendor == "postgresql":
        return Q(metadata__contains={key: value})
    # The explicit __exact keeps a key named like a lookup (isnull, contains, regex, …) a
    # key: without it `metadata__isnull` would be that lookup on the whole column.
    return Q(**{f"metadata__{key}__exact": value})


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
        # 404, not 400: the request is well formed (any id is), the event it names is missing.
        raise NotFound("No such event to list after.", parameter="after")
    return queryset.filter(id__gt=position)


def history_read(*, thread_id: str, up_to_seq: int | None = None) -> list[dict[str, Any]]:
    """The thread's messages in seq order, as dicts (optionally only seq ≤ up_to_seq)."""
    query = Message.objects.filter(thread_id=thread_id)
    if up_to_seq is not None:
        query = query.filter(seq__lte=up_to_seq)
    return list(query.order_by("seq").values(*MESSAGE_COLUMNS))
