"""The idle sweep: flush threads idle longer than COLD_AFTER_SECONDS to cold storage, in
keyset-paginated batches (tasks.flush_idle_threads and `manage.py flush_idle_threads`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, Q, QuerySet
from django.utils import timezone

from common.errors import DependencyUnavailable, NotFound, ThreadBusy, ThreadGenerating
from sessions_app.selectors import active_sessions_of_outer_thread
from threads.models import Thread, Tier
from threads.storage import tiers
from threads.storage.shared import ColdObjectChanged

logger = logging.getLogger(__name__)

SWEEP_BATCH_SIZE = 100


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
    first claims it (tiers take a flush lease, a conditional UPDATE), and the final UPDATE re-checks
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
            return "flushed" if tiers.flush_once(candidate, idle_before=cutoff) else "skipped"
        except ThreadBusy as exc:
            if exc.details.get("reason") != "changed" or attempt:
                return "skipped"
        except (ThreadGenerating, NotFound):
            return "skipped"
        except ColdObjectChanged:
            # Another tool wrote the object: left hot until someone resolves it (README,
            # "Shared cold objects"); the sweep must not overwrite it either.
            logger.warning("idle flush of %s refused: its cold object changed", candidate.pk)
            return "skipped"
        except DependencyUnavailable as exc:
            logger.warning("idle flush of %s failed: %s %s", candidate.pk, exc.code, exc.details)
            return "failed"
    return "skipped"
