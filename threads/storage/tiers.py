"""Hot ↔ cold: flush, hydrate, thread_ensure_hot, and writes that need a hot thread. The
snapshot format is snapshot.py's; the idle sweep is sweep.py's.

Order of a flush (DESIGN.md invariants 4 and 5 — no S3 I/O inside a transaction or under a
row lock; hot rows deleted only after the snapshot is written and verified, and only if
nothing was written since it was taken):

  1. take the thread's flush lease (a conditional UPDATE, see flush_lease.py);
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
import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, Q, QuerySet
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from common.errors import (
    ColdSnapshotCorrupt,
    NotFound,
    ThreadBusy,
    ThreadGenerating,
)
from common.leases import Heartbeat
from sessions_app.selectors import active_sessions_of_outer_thread, thread_is_generating
from threads import events, locks
from threads.events import event_record
from threads.message_format import json_text
from threads.models import MESSAGE_COLUMNS, Message, Thread, Tier
from threads.storage import cold, hotcache, shared
from threads.storage.flush_lease import FlushLease
from threads.storage.snapshot import (
    DecodedSnapshot,
    Row,
    snapshot_decode,
    snapshot_encode,
    snapshot_key,
)

logger = logging.getLogger(__name__)

# --- Helpers ---------------------------------------------------------------------------


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


def insert_messages(thread_id: str, rows: list[Row]) -> None:
    """Insert restored rows. On PostgreSQL one COPY: for a 10,000-message thread it takes a
    fraction of bulk_create's time (80,000 bound parameters across ten INSERTs)."""
    if connection.vendor != "postgresql":
        Message.objects.bulk_create(
            [Message(thread_id=thread_id, **row._asdict()) for row in rows], batch_size=1000
        )
        return
    columns = ("thread_id", *MESSAGE_COLUMNS)
    sql = f"COPY {Message._meta.db_table} ({', '.join(columns)}) FROM STDIN"
    dumps = json_text  # orjson: the standard library's encoder was a sixth of a hydrate
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(
                (
                    thread_id,
                    row.message_id,
                    row.seq,
                    row.role,
                    dumps(row.content),
                    dumps(row.metadata),
                    row.token_estimate,
                    row.created_at,
                )
            )


# --- Flush -----------------------------------------------------------------------------


def thread_flush(
    *, thread: Thread, idle_before: datetime | None = None, overwrite: bool = False
) -> Thread:
    """Move the thread's messages to cold storage (see the module docstring for the order).

    Idempotent: an already cold thread is returned as it is. `idle_before` (the sweep) also
    requires that the thread has had no activity since then, checked in the final UPDATE.
    Raises ThreadGenerating (409) while a session runs a turn, ThreadBusy (409, details
    reason flushing|changed|active) when another flush holds the thread or it changed,
    ColdStorageUnavailable (503) when the store fails, ColdObjectChanged (409) when another
    tool wrote the object since (`overwrite` replaces it) — in every case the thread stays
    hot with all its rows."""
    flushed = _flush(thread, idle_before=idle_before, overwrite=overwrite)
    return _adopt(thread, flushed if flushed is not None else _reload(thread))


def flush_once(thread: Thread, *, idle_before: datetime | None, overwrite: bool = False) -> bool:
    """thread_flush; True if this call flushed it, False if it was already cold (the sweep
    counts the two apart)."""
    return _flush(thread, idle_before=idle_before, overwrite=overwrite) is not None


_PK, _KEY = "\x00thread", "\x00key"  # placeholders: no id or key holds a NUL


@functools.cache
def _candidate_sql(vendor: str) -> tuple[str, tuple]:
    """_flush_candidate's SELECT as the ORM compiles it, once per process (compiling it took
    about 1 ms of every flush), with _PK and _KEY where the thread's id and key go."""
    query = Thread.objects.filter(pk=_PK).annotate(
        generating=Exists(active_sessions_of_outer_thread()),
        recorded_tag=shared.recorded_tag_of_outer_thread(key=_KEY),
    )
    return query.order_by()[:1].query.sql_with_params()


def _flush_candidate(thread_id: str, key: str) -> Thread:
    """The thread row with `generating` (is a turn running on it?) and `recorded_tag` (of
    its object, shared.py): one SELECT where there were three."""
    sql, params = _candidate_sql(connection.vendor)
    values = {_PK: thread_id, _KEY: key}
    bound = [values.get(p, p) if isinstance(p, str) else p for p in params]
    current = next(iter(Thread.objects.raw(sql, bound)), None)
    if current is None:
        raise NotFound("Thread not found.")
    return current


def _flush(thread: Thread, *, idle_before: datetime | None, overwrite: bool) -> Thread | None:
    """The flush itself: the thread row as the flush committed it, None if it was cold."""
    key = snapshot_key(thread.pk)
    current = _flush_candidate(thread.pk, key)
    if current.tier == Tier.COLD:
        return None
    if current.generating:
        raise ThreadGenerating(thread=current.pk)
    if idle_before is not None and current.last_activity_at >= idle_before:
        raise ThreadBusy(thread=current.pk, reason="active")

    lease = FlushLease.take(current)
    beat = Heartbeat(
        lease.renew, every=settings.FLUSH_LEASE_SECONDS / 3, name=f"flush {current.pk}"
    )
    try:
        with beat:
            snapshot = snapshot_encode(thread=current)
            body = cold.gzip_json(snapshot)
            if not lease.held():  # expired and taken: the key is the other flush's now
                raise ThreadBusy(thread=current.pk, reason="flushing")
            # Only on top of the object this thread last wrote or read (shared.py): another
            # tool's write since then is 409 cold_object_changed, never silently replaced.
            shared.snapshot_write(
                thread_id=current.pk,
                key=key,
                body=body,
                expected=current.recorded_tag,
                overwrite=overwrite,
            )
            # The read-back stays: only a read proves the store returns these bytes (a
            # store that acknowledged and lost or changed them must not cost the rows).
            stored, tag = cold.get_tagged(key)
            if stored != body:
                raise cold.ColdStorageUnavailable(key=key, reason="verify_mismatch")
            # The object is ours from here on, whether or not the commit below succeeds.
            shared.tag_record(thread_id=current.pk, key=key, etag=tag)
            with lease.lock:
                return _flush_commit(
                    current,
                    snapshot,
                    lease=lease.value,
                    key=key,
                    size=len(body),
                    idle_before=idle_before,
                )
    except Exception:
        lease.release()
        raise


def _update_returning(query: QuerySet[Thread], **values: Any) -> Thread | None:
    """query.update(**values) as UPDATE … RETURNING: the updated row as this statement
    wrote it (under its row lock), where a reload after the commit took another query."""
    update = query.query.chain(UpdateQuery)
    update.add_update_values(values)
    sql, params = update.get_compiler(query.db).as_sql()
    return next(iter(Thread.objects.raw(f"{sql} RETURNING *", params)), None)


def _flush_commit(
    thread: Thread,
    snapshot: dict[str, Any],
    *,
    lease: str,
    key: str,
    size: int,
    idle_before: datetime | None,
) -> Thread:
    where = Q(pk=thread.pk, tier=Tier.HOT, history_version=snapshot["history_version"])
    where &= Q(cold_key=lease)
    if idle_before is not None:
        where &= Q(last_activity_at__lt=idle_before)
    query = Thread.objects.filter(where)
    query = query.filter(~Exists(active_sessions_of_outer_thread()))

    now = timezone.now()
    with transaction.atomic():
        # The UPDATE takes the row lock writers take first (threads.locks.lock_thread), so an
        # append either committed before it (history_version moved: no row matches) or waits
        # for this commit and then finds the thread cold (and hydrates it again).
        flushed = _update_returning(
            query, tier=Tier.COLD, cold_key=key, cold_bytes=size, last_flushed_at=now
        )
        if flushed is not None:
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
    if flushed is not None:
        return flushed
    if thread_is_generating(thread_id=thread.pk):
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
            body, tag = cold.get_tagged(key)
        except cold.ColdObjectMissing as exc:
            raise ColdSnapshotCorrupt(thread=current.pk, key=key, reason="missing") from exc
        snapshot = snapshot_decode(body, thread=current, key=key)
        restored = _hydrate_commit(current, snapshot, key=key, size=len(body), tag=tag)
        if restored is not None:
            return _adopt(thread, restored)
    raise ThreadBusy(thread=thread.pk, reason="changed")


def _hydrate_commit(
    thread: Thread, snapshot: DecodedSnapshot, *, key: str, size: int, tag: str
) -> Thread | None:
    """Insert the rows and flip the tier under the row lock; None when the thread was
    flushed again since the snapshot was read (it may be stale: read it again)."""
    with transaction.atomic():
        locked = locks.lock_thread(thread.pk)
        if locked.tier == Tier.HOT:
            return locked  # a concurrent hydrate restored it first
        if locked.last_flushed_at != thread.last_flushed_at:
            return None
        insert_messages(locked.pk, snapshot.rows)
        shared.tag_record(thread_id=locked.pk, key=key, etag=tag)  # what a flush writes on
        state = snapshot.state if snapshot.state is not None else locked.state
        # Another tool's snapshot is a change of the history: a new version, so that no
        # cache of the history we flushed (same version) can ever be taken for this one.
        version = locked.history_version + (0 if snapshot.native else 1)
        restored = {
            "tier": Tier.HOT,
            "history_version": version,
            "state": state,
            "message_count": len(snapshot.rows),
            "last_seq": max(locked.last_seq, snapshot.last_seq),
            "token_estimate": sum(m.token_estimate for m in snapshot.rows),
            "last_hydrated_at": timezone.now(),
        }
        Thread.objects.filter(pk=locked.pk).update(**restored)
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
            history_version=version,
            members=snapshot.members,
            state=state,
        )
    # The row as committed: what the lock read plus this UPDATE (no reload needed).
    for name, value in restored.items():
        setattr(locked, name, value)
    return locked


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
