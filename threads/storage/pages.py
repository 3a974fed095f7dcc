"""History pages through the tiers: hydrate a cold thread, serve from the Redis cache when
it holds the thread's history_version, else one page from the database (and ask for the
cache to be filled off the request path)."""

from __future__ import annotations

import functools
import json
from typing import Any

import orjson
from django.conf import settings
from django.db import connection

from common import metrics
from common.errors import NotFound, ThreadBusy
from common.rows import row_decoder
from threads.message_format import BYTES_PER_TOKEN, message_fields, message_json_bytes
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

    def col(name: str) -> str:
        return qn(meta.get_field(name).column)

    columns = ", ".join(col(name) for name in MESSAGE_COLUMNS)
    tokens, seq = col("token_estimate"), col("seq")
    if vendor == "postgresql":
        # The two JSON columns come as PostgreSQL's text of the jsonb (Django's connection
        # loads jsonb as text) and are embedded in the message's JSON unparsed (_members);
        # only those of the page: the row after it (there only to tell that there is more)
        # and a row past the size bound are not detoasted — with megabyte messages that
        # was half the cost.
        # created_at comes in UTC without its zone: psycopg's own loader, where Django's
        # timestamptz loader (a Python load per value) took 6 ms per 1,000 rows.
        shown = "CASE WHEN rn <= %s AND before < %s THEN {0} END AS {0}"
        special = {
            "content": shown.format(col("content")),
            "metadata": shown.format(col("metadata")),
            "created_at": f"({col('created_at')} AT TIME ZONE 'UTC') AS {col('created_at')}",
        }
        selected = ", ".join(special.get(name, col(name)) for name in MESSAGE_COLUMNS)
    else:
        selected = columns
    page = (
        f"SELECT {selected}, before FROM (SELECT {columns}, ROW_NUMBER() OVER w AS rn, "
        f"SUM({tokens}) OVER w - {tokens} AS before, LAG({tokens}, 1, 0) OVER w AS previous "
        f"FROM {qn(meta.db_table)} WHERE {col('thread')} = %s "
        f"AND {seq} > %s WINDOW w AS (ORDER BY {seq}) ORDER BY {seq} LIMIT %s) page "
        f"WHERE before - previous < %s"
    )
    if vendor != "postgresql":
        return f"{page} ORDER BY {seq}"
    # The thread's tier and last flush in the same statement, so under the same snapshot as
    # the rows: if that snapshot shows the thread hot and not flushed since the caller loaded
    # it, every row of its history is in it (the check a second query made, one round trip
    # less). One row of NULL messages when the page is empty.
    thread_meta = Thread._meta
    tier, flushed = (qn(thread_meta.get_field(n).column) for n in ("tier", "last_flushed_at"))
    return (
        f"SELECT t.{tier}, t.{flushed}, p.* FROM (SELECT {tier}, {flushed} FROM "
        f"{qn(thread_meta.db_table)} WHERE {qn(thread_meta.pk.column)} = %s) t "
        f"LEFT JOIN LATERAL ({page}) p ON true ORDER BY p.{seq}"
    )


def _members(rows: list[tuple]) -> list[bytes]:
    """PostgreSQL page rows (MESSAGE_COLUMNS, the JSON columns as jsonb text) as the API's
    JSON: written by message_json_bytes with the jsonb text embedded as it is, so equal as
    JSON to what the cache holds (nested JSON keeps PostgreSQL's rendering, with spaces).
    PostgreSQL's own json_build_object and to_char per row took longer than this."""
    fragment = orjson.Fragment
    return [
        message_json_bytes(mid, seq, role, fragment(content), fragment(metadata), tokens, at)
        for mid, seq, role, content, metadata, tokens, at in rows
    ]


def _page_from_database(
    thread: Thread, after_seq: int, limit: int
) -> tuple[list[bytes], int | None] | None:
    budget = settings.PAGE_MAX_BYTES // BYTES_PER_TOKEN
    params = [thread.pk, after_seq, limit + 1, budget]
    postgresql = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        if postgresql:  # the thread row, then the CASEs of the select list, then the page
            cursor.execute(
                _page_sql("postgresql"), [thread.pk, limit, budget, limit, budget, *params]
            )
            rows = cursor.fetchall()
            head = rows[0][:2] if rows else None
            rows = [row[2:] for row in rows if row[3] is not None]  # (seq: not the empty row)
        else:
            cursor.execute(_page_sql(connection.vendor), params)
            rows = cursor.fetchall()
            # After the rows, by pk (a one-row slice: first() would add an ORDER BY).
            heads = Thread.objects.filter(pk=thread.pk).values_list("tier", "last_flushed_at")
            head = next(iter(heads[:1]), None)
    if head is None:
        raise NotFound("Thread not found.")
    tier, flushed_at = head
    if tier != Tier.HOT or flushed_at != thread.last_flushed_at:
        return None  # flushed meanwhile: the rows read may be partial
    page = [row for row in rows if row[-1] < budget][:limit]
    if postgresql:
        members = _members([row[:-1] for row in page])
    else:
        decode = row_decoder(message_fields())
        members = [message_json_bytes(*decode(row[:-1])) for row in page]
    more = len(rows) > len(page)
    return members, (page[-1][1] if more else None)
