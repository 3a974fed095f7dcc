"""Writes of a thread's message history: append (idempotent per id), truncate, replace.

Seqs are assigned under the thread's row lock, so they stay contiguous and are never
reused; every write runs on a hot thread (tiers.on_hot_thread hydrates a cold one first)
and tells the hot cache what changed once it has committed."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, JSONField, Sum
from django.utils import timezone
from psycopg.types.json import Jsonb

from common.errors import InvalidInput, NotFound, PayloadTooLarge, ThreadArchived, ThreadClosed
from common.ids import new_id
from threads import events, locks
from threads.events import thread_event
from threads.message_format import estimate_tokens, json_bytes, message_fields
from threads.models import (
    MESSAGE_COLUMNS,
    CompactedMessageId,
    Lifecycle,
    Message,
    Thread,
    ThreadStatus,
    Tier,
)
from threads.storage import hotcache
from threads.storage.tiers import WentCold, lock_hot, on_hot_thread


@dataclass
class MessageIn:
    id: str
    role: str
    content: Any
    metadata: dict[str, Any]
    token_estimate: int = 0
    client_id: bool = True

    def values(self, *, seq: int, created_at) -> tuple:
        """The stored row's values, in MESSAGE_COLUMNS order."""
        return (
            self.id,
            seq,
            self.role,
            self.content,
            self.metadata,
            self.token_estimate,
            created_at,
        )

    def row(self, *, thread_id: str, seq: int, created_at) -> Message:
        values = self.values(seq=seq, created_at=created_at)
        return Message(thread_id=thread_id, **dict(zip(MESSAGE_COLUMNS, values, strict=True)))


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
        size = len(json_bytes(raw))  # bytes of the message as compact UTF-8 JSON
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


# --- Append: the hot path, as fixed SQL on one cursor -----------------------------------
# An append is the most frequent call of the API. Built through the ORM (a model instance
# per row, a query compiled per statement) it spent over half its CPU there; these four
# statements are built once per process from the models' own tables and columns.


@functools.cache
def _append_sql(vendor: str) -> dict[str, str]:
    qn = connection.ops.quote_name
    message, compacted, thread = Message._meta, CompactedMessageId._meta, Thread._meta

    def cols(meta, *names: str) -> str:
        return ", ".join(qn(meta.get_field(name).column) for name in names)

    def col(meta, name: str) -> str:
        return qn(meta.get_field(name).column)

    known = (
        f"SELECT {cols(message, 'message_id', 'seq')} FROM {qn(message.db_table)} "
        f"WHERE {col(message, 'thread')} = %s AND {col(message, 'message_id')} IN ({{ids}})"
        f" UNION ALL SELECT {cols(compacted, 'message_id', 'seq')} "
        f"FROM {qn(compacted.db_table)} WHERE {col(compacted, 'thread')} = %s "
        f"AND {col(compacted, 'message_id')} IN ({{ids}})"
    )
    insert = (
        f"INSERT INTO {qn(message.db_table)} ({cols(message, 'thread', *MESSAGE_COLUMNS)}) VALUES "
    )
    counters = {name: col(thread, name) for name in ("message_count", "token_estimate")}
    update = (
        f"UPDATE {qn(thread.db_table)} SET {col(thread, 'last_seq')} = %s, "
        + "".join(f"{c} = {c} + %s, " for c in counters.values())
        + f"{col(thread, 'history_version')} = {col(thread, 'history_version')} + 1, "
        f"{col(thread, 'updated_at')} = %s, {col(thread, 'last_activity_at')} = %s "
        f"WHERE {col(thread, 'id')} = %s"
    )
    return {"known": known, "insert": insert, "update": update}


# One row of the INSERT: thread, then MESSAGE_COLUMNS (as MessageIn.values gives them).
_ROW_PLACEHOLDERS = "(" + ", ".join(["%s"] * (1 + len(MESSAGE_COLUMNS))) + ")"
# What an append reads under the lock: not metadata or state, which can be large.
_APPEND_COLUMNS = ("status", "lifecycle", "tier", "last_seq", "history_version")


def _known_ids(cursor, sql: str, thread_id: str, ids: list[str]) -> dict[str, int]:
    """{id: seq} of those of `ids` the thread already has: its live messages and the ones a
    compaction summarized away (which answer with the seq they had). One round trip, a
    UNION ALL (the two sets are disjoint); read into a dict, so no ORDER BY."""
    cursor.execute(*_known_query(sql, thread_id, ids))
    return dict(cursor.fetchall())


def _known_query(sql: str, thread_id: str, ids: list[str]) -> tuple[str, list]:
    """The duplicate check for `ids` as SQL and parameters."""
    marks = ", ".join(["%s"] * len(ids))
    return sql.format(ids=marks), [thread_id, *ids, thread_id, *ids]


@functools.cache
def _adapters(vendor: str) -> tuple:
    """One callable per MESSAGE_COLUMNS value giving its parameter: the model field's own
    adaptation, except jsonb on PostgreSQL, written by orjson instead of json.dumps."""
    adapters = []
    for f in message_fields():
        if vendor == "postgresql" and isinstance(f, JSONField):
            adapters.append(functools.partial(Jsonb, dumps=json_bytes))
        else:
            adapters.append(functools.partial(f.get_db_prep_save, connection=connection))
    return tuple(adapters)


def _db_values(thread_id: str, values: tuple) -> list:
    """One row's parameters, adapted as the model's fields would (JSON, datetimes)."""
    adapters = _adapters(connection.vendor)
    return [thread_id, *(adapt(v) for adapt, v in zip(adapters, values, strict=True))]


@on_hot_thread
def messages_append(*, thread: Thread, messages: list[dict[str, Any]]) -> AppendResult:
    """Append a batch, idempotent per message id.

    Seqs are assigned under the thread's row lock, so concurrent appends serialize per
    thread and seqs stay contiguous; the duplicate check runs under the same lock, so two
    clients retrying the same id store it once — also an id a compaction summarized away,
    which answers with the seq it had. A 2xx means the rows are committed. An archived
    thread refuses (ThreadArchived), and so does a closed conversation (ThreadClosed).

    `thread` needs only its pk and tenant_id (the lock is tenant-filtered: another
    tenant's thread is a 404 here, as in the API).
    """
    prepared = _prepare(messages)
    pg = connection.vendor == "postgresql"
    if pg and not connection.in_atomic_block and connection.get_autocommit():
        return _append_pipelined(thread, prepared)
    sql = _append_sql(connection.vendor)
    with transaction.atomic():
        locked = locks.lock_thread_values(thread.pk, _APPEND_COLUMNS, tenant_id=thread.tenant_id)
        last_seq, history_version = _check_locked(thread, locked)
        with connection.cursor() as cursor:
            client_ids = _client_ids(prepared)
            known = _known_ids(cursor, sql["known"], thread.pk, client_ids) if client_ids else {}
            plan = _plan(thread.pk, prepared, known, last_seq)
            if plan.fresh:
                if pg:
                    cursor.execute(_write_sql(sql, plan), plan.params + plan.counters)
                else:
                    cursor.execute(_insert_sql(sql, plan), plan.params)
                    cursor.execute(sql["update"], plan.counters)
                _cache_append(thread.pk, history_version, plan)
    return plan.result


def _append_pipelined(thread: Thread, prepared: list[MessageIn]) -> AppendResult:
    """messages_append on PostgreSQL outside any transaction: the same statements under the
    same lock, in two round trips instead of five (libpq's pipeline mode).

    1. BEGIN, the tenant-filtered row lock and the duplicate check, sent together. The
       server runs them in order, and the check is its own statement, so under READ
       COMMITTED its snapshot is taken once the lock is held: it sees every append that
       committed before this one got the lock, as in messages_append's other path.
    2. The INSERT + counter UPDATE and the COMMIT, sent together: a failing write aborts the
       pipeline, so the COMMIT never runs and the transaction is rolled back.

    The transaction is opened with an explicit BEGIN on the connection, which Django keeps
    in autocommit outside atomic blocks: psycopg would otherwise wait for its own BEGIN
    before sending anything else. Any failure leaves the connection as it found it (the
    transaction rolled back, or the connection marked unusable for Django to close). It
    takes one lock (the thread's), so the lock order holds; the hot cache is written after
    the COMMIT, as the on-commit hook of the other path does."""
    sql = _append_sql("postgresql")
    client_ids = _client_ids(prepared)
    connection.ensure_connection()
    raw = connection.connection
    with connection.wrap_database_errors:
        try:
            with raw.pipeline(), connection.cursor() as lock, connection.cursor() as check:
                lock.execute("BEGIN")
                lock.execute(_lock_sql(), [thread.pk, thread.tenant_id])
                if client_ids:
                    check.execute(*_known_query(sql["known"], thread.pk, client_ids))
                locked = lock.fetchone()
                known = dict(check.fetchall()) if client_ids else {}
                last_seq, history_version = _check_locked(thread, locked)
                plan = _plan(thread.pk, prepared, known, last_seq)
                if plan.fresh:
                    lock.execute(_write_sql(sql, plan), plan.params + plan.counters)
                lock.execute("COMMIT")
        except BaseException:
            _abandon(raw)
            raise
    if plan.fresh:
        _cache_append(thread.pk, history_version, plan)
    return plan.result


def _abandon(raw) -> None:
    """Roll back what a failed pipelined append left open; a connection that cannot even do
    that is closed, so Django opens a new one for the next request."""
    try:
        if raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            raw.execute("ROLLBACK")
    except Exception:
        connection.close()


@functools.cache
def _lock_sql() -> str:
    return locks.thread_values_sql("postgresql", _APPEND_COLUMNS, by_tenant=True)


@dataclass
class _Plan:
    """What an append writes: its result, the new rows' values and the statements' params."""

    result: AppendResult
    fresh: list[tuple]
    params: list
    counters: list


def _client_ids(prepared: list[MessageIn]) -> list[str]:
    return [m.id for m in prepared if m.client_id]


def _check_locked(thread: Thread, locked: tuple | None) -> tuple[int, int]:
    """The locked row's last_seq and history_version, once the thread may take an append."""
    if locked is None:
        raise NotFound("Thread not found.")
    status, lifecycle, tier, last_seq, history_version = locked
    if tier != Tier.HOT:
        raise WentCold
    if status == ThreadStatus.ARCHIVED:
        raise ThreadArchived(thread=thread.pk)
    if lifecycle == Lifecycle.CLOSED:
        # The user closed the conversation: nothing is added until it is re-opened
        # (POST …/open, or a session's turn start, which makes it active again).
        raise ThreadClosed(thread=thread.pk)
    return last_seq, history_version


def _plan(thread_id: str, prepared: list[MessageIn], known: dict[str, int], last_seq: int) -> _Plan:
    """Seqs for the messages not `known` (and not repeated in the batch), after `last_seq`."""
    result = AppendResult()
    seq, now, fresh, params, tokens = last_seq, timezone.now(), [], [], 0
    for m in prepared:
        if m.id in known:
            result.duplicates += 1
            result.messages.append({"id": m.id, "seq": known[m.id]})
            continue
        seq += 1
        known[m.id] = seq
        tokens += m.token_estimate
        fresh.append(m.values(seq=seq, created_at=now))
        params += _db_values(thread_id, fresh[-1])
        result.messages.append({"id": m.id, "seq": seq})
    result.appended, result.last_seq = len(fresh), seq
    return _Plan(result, fresh, params, [seq, len(fresh), tokens, now, now, thread_id])


def _insert_sql(sql: dict[str, str], plan: _Plan) -> str:
    return sql["insert"] + ", ".join([_ROW_PLACEHOLDERS] * len(plan.fresh))


def _write_sql(sql: dict[str, str], plan: _Plan) -> str:
    """PostgreSQL: the INSERT as a data-modifying CTE of the counters' UPDATE, one
    statement (both run under the lock, on the same snapshot)."""
    return f"WITH inserted AS ({_insert_sql(sql, plan)}) {sql['update']}"


def _cache_append(thread_id: str, history_version: int, plan: _Plan) -> None:
    hotcache.on_commit_append(
        thread_id=thread_id,
        old_version=history_version,
        new_version=history_version + 1,
        members=hotcache.members_of(plan.fresh),
    )


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
        seq, now, rows, values = locked.last_seq, timezone.now(), [], []
        for m in prepared:
            seq += 1
            values.append(m.values(seq=seq, created_at=now))
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
            members=hotcache.members_of(values),
            state=locked.state,
        )
        thread_event(locked, events.THREAD_HISTORY_REPLACED, removed=removed, messages=len(rows))
        result.appended, result.last_seq = len(rows), seq
    return result
