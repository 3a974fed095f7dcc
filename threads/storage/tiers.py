"""Hot ↔ cold: the snapshot format, flush, hydrate, thread_ensure_hot and the idle sweep.

Snapshot — gzip JSON at `<COLD_PREFIX>/messages/<thread id>.json.gz` (application/gzip), a
superset of zeitlich's v1 snapshot:

    {"v": 1,
     "messages": ["<each message as the API's JSON>", …],   zeitlich: raw JSON strings
     "state": <the state slice or null>,
     "dedupIds": ["<message id>", …],                       zeitlich: the dedup keys
     "thread_id", "tenant_id", "project_id", "last_seq", "message_count", "history_version",
     "token_estimate", "thread_created_at", "created_at" (when the snapshot was taken),
     "sha256": SHA-256 of the canonical JSON of "messages"}

"dedupIds" lists the ids of the snapshot's messages, aligned with them. The ids of messages
a compaction summarized away (CompactedMessageId) are not in it: they stay in the database,
which a flush leaves alone (it deletes message rows only), so a hydrated thread still dedups
them.

A plain zeitlich v1 snapshot (only the first four keys) hydrates too: each string is parsed;
the message id is its "id", else the dedupIds entry at the same index (when the two lists
align), else a new `msg_…`; seqs are 1..n; anything we cannot map faithfully is kept in the
message's metadata under "zeitlich_raw".

Order of a flush (DESIGN.md invariants 4 and 5 — no S3 I/O inside a transaction or under a
row lock; hot rows deleted only after the snapshot is written and verified, and only if
nothing was written since it was taken):

  1. take the thread's flush lease (a conditional UPDATE, see _lease_take);
  2. encode from the database, remembering the history_version read;
  3. put the object, read it back and compare byte for byte;
  4. one short transaction: UPDATE … SET tier='cold' WHERE history_version = <read> AND
     tier = 'hot' AND cold_key = <our lease> AND no session is active; only if that
     matched one row, DELETE the message rows — a write since step 2 makes it match none:
     409 thread_busy and nothing is deleted;
  5. drop the Redis keys after the commit.

A crash anywhere before step 4 commits leaves a hot thread with all its rows (and at worst an
object that the next flush overwrites); step 4 is atomic.

Hydrate reads and checks the object first, outside any transaction, then takes the row lock,
re-checks the tier and inserts the rows and flips the tier in one transaction: concurrent
hydrates restore once (the others find it hot under the lock), and a reader never sees a
half-restored thread.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from common.errors import (
    ColdSnapshotCorrupt,
    DependencyUnavailable,
    NotFound,
    ThreadBusy,
    ThreadGenerating,
)
from common.ids import new_id
from sessions_app.selectors import active_sessions_of_outer_thread, thread_is_generating
from threads import events, locks
from threads.events import event_record
from threads.message_format import estimate_tokens, message_json
from threads.models import MESSAGE_COLUMNS, Message, Role, Thread, Tier
from threads.storage import cold, hotcache

logger = logging.getLogger(__name__)

SNAPSHOT_VERSION = 1
# How long a flush may hold its lease. Far above the S3 client's worst case (connect and
# read timeouts × attempts), so a lease only ever expires because its process died.
FLUSH_LEASE_SECONDS = 600
LEASE_PREFIX = "lease:"
SWEEP_BATCH_SIZE = 100


# --- Helpers ---------------------------------------------------------------------------


def snapshot_key(thread_id: str) -> str:
    return f"{settings.COLD_PREFIX}/messages/{thread_id}.json.gz"


def _reload(thread: Thread) -> Thread:
    current = Thread.objects.filter(pk=thread.pk).first()
    if current is None:
        raise NotFound("Thread not found.")
    return current


def _adopt(thread: Thread, fresh: Thread) -> Thread:
    """Copy `fresh`'s values onto the caller's instance (callers keep using theirs)."""
    if fresh is not thread:
        for f in Thread._meta.concrete_fields:
            setattr(thread, f.attname, getattr(fresh, f.attname))
    return thread


def _generating(thread_id: str) -> bool:
    return thread_is_generating(thread_id=thread_id)


def _sha256(messages: list[str]) -> str:
    canonical = json.dumps(messages, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


# --- Snapshot format -------------------------------------------------------------------


def snapshot_encode(*, thread: Thread) -> dict[str, Any]:
    """The snapshot of `thread` from the database. Its messages are read after the row, so
    they are at least as new as `thread.history_version`; a flush only commits if that
    version is still current, which makes them exactly that version."""
    rows = list(
        Message.objects.filter(thread_id=thread.pk).order_by("seq").values_list(*MESSAGE_COLUMNS)
    )
    messages = [message_json(*row) for row in rows]
    return {
        "v": SNAPSHOT_VERSION,
        "messages": messages,
        "state": thread.state,
        "dedupIds": [row[0] for row in rows],
        "thread_id": thread.pk,
        "tenant_id": thread.tenant_id,
        "project_id": thread.project_id,
        "last_seq": thread.last_seq,
        "message_count": len(messages),
        "history_version": thread.history_version,
        "token_estimate": sum(row[5] for row in rows),
        "thread_created_at": _iso(thread.created_at),
        "created_at": _iso(timezone.now()),
        "sha256": _sha256(messages),
    }


@dataclass
class DecodedSnapshot:
    rows: list[Message]
    members: list[tuple[int, str]]  # (seq, the API JSON) — what the Redis cache holds
    state: Any
    last_seq: int
    native: bool  # written by Threadline (else a plain zeitlich v1 snapshot)


# zeitlich stores whatever message objects its app used; these are the common spellings.
_FOREIGN_ROLES = {
    "human": Role.USER,
    "user": Role.USER,
    "ai": Role.ASSISTANT,
    "assistant": Role.ASSISTANT,
    "system": Role.SYSTEM,
    "tool": Role.TOOL,
    "function": Role.TOOL,
}


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 128


def snapshot_decode(body: bytes, *, thread: Thread, key: str = "") -> DecodedSnapshot:
    """Parse and check a snapshot for `thread`; ColdSnapshotCorrupt (503) on anything
    wrong — nothing is written before the whole body has been checked."""

    def corrupt(reason: str, **details: Any) -> ColdSnapshotCorrupt:
        return ColdSnapshotCorrupt(thread=thread.pk, key=key, reason=reason, **details)

    try:
        data = cold.gunzip_json(body)
    except ValueError as exc:
        raise corrupt("not_gzip_json") from exc
    if not isinstance(data, dict) or data.get("v") != SNAPSHOT_VERSION:
        raise corrupt("not_v1")
    messages = data.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, str) for m in messages):
        raise corrupt("bad_messages")

    native = "sha256" in data or "thread_id" in data
    if native:
        if data.get("sha256") != _sha256(messages):
            raise corrupt("checksum_mismatch")
        if data.get("thread_id") != thread.pk:
            raise corrupt("other_thread", snapshot_thread=data.get("thread_id"))
        if data.get("message_count") != len(messages):
            raise corrupt("count_mismatch")
        if data.get("history_version") != thread.history_version:
            # Not the version the row says was flushed: restoring it could lose writes.
            raise corrupt(
                "stale",
                snapshot_version=data.get("history_version"),
                thread_version=thread.history_version,
            )

    dedup = data.get("dedupIds")
    aligned = dedup if isinstance(dedup, list) and len(dedup) == len(messages) else None
    now = timezone.now()
    rows: list[Message] = []
    members: list[tuple[int, str]] = []
    seen: set[str] = set()
    last_seq = 0
    for index, raw in enumerate(messages):
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise corrupt("bad_message", index=index) from exc
        if native:
            message = _native_message(parsed, last_seq)
            if message is None or message.message_id in seen:
                raise corrupt("bad_message", index=index)
            member = raw
        else:
            message = _foreign_message(parsed, raw, index, aligned, now)
            if message.message_id in seen:
                message.message_id = new_id("msg")
            message.seq = index + 1
            member = message_json(*(getattr(message, f) for f in MESSAGE_COLUMNS))
        message.thread_id = thread.pk
        seen.add(message.message_id)
        last_seq = message.seq
        rows.append(message)
        members.append((message.seq, member))
    state = data.get("state")
    recorded_last_seq = data.get("last_seq") if native else None
    if isinstance(recorded_last_seq, int):  # a truncation leaves last_seq above the rows
        last_seq = max(last_seq, recorded_last_seq)
    return DecodedSnapshot(
        rows=rows,
        members=members,
        state=state if isinstance(state, dict) else None,
        last_seq=last_seq,
        native=native,
    )


def _insert_messages(thread_id: str, rows: list[Message]) -> None:
    """Insert restored rows. On PostgreSQL one COPY: for a 10,000-message thread it takes a
    fraction of bulk_create's time (80,000 bound parameters across ten INSERTs)."""
    if connection.vendor != "postgresql":
        Message.objects.bulk_create(rows, batch_size=1000)
        return
    columns = ("thread_id", *MESSAGE_COLUMNS)
    sql = f"COPY {Message._meta.db_table} ({', '.join(columns)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(
                (
                    thread_id,
                    row.message_id,
                    row.seq,
                    row.role,
                    json.dumps(row.content, ensure_ascii=False),
                    json.dumps(row.metadata, ensure_ascii=False),
                    row.token_estimate,
                    row.created_at,
                )
            )


_ROLES = frozenset(Role.values)  # Role.values builds a new list on every access


def _native_message(parsed: Any, after_seq: int) -> Message | None:
    """A message we wrote (the API's JSON), or None if it is not one."""
    if not isinstance(parsed, dict):
        return None
    seq, role, tokens = parsed.get("seq"), parsed.get("role"), parsed.get("token_estimate")
    created_at = parse_datetime(parsed["created_at"]) if "created_at" in parsed else None
    if not (
        _valid_id(parsed.get("id"))
        and isinstance(seq, int)
        and seq > after_seq
        and role in _ROLES
        and "content" in parsed
        and isinstance(parsed.get("metadata"), dict)
        and isinstance(tokens, int)
        and created_at is not None
    ):
        return None
    return Message(
        message_id=parsed["id"],
        seq=seq,
        role=role,
        content=parsed["content"],
        metadata=parsed["metadata"],
        token_estimate=tokens,
        created_at=created_at,
    )


def _foreign_message(
    parsed: Any, raw: str, index: int, aligned: list | None, now: datetime
) -> Message:
    """A zeitlich message: whatever object its app stored, mapped as well as it goes."""
    body = parsed if isinstance(parsed, dict) else {}
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    role = body.get("role")
    if role not in _ROLES:
        role = _FOREIGN_ROLES.get(body.get("role") or body.get("type"))
    content = body["content"] if "content" in body else data.get("content")
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    if role is None or not isinstance(content, str | list):
        metadata = {**metadata, "zeitlich_raw": raw}
        role = role or Role.USER
        content = content if isinstance(content, str | list) else raw
    if _valid_id(body.get("id")):
        message_id = body["id"]
    elif aligned is not None and _valid_id(aligned[index]):
        message_id = aligned[index]
    else:
        message_id = new_id("msg")
    created = body.get("created_at")
    created_at = (parse_datetime(created) if isinstance(created, str) else None) or now
    return Message(
        message_id=message_id,
        seq=index + 1,
        role=role,
        content=content,
        metadata=metadata,
        token_estimate=estimate_tokens(content),
        created_at=created_at,
    )


# --- Flush -----------------------------------------------------------------------------


def _lease_parse(value: str) -> tuple[float, str]:
    """`lease:<until epoch>:<token>|<previous cold_key>` → (until, previous)."""
    head, _, previous = value.partition("|")
    try:
        until = float(head.split(":")[1])
    except (IndexError, ValueError):
        until = 0.0
    return until, previous


def _lease_take(thread: Thread) -> tuple[str, str]:
    """Claim the right to flush `thread`: a conditional UPDATE of `cold_key` from the value
    read to `lease:<until>:<token>|<previous value>`; a row count of 0 means another flush
    (API, admin, command or another sweep worker) got it first → 409 thread_busy.

    Why a lease, and on every flush rather than only in the sweep: the snapshot key is fixed
    per thread and S3 has no compare-and-set, so two overlapping flushes of one thread could
    let an older body land after a newer one (flush A stalls; B flushes; the thread is
    hydrated, appended to and flushed again; A's write lands last and overwrites it). With
    the lease no second flush starts until the first has finished or its process is dead.

    Why `cold_key`: it is internal (not in the API), meaningless while the thread is hot
    (where it only remembers the last snapshot's key, kept after the `|`), and no Thread
    column may be added here. Not `last_activity_at`: that is the idleness clock the sweep
    selects on and the API shows — stamping it would make a failed flush look like activity.
    Not `select_for_update(skip_locked=True)`: the lock would have to be held across the S3
    write (invariant 4), or be released before it, after which it excludes nobody."""
    current = thread.cold_key or ""
    previous = current
    if current.startswith(LEASE_PREFIX):
        until, previous = _lease_parse(current)
        if until > time.time():
            raise ThreadBusy(thread=thread.pk, reason="flushing")
    until = int(time.time() + FLUSH_LEASE_SECONDS)
    lease = f"{LEASE_PREFIX}{until}:{secrets.token_hex(4)}|{previous}"
    taken = Thread.objects.filter(pk=thread.pk, tier=Tier.HOT, cold_key=current).update(
        cold_key=lease
    )
    if not taken:
        raise ThreadBusy(thread=thread.pk, reason="flushing")
    return lease, previous


def _lease_release(thread_id: str, lease: str, previous: str) -> None:
    try:
        Thread.objects.filter(pk=thread_id, cold_key=lease).update(cold_key=previous)
    except Exception:  # the lease expires on its own; don't hide the original error
        logger.exception("could not release the flush lease of %s", thread_id)


def _verify(key: str, body: bytes) -> None:
    """Read the object back; it must be exactly what was written."""
    try:
        stored = cold.get(key)
    except cold.ColdObjectMissing as exc:
        raise cold.ColdStorageUnavailable(key=key, reason="verify_missing") from exc
    if stored != body:
        raise cold.ColdStorageUnavailable(key=key, reason="verify_mismatch")


def thread_flush(*, thread: Thread, idle_before: datetime | None = None) -> Thread:
    """Move the thread's messages to cold storage (see the module docstring for the order).

    Idempotent: an already cold thread is returned as it is. `idle_before` (the sweep) also
    requires that the thread has had no activity since then, checked in the final UPDATE.
    Raises ThreadGenerating (409) while a session runs a turn, ThreadBusy (409, details
    reason flushing|changed|active) when another flush holds the thread or it changed,
    ColdStorageUnavailable (503) when the store fails — in every case the thread stays hot
    with all its rows."""
    _flush(thread, idle_before=idle_before)
    return _adopt(thread, _reload(thread))


def _flush(thread: Thread, *, idle_before: datetime | None) -> bool:
    """thread_flush; True if this call flushed it, False if it was already cold."""
    current = _reload(thread)
    if current.tier == Tier.COLD:
        return False
    if _generating(current.pk):
        raise ThreadGenerating(thread=current.pk)
    if idle_before is not None and current.last_activity_at >= idle_before:
        raise ThreadBusy(thread=current.pk, reason="active")

    lease, previous = _lease_take(current)
    try:
        snapshot = snapshot_encode(thread=current)
        body = cold.gzip_json(snapshot)
        key = snapshot_key(current.pk)
        cold.put(key, body)
        _verify(key, body)
        _flush_commit(
            current, snapshot, lease=lease, key=key, size=len(body), idle_before=idle_before
        )
    except Exception:
        _lease_release(current.pk, lease, previous)
        raise
    return True


def _flush_commit(
    thread: Thread,
    snapshot: dict[str, Any],
    *,
    lease: str,
    key: str,
    size: int,
    idle_before: datetime | None,
) -> None:
    where = Q(pk=thread.pk, tier=Tier.HOT, history_version=snapshot["history_version"])
    where &= Q(cold_key=lease)
    if idle_before is not None:
        where &= Q(last_activity_at__lt=idle_before)
    query = Thread.objects.filter(where)
    query = query.filter(~Exists(active_sessions_of_outer_thread()))

    now = timezone.now()
    with transaction.atomic():
        # The UPDATE takes the row lock writers take first (threads.locks.lock_thread), so an append
        # either committed before it (history_version moved: no row matches) or waits for
        # this commit and then finds the thread cold (and hydrates it again).
        flushed = query.update(tier=Tier.COLD, cold_key=key, cold_bytes=size, last_flushed_at=now)
        if flushed:
            deleted, _ = Message.objects.filter(thread_id=thread.pk).delete()
            if deleted != snapshot["message_count"]:
                # A write that did not bump history_version: refuse rather than lose it.
                raise ThreadBusy(thread=thread.pk, reason="changed")
            event_record(
                tenant_id=thread.tenant_id,
                kind=events.THREAD_FLUSHED,
                thread_id=thread.pk,
                payload={
                    "messages": deleted,
                    "bytes": size,
                    "key": key,
                    "history_version": snapshot["history_version"],
                },
            )
            hotcache.on_commit_drop(thread_id=thread.pk)
    if not flushed:
        if _generating(thread.pk):
            raise ThreadGenerating(thread=thread.pk)
        reason = "changed"
        if idle_before is not None:
            touched = Thread.objects.filter(pk=thread.pk, last_activity_at__gte=idle_before)
            reason = "active" if touched.exists() else reason
        raise ThreadBusy(thread=thread.pk, reason=reason)


# --- Writes on a hot thread ----------------------------------------------------------


class WentCold(Exception):
    """The thread was flushed between thread_ensure_hot and the write's row lock."""


def lock_hot(thread: Thread, *fields: str) -> Thread:
    """locks.lock_thread for writes of history: the thread must still be hot under the lock
    (a flush may have committed since the caller hydrated it; on_hot_thread then retries)."""
    locked = locks.lock_thread(thread.pk, *(("tier", *fields) if fields else ()))
    if locked.tier != Tier.HOT:
        raise WentCold
    return locked


def on_hot_thread(write):
    """Run a history write on a hot thread: hydrate it first when cold (outside any
    transaction — that reads cold storage), then run the write, which re-checks the tier
    under its row lock (lock_hot); a flush that committed in between makes it hydrate and
    try again. So a write racing a flush either lands in a hot thread or makes the flush
    abort."""

    @functools.wraps(write)
    def run(*, thread: Thread, **kwargs: Any):
        for _ in range(3):
            thread_ensure_hot(thread=thread)
            try:
                return write(thread=thread, **kwargs)
            except WentCold:
                thread.tier = Tier.COLD
        raise ThreadBusy(thread=thread.pk, reason="flushing")

    return run


# --- Hydrate ---------------------------------------------------------------------------


def thread_hydrate(*, thread: Thread) -> Thread:
    """Bring a cold thread back: read and check the snapshot (no lock held), then under the
    row lock re-check the tier, insert the rows and mark it hot. Idempotent; a hot thread is
    returned as it is. A missing or corrupt snapshot → ColdSnapshotCorrupt (503); the thread
    stays cold and the object is not touched. The store failing → ColdStorageUnavailable."""
    for _ in range(3):
        current = _reload(thread)
        if current.tier == Tier.HOT:
            return _adopt(thread, current)
        key = current.cold_key or snapshot_key(current.pk)
        try:
            body = cold.get(key)
        except cold.ColdObjectMissing as exc:
            raise ColdSnapshotCorrupt(thread=current.pk, key=key, reason="missing") from exc
        snapshot = snapshot_decode(body, thread=current, key=key)
        restored = _hydrate_commit(current, snapshot, key=key, size=len(body))
        if restored is not None:
            return _adopt(thread, restored)
    raise ThreadBusy(thread=thread.pk, reason="changed")


def _hydrate_commit(
    thread: Thread, snapshot: DecodedSnapshot, *, key: str, size: int
) -> Thread | None:
    """Insert the rows and flip the tier under the row lock; None when the thread was
    flushed again since the snapshot was read (it may be stale: read it again)."""
    with transaction.atomic():
        locked = locks.lock_thread(thread.pk)
        if locked.tier == Tier.HOT:
            return locked  # a concurrent hydrate restored it first
        if locked.last_flushed_at != thread.last_flushed_at:
            return None
        _insert_messages(locked.pk, snapshot.rows)
        state = snapshot.state if snapshot.state is not None else locked.state
        Thread.objects.filter(pk=locked.pk).update(
            tier=Tier.HOT,
            state=state,
            message_count=len(snapshot.rows),
            last_seq=max(locked.last_seq, snapshot.last_seq),
            token_estimate=sum(m.token_estimate for m in snapshot.rows),
            last_hydrated_at=timezone.now(),
        )
        event_record(
            tenant_id=locked.tenant_id,
            kind=events.THREAD_HYDRATED,
            thread_id=locked.pk,
            payload={
                "messages": len(snapshot.rows),
                "bytes": size,
                "key": key,
                "format": "threadline" if snapshot.native else "zeitlich-v1",
            },
        )
        hotcache.on_commit_rebuild(
            thread_id=locked.pk,
            history_version=locked.history_version,
            members=snapshot.members,
            state=state,
        )
    return _reload(locked)


def thread_ensure_hot(*, thread: Thread) -> Thread:
    """The one call every path that reads or writes messages makes first: a no-op on a hot
    thread (as loaded — the write re-checks under its row lock), a hydrate on a cold one.
    Updates the caller's instance in place and returns it. Call it outside a transaction:
    a hydrate reads cold storage."""
    if thread.tier == Tier.HOT:
        return thread
    return thread_hydrate(thread=thread)


def snapshot_discard(*, thread_id: str) -> None:
    """Delete a deleted thread's snapshot (best effort: a failure is logged, the object is
    left behind)."""
    try:
        cold.delete(snapshot_key(thread_id))
    except cold.ColdStorageUnavailable as exc:
        logger.warning("could not delete the snapshot of deleted thread %s: %s", thread_id, exc)


# --- Idle sweep ------------------------------------------------------------------------


@dataclass
class SweepBatch:
    flushed: int = 0
    skipped: int = 0
    failed: int = 0
    cursor: tuple[datetime, str] | None = None  # where the next batch starts; None: done


def idle_cutoff(older_than_seconds: int | None = None) -> datetime:
    seconds = settings.COLD_AFTER_SECONDS if older_than_seconds is None else older_than_seconds
    return timezone.now() - timedelta(seconds=seconds)


def idle_threads(*, cutoff: datetime, after: tuple[datetime, str] | None = None) -> QuerySet:
    """Hot threads without activity since `cutoff` and no session running a turn, any
    status, oldest first, keyset-paginated after (last_activity_at, id)."""
    query = Thread.objects.filter(tier=Tier.HOT, last_activity_at__lt=cutoff)
    query = query.filter(~Exists(active_sessions_of_outer_thread()))
    if after is not None:
        at, pk = after
        query = query.filter(Q(last_activity_at__gt=at) | Q(last_activity_at=at, pk__gt=pk))
    return query.order_by("last_activity_at", "pk")


def flush_idle_batch(
    *,
    cutoff: datetime | None = None,
    after: tuple[datetime, str] | None = None,
    batch_size: int | None = None,
    on_thread: Callable[[str, str], None] | None = None,
) -> SweepBatch:
    """Flush one batch of idle threads. Two workers never flush the same thread: each flush
    first claims it (`_lease_take`, a conditional UPDATE), and the final UPDATE re-checks
    that it is still idle and unchanged. A thread that changed while being flushed is
    retried once; one that became active, is generating, or is claimed by another worker is
    skipped; a store failure counts as failed (it stays hot and is retried next sweep).
    `on_thread(thread_id, outcome)` reports each one."""
    cutoff = cutoff or idle_cutoff()
    batch_size = batch_size or SWEEP_BATCH_SIZE
    candidates = list(
        idle_threads(cutoff=cutoff, after=after).only("id", "last_activity_at")[:batch_size]
    )
    batch = SweepBatch()
    for candidate in candidates:
        outcome = _sweep_one(candidate, cutoff)
        setattr(batch, outcome, getattr(batch, outcome) + 1)
        if on_thread is not None:
            on_thread(candidate.pk, outcome)
    if len(candidates) == batch_size:
        batch.cursor = (candidates[-1].last_activity_at, candidates[-1].pk)
    return batch


def _sweep_one(candidate: Thread, cutoff: datetime) -> str:
    for attempt in range(2):
        try:
            return "flushed" if _flush(candidate, idle_before=cutoff) else "skipped"
        except ThreadBusy as exc:
            if exc.details.get("reason") != "changed" or attempt:
                return "skipped"
        except (ThreadGenerating, NotFound):
            return "skipped"
        except DependencyUnavailable as exc:
            logger.warning("idle flush of %s failed: %s %s", candidate.pk, exc.code, exc.details)
            return "failed"
    return "skipped"


def probe_cold_storage() -> tuple[str, str]:
    """Readiness: "degraded" when the store does not answer — hot threads are still served;
    flushes and hydrates answer 503 until it is back."""
    try:
        return cold.probe()
    except Exception as exc:
        return "degraded", str(exc)[:200]
