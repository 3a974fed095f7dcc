"""The audit trail: every event kind the project writes, named once, and the one writer.

Writers pass these constants (never a string literal), the admin's kind filter lists KINDS,
and tests/threads/test_events.py fails on a kind literal written anywhere else.
"""

from __future__ import annotations

from typing import Any

from threads.models import Event

# Threads
THREAD_CREATED = "thread.created"
THREAD_EDITED = "thread.edited"
THREAD_ARCHIVED = "thread.archived"
THREAD_CLOSED = "thread.closed"
THREAD_OPENED = "thread.opened"
THREAD_FORKED = "thread.forked"
THREAD_DELETED = "thread.deleted"
THREAD_HISTORY_TRUNCATED = "thread.history_truncated"
THREAD_HISTORY_REPLACED = "thread.history_replaced"
THREAD_LIFECYCLE_CHANGED = "thread.lifecycle_changed"
# Hot and cold tiers
THREAD_FLUSHED = "thread.flushed"
THREAD_HYDRATED = "thread.hydrated"
# Portable threads (threads/portability)
THREAD_IMPORTED = "thread.imported"
# Compaction, warming, the steering queue, provider retries
COMPACTION_REQUESTED = "compaction.requested"
COMPACTION_FAILED = "compaction.failed"
THREAD_COMPACTED = "thread.compacted"
WARM_COMPLETED = "warm.completed"
WARM_FAILED = "warm.failed"
WARMING_CAPPED = "warming.capped"
PROVIDER_RETRY = "provider.retry"
QUEUE_ENQUEUED = "queue.enqueued"
QUEUE_CANCELLED = "queue.cancelled"
QUEUE_DRAINED = "queue.drained"
# Sessions
SESSION_CREATED = "session.created"
SESSION_TURN_STARTED = "session.turn_started"
SESSION_TURN_SETTLED = "session.turn_settled"
SESSION_HITL_REQUESTED = "session.hitl_requested"
SESSION_HITL_RESOLVED = "session.hitl_resolved"
SESSION_FAILED = "session.failed"
SESSION_ARCHIVED = "session.archived"
SESSION_MERGED = "session.merged"
SESSION_SUMMARIZED = "session.summarized"
SESSION_SPAWNED = "session.spawned"
SESSION_SPAWN_ROLLED_BACK = "session.spawn_rolled_back"
SESSION_INTERVENTION_CREATED = "session.intervention_created"
SESSION_LOCK_RECOVERED = "session.lock_recovered"
SUBSESSION_ARCHIVED = "subsession.archived"
SUBSESSION_RESTORED = "subsession.restored"
# Handoffs
HANDOFF_LOCKED = "handoff.locked"
HANDOFF_COMMITTED = "handoff.committed"
HANDOFF_ROLLED_BACK = "handoff.rolled_back"

# In the order above (the admin's filter lists them so).
KINDS: tuple[str, ...] = tuple(
    value for name, value in list(globals().items()) if name.isupper() and isinstance(value, str)
)


def event_row(
    *,
    tenant_id: str,
    kind: str,
    thread_id: str | None = None,
    session_id: str | None = None,
    payload: dict[str, Any] | None = None,
) -> Event:
    """An event, not yet saved (for a writer that inserts it in its own statement)."""
    return Event(
        tenant_id=tenant_id,
        kind=kind,
        thread_id=thread_id,
        session_id=session_id,
        payload=payload or {},
    )


def event_record(**fields: Any) -> Event:
    """Append to the audit trail; call it inside the transaction of the change it records.
    Takes event_row's keyword arguments."""
    event = event_row(**fields)
    event.save(force_insert=True)
    return event


def thread_event(thread: Any, kind: str, **payload: Any) -> Event:
    """An event of `thread` (anything with tenant_id and pk)."""
    return event_record(tenant_id=thread.tenant_id, kind=kind, thread_id=thread.pk, payload=payload)
