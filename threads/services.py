"""Writes of threads: create, edit, archive/close/open/delete, state, fork (messages are
threads.history's; tenants, keys and projects threads.tenancy's).

Every function is keyword-only and named <entity>_<action>. Each state change that can race
is guarded in the database: appends serialize on the thread's row lock, edits are
conditional UPDATEs on `version`, and the rest re-check status under the same lock.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from common.errors import (
    NotFound,
    PayloadTooLarge,
    StaleVersion,
    ThreadArchived,
    ThreadNotEmpty,
)
from sessions_app.selectors import (
    ARCHIVE_BLOCKING_STATUSES,
    DELETE_BLOCKING_STATUSES,
    sessions_blocking,
)
from threads import events, locks
from threads.events import thread_event
from threads.models import (
    MESSAGE_COLUMNS,
    CompactedMessageId,
    Event,
    Lifecycle,
    Message,
    Project,
    Tenant,
    Thread,
    ThreadStatus,
)
from threads.storage import hotcache, tiers

# --- Threads ---------------------------------------------------------------------------

# PATCH payload → columns. Nested groups are flattened to the model's prefixed fields.
_EDITABLE = {"title", "metadata", "reasoning_effort"}
_COMPACTION = {"threshold_tokens", "threshold_percent", "context_window", "keep_last"}
_WARMING = {"enabled", "interval_s", "max_idle_warms"}


def thread_create(
    *, tenant: Tenant, project_id: str, title: str = "", metadata: dict | None = None
) -> Thread:
    """A new open thread in the tenant's project, with its thread.created event; 404 when the
    tenant has no such project."""
    thread = Thread(tenant=tenant, project_id=project_id, title=title, metadata=metadata or {})
    event = events.event_row(
        tenant_id=tenant.pk,
        kind=events.THREAD_CREATED,
        thread_id=thread.pk,
        payload={"project": project_id},
    )
    if connection.vendor == "postgresql":
        created = _insert_in_project(thread, event, project_id=project_id, tenant_id=tenant.pk)
    else:
        created = Project.objects.filter(tenant=tenant, pk=project_id).order_by().exists()
        if created:
            with transaction.atomic():
                thread.save(force_insert=True)
                event.save(force_insert=True)
    if not created:
        raise NotFound("Project not found.", field="project", id=project_id)
    thread._state.adding, thread._state.db = False, connection.alias
    return thread


def _insert_in_project(thread: Thread, event: Event, *, project_id: str, tenant_id: str) -> bool:
    """Check the project, insert the thread and its event: one statement (one round trip
    instead of five; a create was mostly waiting on them), atomic as every statement is."""
    thread_fields, event_fields, sql = _create_sql(connection.vendor)
    values = [project_id, tenant_id, *_prep(thread, thread_fields), *_prep(event, event_fields)]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        return cursor.fetchone() is not None


def _prep(obj, fields: tuple) -> list:
    return [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]


@functools.cache
def _create_sql(vendor: str) -> tuple[tuple, tuple, str]:
    """The inserted fields of a thread and of an event, and the create's statement: built
    once per process from the models (a thread has some forty columns)."""
    qn = connection.ops.quote_name

    def inserted(model) -> tuple[tuple, str, str]:
        fields = tuple(f for f in model._meta.concrete_fields if not f.db_returning)
        return fields, ", ".join(qn(f.column) for f in fields), ", ".join(["%s"] * len(fields))

    project = Project._meta
    thread_fields, thread_columns, thread_marks = inserted(Thread)
    event_fields, event_columns, event_marks = inserted(Event)
    sql = (
        f"WITH project AS (SELECT 1 FROM {qn(project.db_table)} "
        f"WHERE {qn(project.pk.column)} = %s AND {qn(project.get_field('tenant').column)} = %s), "
        f"created AS (INSERT INTO {qn(Thread._meta.db_table)} ({thread_columns}) "
        f"SELECT {thread_marks} FROM project RETURNING 1) "
        f"INSERT INTO {qn(Event._meta.db_table)} ({event_columns}) "
        f"SELECT {event_marks} FROM created RETURNING 1"
    )
    return thread_fields, event_fields, sql


def thread_update(
    *, thread: Thread, changes: dict[str, Any], expected_version: int | None = None
) -> Thread:
    """Apply a PATCH. With `expected_version` (If-Match) the UPDATE is conditional on it:
    of two editors holding the same ETag exactly one wins, the other gets 412."""
    columns: dict[str, Any] = {k: v for k, v in changes.items() if k in _EDITABLE}
    for key, value in (changes.get("compaction") or {}).items():
        if key in _COMPACTION:
            columns[f"compaction_{key}"] = value
    for key, value in (changes.get("warming") or {}).items():
        if key in _WARMING:
            columns[f"warming_{key}"] = value
    if columns.get("warming_enabled") is False:
        columns["next_warm_at"] = None

    with transaction.atomic():
        query = Thread.objects.filter(pk=thread.pk, status=ThreadStatus.OPEN)
        if expected_version is not None:
            query = query.filter(version=expected_version)
        updated = query.update(**columns, version=F("version") + 1, updated_at=timezone.now())
        if not updated:
            current = Thread.objects.filter(pk=thread.pk).values("status", "version").first()
            if current is None:
                raise NotFound("Thread not found.")
            if current["status"] == ThreadStatus.ARCHIVED:
                raise ThreadArchived(thread=thread.id)
            raise StaleVersion(expected=expected_version, actual=current["version"])
        thread.refresh_from_db()
        thread_event(thread, events.THREAD_EDITED, fields=sorted(columns), version=thread.version)
    return thread


def _transition(thread: Thread, kind: str, where: Q, **columns: Any) -> Thread:
    """A conditional UPDATE that records `kind` when it changed something.

    `where` is the state the change starts from; a row count of 0 means the thread is
    already there (or a concurrent request got there first) and nothing is recorded."""
    with transaction.atomic():
        updated = Thread.objects.filter(where, pk=thread.pk).update(
            **columns, version=F("version") + 1, updated_at=timezone.now()
        )
        thread.refresh_from_db()
        if updated:
            thread_event(thread, kind, version=thread.version)
        elif thread.is_archived and columns.get("status") != ThreadStatus.ARCHIVED:
            raise ThreadArchived(thread=thread.id)  # archived between our read and the UPDATE
    return thread


_OPEN = Q(status=ThreadStatus.OPEN)


def _require_no_sessions(thread: Thread, *, op: str, statuses: tuple[str, ...] | None) -> None:
    """409 thread_not_empty while the thread has sessions (in `statuses`, or any). Call it
    holding the thread's row lock: sessions are created and moved into blocking statuses
    under the same lock, so the answer cannot go stale before the caller's write."""
    sample, total = sessions_blocking(thread_id=thread.pk, statuses=statuses)
    if total:
        raise ThreadNotEmpty(
            f"The thread has {total} session(s) blocking {op}.",
            op=op,
            blocking_sessions=sample,
            total_blocking_sessions=total,
        )


def thread_archive(*, thread: Thread) -> Thread:
    """Archive: a hard read-only boundary. Idempotent (already archived → no write).
    Refused while a session is active, locked, awaiting_hitl or awaiting_merge — checked
    even when the thread is already archived."""
    with transaction.atomic():
        _require_no_sessions(
            locks.lock_thread(thread.pk), op="archive", statuses=ARCHIVE_BLOCKING_STATUSES
        )
        return _transition(thread, events.THREAD_ARCHIVED, _OPEN, status=ThreadStatus.ARCHIVED)


def thread_close(*, thread: Thread) -> Thread:
    """The user closed the conversation: lifecycle closed, warming off, timer cleared."""
    thread.require_open()
    return _transition(
        thread,
        events.THREAD_CLOSED,
        _OPEN & ~Q(lifecycle=Lifecycle.CLOSED),
        lifecycle=Lifecycle.CLOSED,
        warming_enabled=False,
        next_warm_at=None,
    )


def thread_open(*, thread: Thread) -> Thread:
    """Re-open a closed conversation; a no-op on one that is not closed. It goes back to idle,
    or to active when a turn is running (a session can be active while the user has the
    conversation closed). Sessions become active under the thread row lock taken here, so the
    answer cannot go stale before the UPDATE."""
    thread.require_open()
    with transaction.atomic():
        locks.lock_thread(thread.pk, "status")
        _, running = sessions_blocking(thread_id=thread.pk, statuses=("active",))
        return _transition(
            thread,
            events.THREAD_OPENED,
            _OPEN & Q(lifecycle=Lifecycle.CLOSED),
            lifecycle=Lifecycle.ACTIVE if running else Lifecycle.IDLE,
        )


def thread_delete(*, thread: Thread) -> None:
    """Delete, refused while a session that is not archived is attached. Archived sessions
    are history and go with the thread (their edges, summaries and handoff rows cascade);
    a session is archived only under the thread's lock, so none can come back meanwhile."""
    with transaction.atomic():
        locked = locks.lock_thread(thread.pk)
        _require_no_sessions(locked, op="delete", statuses=DELETE_BLOCKING_STATUSES)
        # Session.thread is RESTRICT (a thread never loses a live session by accident), so
        # the archived ones are deleted first, through the reverse relation of the FK.
        archived = locked.sessions.count()
        if archived:
            locked.sessions.all().delete()
        thread_event(
            thread,
            events.THREAD_DELETED,
            title=thread.title,
            project=thread.project_id,
            archived_sessions=archived,
        )
        Thread.objects.filter(pk=thread.pk).delete()
        # Its cached keys and its cold snapshot (kept after a hydrate) go too, after the commit.
        hotcache.on_commit_drop(thread_id=thread.pk)
        if thread.cold_key:
            thread_id = thread.pk
            transaction.on_commit(lambda: _snapshot_discard(thread_id), robust=True)


def _snapshot_discard(thread_id: str) -> None:
    tiers.snapshot_discard(thread_id=thread_id)


@tiers.on_hot_thread
def thread_state_set(*, thread: Thread, state: dict | None) -> Thread:
    # ensure_ascii=False: measure the UTF-8 that is stored (as _prepare does), not \u escapes.
    size = len(json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode())
    if size > settings.MAX_STATE_BYTES:
        raise PayloadTooLarge(
            "The state slice is too large.", bytes=size, limit=settings.MAX_STATE_BYTES
        )
    with transaction.atomic():
        locked = tiers.lock_hot(thread)
        locked.require_open()
        Thread.objects.filter(pk=thread.pk).update(
            state=state, history_version=F("history_version") + 1, updated_at=timezone.now()
        )
        hotcache.on_commit_state(
            thread_id=thread.pk,
            old_version=locked.history_version,
            new_version=locked.history_version + 1,
            state=state,
        )
    thread.refresh_from_db()
    return thread


@tiers.on_hot_thread
def thread_fork(*, thread: Thread, title: str | None = None) -> Thread:
    """A new open thread in the same project with the same messages (ids and seqs) and state,
    and the same ids compacted away: appends to the fork dedup exactly as to the source.

    The source's row lock is held for the copy, so the fork is a consistent cut: an append
    racing the fork lands either wholly before it (and is copied) or wholly after."""
    with transaction.atomic():
        source = tiers.lock_hot(thread)
        fork = Thread.objects.create(
            tenant_id=source.tenant_id,
            project_id=source.project_id,
            title=source.title if title is None else title,
            metadata=source.metadata,
            state=source.state,
            reasoning_effort=source.reasoning_effort,
            fork_of=source,
            last_seq=source.last_seq,
            message_count=source.message_count,
            token_estimate=source.token_estimate,
            history_version=1,
            compaction_threshold_tokens=source.compaction_threshold_tokens,
            compaction_threshold_percent=source.compaction_threshold_percent,
            compaction_context_window=source.compaction_context_window,
            compaction_keep_last=source.compaction_keep_last,
        )
        _copy_messages(source_id=source.pk, target_id=fork.pk)
        thread_event(fork, events.THREAD_FORKED, source=source.id, messages=source.message_count)
    return fork


def _copy_messages(*, source_id: str, target_id: str) -> None:
    # The ORM has no INSERT … SELECT; copying row by row through Python would move every
    # message's content through the process twice.
    table = Message._meta.db_table
    columns = ", ".join(MESSAGE_COLUMNS)
    compacted = CompactedMessageId._meta.db_table
    compacted_columns = "message_id, seq, compaction_id"  # the source's compaction (archive)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (thread_id, {columns}) "
            f"SELECT %s, {columns} FROM {table} WHERE thread_id = %s",
            [target_id, source_id],
        )
        cursor.execute(
            f"INSERT INTO {compacted} (thread_id, {compacted_columns}) "
            f"SELECT %s, {compacted_columns} FROM {compacted} WHERE thread_id = %s",
            [target_id, source_id],
        )
