"""The steering queue: messages a user sends while the agent is busy, handed to the agent
at its next tool boundary (or at the start of the next turn) by a drain.

A drain takes every queued item atomically: the items are locked with
`SELECT … FOR UPDATE SKIP LOCKED` and marked delivered in the same short transaction, so of
two concurrent drains each item goes to exactly one (the other skips the locked rows, and
rows committed as delivered no longer match `status = 'queued'`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from common.errors import ThreadArchived
from threads import events, locks
from threads.events import event_record
from threads.models import QueuedMessage, QueuedMessageStatus, Thread

DRAIN_SEPARATOR = "\n\n"


@dataclass
class Drained:
    items: list[QueuedMessage] = field(default_factory=list)

    @property
    def text(self) -> str:
        return DRAIN_SEPARATOR.join(item.content for item in self.items)


def _event(thread: Thread, kind: str, **payload: Any) -> None:
    event_record(tenant_id=thread.tenant_id, thread_id=thread.pk, kind=kind, payload=payload)


def _queued(thread_id: str) -> QuerySet[QueuedMessage]:
    # Served by the partial index queued_message_pending (thread, queued_at, id).
    return QueuedMessage.objects.filter(
        thread_id=thread_id, status=QueuedMessageStatus.QUEUED
    ).order_by("queued_at", "id")


def queue_enqueue(*, thread: Thread, content: str) -> QueuedMessage:
    if thread.is_archived:
        raise ThreadArchived(thread=thread.pk)
    with transaction.atomic():
        item = QueuedMessage.objects.create(thread=thread, content=content)
        _event(thread, events.QUEUE_ENQUEUED, item=item.pk, chars=len(content))
    return item


def queue_list(*, thread: Thread) -> QuerySet[QueuedMessage]:
    """The items still queued, oldest first."""
    return _queued(thread.pk)


def queue_count(*, thread: Thread) -> int:
    """How many steering messages are still queued (turns/settle answers with it)."""
    return _queued(thread.pk).count()


def queue_cancel(*, thread: Thread, item_id: str) -> bool:
    """Cancel a queued item; True if this call cancelled it. An item already delivered,
    cancelled or unknown is left alone (the API answers 204 either way)."""
    if thread.is_archived:
        raise ThreadArchived(thread=thread.pk)
    with transaction.atomic():
        cancelled = QueuedMessage.objects.filter(
            pk=item_id, thread_id=thread.pk, status=QueuedMessageStatus.QUEUED
        ).update(status=QueuedMessageStatus.CANCELLED, cancelled_at=timezone.now())
        if cancelled:
            _event(thread, events.QUEUE_CANCELLED, item=item_id)
    return bool(cancelled)


def queue_drain(*, thread: Thread) -> Drained:
    """Take every queued item, oldest first, and mark it delivered."""
    if thread.is_archived:
        raise ThreadArchived(thread=thread.pk)
    with transaction.atomic():
        items = locks.lock_queued_messages(thread.pk)
        if not items:
            return Drained()
        now = timezone.now()
        ids = [item.pk for item in items]
        # Under the row locks taken above every one of them is still queued.
        updated = QueuedMessage.objects.filter(
            pk__in=ids, status=QueuedMessageStatus.QUEUED
        ).update(status=QueuedMessageStatus.DELIVERED, delivered_at=now)
        if updated != len(ids):  # cannot happen under the row locks; never half-deliver
            raise RuntimeError("drained rows changed under their row locks")
        for item in items:
            item.status, item.delivered_at = QueuedMessageStatus.DELIVERED, now
        _event(thread, events.QUEUE_DRAINED, items=ids)
    return Drained(items=items)
