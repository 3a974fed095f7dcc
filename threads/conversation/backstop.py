"""The compaction backstop (a beat schedule): re-enqueue compactions whose task was lost or
whose worker died, and queue the automatic ones a settle could not decide."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Case, Exists, F, IntegerField, OuterRef, Q, When
from django.utils import timezone

from common.tasks import enqueue
from sessions_app.selectors import thread_is_generating
from threads.conversation.compaction import (
    COMPACTION_RUN_TASK,
    compaction_create,
    compaction_threshold,
    turn_context_tokens,
)
from threads.models import (
    COMPACTION_PENDING,
    Compaction,
    CompactionStatus,
    CompactionTrigger,
    QueuedMessage,
    QueuedMessageStatus,
    Thread,
    ThreadStatus,
    Tier,
)

# The backstop re-enqueues a queued compaction whose task should have run this long ago…
BACKSTOP_GRACE = timedelta(seconds=60)
# …and does not auto-compact again a thread whose last compaction failed this recently.
BACKSTOP_FAILED_COOLDOWN = timedelta(hours=1)


def _due_threads(now: datetime, limit: int) -> list[Thread]:
    context = F("last_input_tokens") + F("last_cache_read_tokens") + F("last_cache_creation_tokens")
    threshold = Case(
        When(compaction_threshold_tokens__isnull=False, then=F("compaction_threshold_tokens")),
        default=F("compaction_threshold_percent") * F("compaction_context_window") / 100,
        output_field=IntegerField(),
    )
    pending = Compaction.objects.filter(thread=OuterRef("pk"), status__in=COMPACTION_PENDING)
    failed_recently = Compaction.objects.filter(
        thread=OuterRef("pk"),
        status=CompactionStatus.FAILED,
        created_at__gte=now - BACKSTOP_FAILED_COOLDOWN,
    )
    steering = QueuedMessage.objects.filter(
        thread=OuterRef("pk"), status=QueuedMessageStatus.QUEUED
    )
    return list(
        Thread.objects.alias(context=context, threshold=threshold)
        .filter(
            status=ThreadStatus.OPEN,
            tier=Tier.HOT,
            threshold__gt=0,
            context__gte=F("threshold"),
            message_count__gt=F("compaction_keep_last"),
        )
        .exclude(Exists(pending))
        .exclude(Exists(failed_recently))
        .exclude(Exists(steering))
        .order_by("updated_at")[:limit]
    )


def compaction_backstop(*, limit: int = 100) -> dict[str, list[str]]:
    """Pick up what the on-commit path missed. Returns the compaction ids it (re)enqueued:

    - `stale`: queued compactions whose task should have run a while ago (the enqueue was
      lost: a crash between commit and enqueue, a broker outage), and running ones whose
      worker died (their lease expired: no heartbeat for COMPACTION_LEASE_SECONDS), put
      back to queued;
    - `auto`: threads over their threshold with no compaction pending (a settle whose
      decision waited for queued steering messages, or a lost decision)."""
    now = timezone.now()
    # A living run renews its lease every third of COMPACTION_LEASE_SECONDS; one whose lease
    # expired lost its worker. (A row without a lease predates leases: the time limit rule.)
    stale_running = (
        Compaction.objects.filter(status=CompactionStatus.RUNNING)
        .filter(
            Q(lease_expires_at__lt=now)
            | Q(
                lease_expires_at__isnull=True,
                started_at__lt=now
                - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
                - BACKSTOP_GRACE,
            )
        )
        .values_list("pk", "attempts", "lease_expires_at")[:limit]
    )
    stale = []
    for pk, attempts, lease in list(stale_running):
        # Conditional on the claim we saw, so a run that renewed after all keeps its row.
        if Compaction.objects.filter(
            pk=pk, status=CompactionStatus.RUNNING, attempts=attempts, lease_expires_at=lease
        ).update(status=CompactionStatus.QUEUED, retry_at=None, lease_expires_at=None):
            stale.append(pk)
    stale += list(
        Compaction.objects.filter(status=CompactionStatus.QUEUED)
        .filter(
            Q(retry_at__lte=now - BACKSTOP_GRACE)
            | Q(retry_at__isnull=True, created_at__lte=now - BACKSTOP_GRACE)
        )
        .exclude(pk__in=stale)
        .values_list("pk", flat=True)[:limit]
    )
    for pk in stale:  # the claim (queued → running) keeps a duplicate from running twice
        enqueue(COMPACTION_RUN_TASK, pk)

    auto = []
    for thread in _due_threads(now, limit):
        if thread_is_generating(thread_id=thread.pk):
            continue
        compaction = compaction_create(
            thread,
            trigger=CompactionTrigger.AUTO,
            keep_last=thread.compaction_keep_last,
            context_tokens=turn_context_tokens(thread),
            threshold=compaction_threshold(thread),
            source="backstop",
        )
        if compaction is not None:
            auto.append(compaction.pk)
    return {"stale": stale, "auto": auto}
