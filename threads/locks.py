"""Every row lock of the project, one helper per table, taken in one order.

The order, for any transaction that locks more than one table:

    1. threads   (lock_thread, lock_open_thread, lock_due_threads)
    2. sessions  (lock_session, lock_locked_session), by pk
    3. queued messages (lock_queued_messages), oldest first

Taking a lock of a lower rank after one of a higher rank in the same transaction raises
LockOrderViolation (the helpers check it: a wrong order is a bug, found by any test that
runs the path, not a deadlock found in production).

All locks are FOR NO KEY UPDATE (`no_key=True`): no transaction here changes a primary key,
and a plain FOR UPDATE conflicts with the key-share locks that inserting a row with a
foreign key to the locked row takes at COMMIT (the deferred FK check). A spawn holding the
thread FOR UPDATE and a handoff inserting sessions of that thread deadlocked that way.

Session models live in sessions_app, above this room: they are looked up in the app
registry, so the lock order stays in one module without an upward import.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.db import connection, transaction

from common.errors import NotFound, ThreadArchived
from threads.models import QueuedMessage, QueuedMessageStatus, Thread, ThreadStatus

if TYPE_CHECKING:
    from django.db.models import Q, QuerySet

THREAD, SESSION, QUEUED_MESSAGE = 1, 2, 3
_NAMES = {THREAD: "thread", SESSION: "session", QUEUED_MESSAGE: "queued message"}


class LockOrderViolation(RuntimeError):
    """A lock was requested after one that must come after it (see the module docstring)."""


class _Held:
    """The highest rank locked in one atomic block. It rides in the connection's on-commit
    list, which Django clears on commit and rollback, so it never outlives its transaction;
    a savepoint rolled back takes its entry (and its locks) with it."""

    def __init__(self) -> None:
        self.rank = 0

    def __call__(self) -> None:  # nothing to do at commit
        return None


def _take(rank: int) -> None:
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("row locks are taken inside transaction.atomic()")
    active = set(connection.savepoint_ids)
    mine: _Held | None = None
    highest = 0
    for sids, func, _robust in connection.run_on_commit:
        if isinstance(func, _Held) and sids <= active:
            highest = max(highest, func.rank)
            if sids == active:
                mine = func
    if highest > rank:
        raise LockOrderViolation(
            f"{_NAMES[rank]} lock taken after a {_NAMES[highest]} lock in one transaction"
        )
    if mine is None:
        mine = _Held()
        connection.on_commit(mine)
    mine.rank = max(mine.rank, rank)


def _one(query: QuerySet) -> Any:
    # A one-row slice by pk: first() would add an ORDER BY (Meta.ordering) to every lock.
    return next(iter(query.order_by()[:1]), None)


# --- 1. threads ------------------------------------------------------------------------


def lock_thread(thread_id: str, *fields: str) -> Thread:
    """The thread under its row lock, or 404. With `fields`, only those columns are loaded
    (the lock covers the whole row either way; an append need not decode the state)."""
    _take(THREAD)
    query = Thread.objects.select_for_update(no_key=True).filter(pk=thread_id)
    if fields:
        query = query.only(*fields)
    locked = _one(query)
    if locked is None:
        raise NotFound("Thread not found.")
    return locked


@functools.cache
def thread_values_sql(vendor: str, columns: tuple[str, ...], *, by_tenant: bool) -> str:
    """The SELECT … FOR NO KEY UPDATE of lock_thread_values, for a caller that sends it
    itself (the pipelined append: threads.history); it must hold no other lock."""
    qn = connection.ops.quote_name
    meta = Thread._meta
    selected = ", ".join(qn(meta.get_field(name).column) for name in columns)
    where = f"{qn(meta.pk.column)} = %s"
    if by_tenant:
        where += f" AND {qn(meta.get_field('tenant').column)} = %s"
    lock = ""
    if connection.features.has_select_for_update:
        lock = " " + connection.ops.for_update_sql(no_key=True)
    return f"SELECT {selected} FROM {qn(meta.db_table)} WHERE {where}{lock}"


def lock_thread_values(
    thread_id: str, columns: tuple[str, ...], *, tenant_id: str | None = None
) -> tuple | None:
    """`columns` of the thread under its row lock, as a tuple, or None when there is no such
    thread (of `tenant_id`, when given). Fixed SQL and no model instance: the append's hot
    path (threads.history)."""
    sql = thread_values_sql(connection.vendor, columns, by_tenant=tenant_id is not None)
    return lock_thread_joined(sql, [thread_id] if tenant_id is None else [thread_id, tenant_id])


# What session and handoff writes read from their thread.
OPEN_THREAD_COLUMNS = ("id", "tenant", "project", "status", "lifecycle")


def lock_open_thread(thread_id: str) -> Thread:
    """lock_thread, then 409 thread_archived if the thread is archived."""
    thread = lock_thread(thread_id, *OPEN_THREAD_COLUMNS)
    if thread.status == ThreadStatus.ARCHIVED:
        raise ThreadArchived(thread=thread.pk)
    return thread


def thread_lock_clause(alias: str) -> str:
    """What ends a SELECT of a thread (as `alias`) joined to rows of it that locks the
    thread's row alone, for lock_thread_joined ("" where rows cannot be locked)."""
    if not connection.features.has_select_for_update:
        return ""
    return " " + connection.ops.for_update_sql(of=(alias,), no_key=True)


def lock_thread_joined(sql: str, params: list[Any]) -> tuple | None:
    """The first row of `sql`, a SELECT of one thread (alone, or joined to rows of it and
    ending with thread_lock_clause()) that locks that thread's row; None if there is none.
    For a writer that reads what it checks and locks the thread in one round trip (a
    handoff; lock_thread_values)."""
    _take(THREAD)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def lock_due_threads(where: Q, *, order_by: str, limit: int) -> list[str]:
    """Ids of up to `limit` threads matching `where`, locked, skipping rows another sweep
    holds (a claim: the caller moves them out of `where` in the same transaction)."""
    _take(THREAD)
    return list(
        Thread.objects.select_for_update(skip_locked=True, no_key=True)
        .filter(where)
        .order_by(order_by)
        .values_list("pk", flat=True)[:limit]
    )


# --- 2. sessions -----------------------------------------------------------------------


def _sessions() -> QuerySet:
    return apps.get_model("sessions_app", "Session").objects


def lock_session(session_id: str) -> Any:
    """The session under its row lock, or 404."""
    _take(SESSION)
    locked = _one(_sessions().select_for_update(no_key=True).filter(pk=session_id))
    if locked is None:
        raise NotFound("Session not found.")
    return locked


def lock_session_where(session_id: str, **conditions: Any) -> Any | None:
    """The session under its row lock if it still matches `conditions`, else None (a claim
    whose WHERE PostgreSQL re-checks on the row's newest version once the lock is had)."""
    _take(SESSION)
    return _one(_sessions().select_for_update(no_key=True).filter(pk=session_id, **conditions))


def lock_sessions(session_ids: Iterable[str]) -> list[Any]:
    """Several sessions under their row locks, in pk order (two transactions locking
    overlapping sets then wait for each other instead of deadlocking)."""
    _take(SESSION)
    return list(
        _sessions().select_for_update(no_key=True).filter(pk__in=list(session_ids)).order_by("pk")
    )


# --- 3. queued messages ----------------------------------------------------------------


def lock_queued_messages(thread_id: str) -> list[QueuedMessage]:
    """The thread's queued steering messages, oldest first, skipping rows a concurrent
    drain holds (so two drains never deliver the same item)."""
    _take(QUEUED_MESSAGE)
    return list(
        QueuedMessage.objects.select_for_update(skip_locked=True, no_key=True)
        # Served by the partial index queued_message_pending (thread, queued_at, id).
        .filter(thread_id=thread_id, status=QueuedMessageStatus.QUEUED)
        .order_by("queued_at", "id")
    )
