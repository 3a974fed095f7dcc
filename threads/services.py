"""Writes: tenancy, projects, threads, messages, state, events.

Every function is keyword-only and named <entity>_<action>. Each state change that can race
is guarded in the database: appends serialize on the thread's row lock, edits are
conditional UPDATEs on `version`, and the rest re-check status under the same lock.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from common.errors import (
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    StaleVersion,
    ThreadArchived,
    ThreadBusy,
    ThreadNotEmpty,
)
from common.ids import new_id
from sessions_app.models import BLOCKING_STATUSES
from sessions_app.selectors import sessions_blocking
from threads import events, locks
from threads.events import thread_event
from threads.models import (
    MESSAGE_COLUMNS,
    ApiKey,
    CompactedMessageId,
    Lifecycle,
    Message,
    Project,
    Tenant,
    Thread,
    ThreadStatus,
    Tier,
)
from threads.selectors import message_json
from threads.storage import hotcache

# --- Tenancy ---------------------------------------------------------------------------

API_KEY_PREFIX = "tl_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(*, tenant: Tenant, name: str = "") -> tuple[ApiKey, str]:
    """A new key for `tenant`; returns (key, secret). The secret is not stored."""
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        tenant=tenant, name=name, prefix=secret[:10], secret_hash=_hash_secret(secret)
    )
    return api_key, secret


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    ApiKey.objects.filter(pk=api_key.pk, revoked_at=None).update(revoked_at=timezone.now())
    api_key.refresh_from_db(fields=["revoked_at"])
    return api_key


def api_key_authenticate(*, secret: str) -> ApiKey | None:
    """The active key with this secret, or None. Touches last_used_at at most once a minute
    (a conditional UPDATE, so a busy key costs one write a minute, not one per request)."""
    if not secret.startswith(API_KEY_PREFIX) or len(secret) > 128:
        return None
    # secret_hash is unique: a one-row slice, without the ORDER BY (Meta.ordering) that
    # first() would add — this runs on every API request.
    candidates = (
        ApiKey.objects.select_related("tenant")
        .filter(secret_hash=_hash_secret(secret), revoked_at=None)
        .order_by()
    )
    api_key = next(iter(candidates[:1]), None)
    if api_key is None:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or api_key.last_used_at < now - LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).exclude(
            last_used_at__gte=now - LAST_USED_RESOLUTION
        ).update(last_used_at=now)
    return api_key


@transaction.atomic
def tenant_create(*, name: str) -> tuple[Tenant, str]:
    """A tenant with its first API key; returns (tenant, secret)."""
    tenant = Tenant.objects.create(name=name)
    _, secret = api_key_create(tenant=tenant, name="default")
    return tenant, secret


# --- Projects --------------------------------------------------------------------------


def project_create(*, tenant: Tenant, **fields: Any) -> Project:
    return Project.objects.create(tenant=tenant, **fields)


def project_update(*, project: Project, **fields: Any) -> Project:
    if not fields:
        return project
    fields["updated_at"] = timezone.now()
    Project.objects.filter(pk=project.pk).update(**fields)
    project.refresh_from_db()
    return project


# --- Threads ---------------------------------------------------------------------------

# PATCH payload → columns. Nested groups are flattened to the model's prefixed fields.
_EDITABLE = {"title", "metadata", "reasoning_effort"}
_COMPACTION = {"threshold_tokens", "threshold_percent", "context_window", "keep_last"}
_WARMING = {"enabled", "interval_s", "max_idle_warms"}


def thread_create(
    *, tenant: Tenant, project_id: str, title: str = "", metadata: dict | None = None
) -> Thread:
    project = Project.objects.filter(tenant=tenant, pk=project_id).first()
    if project is None:
        raise NotFound("Project not found.", field="project", id=project_id)
    with transaction.atomic():
        thread = Thread.objects.create(
            tenant=tenant, project=project, title=title, metadata=metadata or {}
        )
        thread_event(thread, events.THREAD_CREATED, project=project.id)
    return thread


def _require_open(thread: Thread) -> None:
    if thread.status == ThreadStatus.ARCHIVED:
        raise ThreadArchived(thread=thread.id)


class _WentCold(Exception):
    """The thread was flushed between thread_ensure_hot and the write's row lock."""


def _lock_hot(thread: Thread, *fields: str) -> Thread:
    """_lock for writes of history: the thread must still be hot under the lock (a flush
    may have committed since the caller hydrated it; _on_hot_thread then retries)."""
    locked = locks.lock_thread(thread.pk, *(("tier", *fields) if fields else ()))
    if locked.tier != Tier.HOT:
        raise _WentCold
    return locked


def _on_hot_thread(write):
    """Run a history write on a hot thread: hydrate it first when cold (outside any
    transaction — that reads cold storage), then run the write, which re-checks the tier
    under its row lock; a flush that committed in between makes it hydrate and try again.
    So an append racing a flush either lands in a hot thread or makes the flush abort."""

    @functools.wraps(write)
    def run(*, thread: Thread, **kwargs: Any):
        from threads.storage.tiers import thread_ensure_hot  # tiers builds on this module

        for _ in range(3):
            thread_ensure_hot(thread=thread)
            try:
                return write(thread=thread, **kwargs)
            except _WentCold:
                thread.tier = Tier.COLD
        raise ThreadBusy(thread=thread.pk, reason="flushing")

    return run


def _cache_members(rows: list[Message]) -> list[tuple[int, str]]:
    """New rows as the hot cache holds them (only computed when the cache is on)."""
    if not hotcache.enabled():
        return []
    return [
        (
            r.seq,
            message_json(
                r.message_id, r.seq, r.role, r.content, r.metadata, r.token_estimate, r.created_at
            ),
        )
        for r in rows
    ]


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
        _require_no_sessions(locks.lock_thread(thread.pk), op="archive", statuses=BLOCKING_STATUSES)
        return _transition(thread, events.THREAD_ARCHIVED, _OPEN, status=ThreadStatus.ARCHIVED)


def thread_close(*, thread: Thread) -> Thread:
    """The user closed the conversation: lifecycle closed, warming off, timer cleared."""
    _require_open(thread)
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
    _require_open(thread)
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
    """Delete, refused while any session is attached (no cascade)."""
    with transaction.atomic():
        _require_no_sessions(locks.lock_thread(thread.pk), op="delete", statuses=None)
        thread_event(thread, events.THREAD_DELETED, title=thread.title, project=thread.project_id)
        Thread.objects.filter(pk=thread.pk).delete()
        # Its cached keys and its cold snapshot (kept after a hydrate) go too, after the commit.
        hotcache.on_commit_drop(thread_id=thread.pk)
        if thread.cold_key:
            thread_id = thread.pk
            transaction.on_commit(lambda: _snapshot_discard(thread_id), robust=True)


def _snapshot_discard(thread_id: str) -> None:
    from threads.storage.tiers import snapshot_discard  # tiers builds on this module

    snapshot_discard(thread_id=thread_id)


@_on_hot_thread
def thread_state_set(*, thread: Thread, state: dict | None) -> Thread:
    # ensure_ascii=False: measure the UTF-8 that is stored (as _prepare does), not \u escapes.
    size = len(json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode())
    if size > settings.MAX_STATE_BYTES:
        raise PayloadTooLarge(
            "The state slice is too large.", bytes=size, limit=settings.MAX_STATE_BYTES
        )
    with transaction.atomic():
        locked = _lock_hot(thread)
        _require_open(locked)
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


@_on_hot_thread
def thread_fork(*, thread: Thread, title: str | None = None) -> Thread:
    """A new open thread in the same project with the same messages (ids and seqs) and state,
    and the same ids compacted away: appends to the fork dedup exactly as to the source.

    The source's row lock is held for the copy, so the fork is a consistent cut: an append
    racing the fork lands either wholly before it (and is copied) or wholly after."""
    with transaction.atomic():
        source = _lock_hot(thread)
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


# --- Messages --------------------------------------------------------------------------


@dataclass
class MessageIn:
    id: str
    role: str
    content: Any
    metadata: dict[str, Any]
    token_estimate: int = 0
    client_id: bool = True

    def row(self, *, thread_id: str, seq: int, created_at) -> Message:
        return Message(
            thread_id=thread_id,
            message_id=self.id,
            seq=seq,
            role=self.role,
            content=self.content,
            metadata=self.metadata,
            token_estimate=self.token_estimate,
            created_at=created_at,
        )


@dataclass
class AppendResult:
    appended: int = 0
    duplicates: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    last_seq: int = 0


def estimate_tokens(content: Any) -> int:
    """A provider-independent estimate: ~4 characters a token plus a small per-message cost."""
    if isinstance(content, str):
        chars = len(content)
    else:
        chars = 0
        for block in content:
            text = block.get("text") if isinstance(block, dict) else None
            chars += len(text) if isinstance(text, str) else len(json.dumps(block))
    return 4 + math.ceil(chars / 4)


def _prepare(messages: list[dict[str, Any]]) -> list[MessageIn]:
    """Give every message an id and a token estimate, and enforce MAX_MESSAGE_BYTES."""
    limit = settings.MAX_MESSAGE_BYTES
    prepared = []
    for index, raw in enumerate(messages):
        size = len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode())
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


def _known_ids(thread_id: str, ids: list[str]) -> dict[str, int]:
    """{id: seq} of those of `ids` the thread already has: its live messages and the ones a
    compaction summarized away (which answer with the seq they had). One round trip, a
    UNION ALL (the two sets are disjoint); read into a dict, so no ORDER BY."""
    live = (
        Message.objects.filter(thread_id=thread_id, message_id__in=ids)
        .order_by()
        .values_list("message_id", "seq")
    )
    compacted = CompactedMessageId.objects.filter(
        thread_id=thread_id, message_id__in=ids
    ).values_list("message_id", "seq")
    return dict(live.union(compacted, all=True))


# What an append reads under the lock: not metadata or state, which can be large.
_APPEND_COLUMNS = ("tenant_id", "status", "last_seq", "history_version", "message_count")


@_on_hot_thread
def messages_append(*, thread: Thread, messages: list[dict[str, Any]]) -> AppendResult:
    """Append a batch, idempotent per message id.

    Seqs are assigned under the thread's row lock, so concurrent appends serialize per
    thread and seqs stay contiguous; the duplicate check runs under the same lock, so two
    clients retrying the same id store it once — also an id a compaction summarized away,
    which answers with the seq it had. A 2xx means the rows are committed.
    """
    prepared = _prepare(messages)
    result = AppendResult()
    with transaction.atomic():
        locked = _lock_hot(thread, *_APPEND_COLUMNS)
        _require_open(locked)
        client_ids = [m.id for m in prepared if m.client_id]
        known = _known_ids(thread.pk, client_ids) if client_ids else {}
        seq = locked.last_seq
        rows, tokens, now = [], 0, timezone.now()
        for m in prepared:
            if m.id in known:
                result.duplicates += 1
                result.messages.append({"id": m.id, "seq": known[m.id]})
                continue
            seq += 1
            known[m.id] = seq
            tokens += m.token_estimate
            rows.append(m.row(thread_id=thread.pk, seq=seq, created_at=now))
            result.messages.append({"id": m.id, "seq": seq})
        if rows:
            Message.objects.bulk_create(rows)
            Thread.objects.filter(pk=thread.pk).update(
                last_seq=seq,
                message_count=F("message_count") + len(rows),
                token_estimate=F("token_estimate") + tokens,
                history_version=F("history_version") + 1,
                updated_at=now,
                last_activity_at=now,
            )
            hotcache.on_commit_append(
                thread_id=thread.pk,
                old_version=locked.history_version,
                new_version=locked.history_version + 1,
                members=_cache_members(rows),
            )
        result.appended = len(rows)
        result.last_seq = seq
    return result


@_on_hot_thread
def messages_truncate(*, thread: Thread, from_id: str) -> int:
    """Remove the message `from_id` and every later one; returns how many were removed.
    Ids compacted away stay known (a truncation only ever removes live messages)."""
    with transaction.atomic():
        locked = _lock_hot(thread)
        _require_open(locked)
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


@_on_hot_thread
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
        locked = _lock_hot(thread)
        _require_open(locked)
        removed, _ = Message.objects.filter(thread_id=thread.pk).delete()
        CompactedMessageId.objects.filter(thread_id=thread.pk).delete()
        seq, now, rows = locked.last_seq, timezone.now(), []
        for m in prepared:
            seq += 1
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
            members=_cache_members(rows),
            state=locked.state,
        )
        thread_event(locked, events.THREAD_HISTORY_REPLACED, removed=removed, messages=len(rows))
        result.appended, result.last_seq = len(rows), seq
    return result
