"""History pages through the tiers: hydrate a cold thread, serve from the Redis cache when
it holds the thread's history_version, else one page from the database (and ask for the
cache to be filled off the request path)."""

from __future__ import annotations

import functools
import json
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, models

from common import metrics
from common.errors import NotFound, ThreadBusy
from threads.message_format import BYTES_PER_TOKEN, message_json_bytes
from threads.models import MESSAGE_COLUMNS, Message, Thread, Tier
from threads.storage import fill, hotcache
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

    Served from the Redis cache when it holds the row's history_version; otherwise the one
    page from the database (never the whole history: a miss costs about a page), and the
    cache is filled off the request path (threads.storage.fill, a task).

    A page holds at most PAGE_MAX_BYTES of estimated message size (at least one message):
    the cursor then points after the last message it holds.

    No transaction spans the thread row and the message query, so the row is checked again
    after the messages are read (a seqlock): if a flush happened in between (tier or
    last_flushed_at changed) what was read may be partial — hydrate and read again."""
    for _ in range(3):
        thread_ensure_hot(thread=thread)
        cached = hotcache.page(thread=thread, after_seq=after_seq, limit=limit)
        metrics.cache_read(hit=cached is not None)
        if cached is not None:
            return cached
        served = _page_from_database(thread, after_seq, limit)
        if served is not None:
            fill.request_fill(thread=thread)
            return served
        thread.refresh_from_db()
    raise ThreadBusy("The thread was flushed repeatedly while being read; retry.")


@functools.cache
def _page_sql(vendor: str) -> str:
    # Running sums of token estimates bound the page by size inside the database: rows past
    # the bound are neither shipped nor detoasted. `before` is the size ahead of a row; the
    # outer WHERE keeps the rows that fit and the first one that does not (so the caller
    # knows there is more).
    qn = connection.ops.quote_name
    meta = Message._meta
    columns = ", ".join(qn(meta.get_field(name).column) for name in MESSAGE_COLUMNS)
    tokens, seq = qn(meta.get_field("token_estimate").column), qn(meta.get_field("seq").column)
    # On PostgreSQL the database writes each message's JSON (_message_json_sql) and the
    # worker only joins the texts: parsing two JSON columns and a timestamp per row and
    # writing the JSON again was most of a database page's time. Elsewhere: the columns.
    # The row after the page (there only to tell that there is more) and a row past the
    # size bound are not rendered: with megabyte messages, rendering them was half the cost.
    shown = (
        f"CASE WHEN rn <= %s AND before < %s THEN {_message_json_sql()} END, {seq}"
        if vendor == "postgresql"
        else columns
    )
    return (
        f"SELECT {shown}, before FROM (SELECT {columns}, ROW_NUMBER() OVER w AS rn, "
        f"SUM({tokens}) OVER w - {tokens} AS before, LAG({tokens}, 1, 0) OVER w AS previous "
        f"FROM {qn(meta.db_table)} WHERE {qn(meta.get_field('thread').column)} = %s "
        f"AND {seq} > %s WINDOW w AS (ORDER BY {seq}) ORDER BY {seq} LIMIT %s) page "
        f"WHERE before - previous < %s ORDER BY {seq}"
    )


def _message_json_sql() -> str:
    """A message row as the API's JSON object, written by PostgreSQL: the keys of
    message_format.message_dict in the same (sorted) order, created_at in Python's
    isoformat with `Z` (microseconds shown unless zero). Equal as JSON to
    message_json_bytes; nested JSON is PostgreSQL's rendering of the jsonb (with spaces)."""
    qn = connection.ops.quote_name
    meta = Message._meta

    def col(name: str) -> str:
        return qn(meta.get_field(name).column)

    # One to_char with the microseconds, dropped when they are zero (as isoformat does):
    # cheaper per row than a second to_char behind a CASE.
    utc = f"({col('created_at')} AT TIME ZONE 'UTC')"
    created = f"replace(to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '.000000Z', 'Z')"
    pairs = {
        "content": col("content"),
        "created_at": created,
        "id": col("message_id"),
        "metadata": col("metadata"),
        "role": col("role"),
        "seq": col("seq"),
        "token_estimate": col("token_estimate"),
    }
    return "json_build_object(" + ", ".join(f"'{k}', {v}" for k, v in pairs.items()) + ")::text"


def _page_from_database(
    thread: Thread, after_seq: int, limit: int
) -> tuple[list[bytes], int | None] | None:
    budget = settings.PAGE_MAX_BYTES // BYTES_PER_TOKEN
    with connection.cursor() as cursor:
        params = [thread.pk, after_seq, limit + 1, budget]
        if connection.vendor == "postgresql":
            params = [limit, budget, *params]  # the CASE of the select list comes first
        cursor.execute(_page_sql(connection.vendor), params)
        rows = cursor.fetchall()
    # A one-row slice by pk: first() would add an ORDER BY.
    recheck = list(Thread.objects.filter(pk=thread.pk).values_list("tier", "last_flushed_at")[:1])
    if not recheck:
        raise NotFound("Thread not found.")
    tier, flushed_at = recheck[0]
    if tier != Tier.HOT or flushed_at != thread.last_flushed_at:
        return None  # flushed meanwhile: the rows read may be partial
    page = [row for row in rows if row[-1] < budget][:limit]
    if connection.vendor == "postgresql":  # (json, seq, before): written by the database
        members = [row[0].encode() for row in page]
    else:
        decode = _row_decoder(connection.vendor)
        members = [message_json_bytes(*decode(row[:-1])) for row in page]
    more = len(rows) > len(page)
    return members, (page[-1][1] if more else None)


@functools.cache
def _row_decoder(vendor: str):
    """Raw cursor rows → Python values, as the ORM would give them: datetimes as the backend
    converts them, JSON columns (text from the driver) parsed with orjson."""
    meta = Message._meta
    columns = [meta.get_field(name).get_col(meta.db_table) for name in MESSAGE_COLUMNS]
    converters = [
        [_json_loads]
        if isinstance(col.output_field, models.JSONField)
        else [
            *connection.ops.get_db_converters(col),
            *col.output_field.get_db_converters(connection),
        ]
        for col in columns
    ]

    def decode(row: tuple) -> tuple:
        values = []
        for value, col, steps in zip(row, columns, converters, strict=True):
            for step in steps:
                value = step(value, col, connection)
            values.append(value)
        return tuple(values)

    return decode


def _converters(col: Any) -> list:
    if isinstance(col.output_field, models.JSONField):
        return [_json_loads]
    return [*connection.ops.get_db_converters(col), *col.output_field.get_db_converters(connection)]


def _json_loads(value: Any, expression: Any, connection: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value
