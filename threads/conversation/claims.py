"""A compaction's claim and lease: a running compaction is its worker's while the worker
renews the lease (compaction.py's heartbeat); every write of the run filters on the claim,
so a run that lost its lease writes nothing (compaction.py, step 1)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from threads import events
from threads.conversation import rewrite
from threads.models import Compaction, CompactionStatus


class LeaseLost(Exception):
    """The run's lease expired and another run took the compaction over."""


def lease_until() -> Any:
    return timezone.now() + timedelta(seconds=settings.COMPACTION_LEASE_SECONDS)


def claimed(compaction: Compaction):
    """The run's own claim: running, with the attempt number its claim set. Every write of
    the run filters on it, so a run that lost its lease (taken over) writes nothing."""
    return Compaction.objects.filter(
        pk=compaction.pk, status=CompactionStatus.RUNNING, attempts=compaction.attempts
    )


def lease_renew(compaction: Compaction) -> bool:
    return bool(claimed(compaction).update(lease_expires_at=lease_until()))


def expired_running():
    """Running compactions whose lease expired: their worker died (SIGKILL, OOM, a lost
    machine) — a living run renews its lease every third of COMPACTION_LEASE_SECONDS."""
    return Compaction.objects.filter(
        status=CompactionStatus.RUNNING, lease_expires_at__lt=timezone.now()
    )


def compaction_fail_expired(*, thread_id: str) -> str | None:
    """A new request for a thread whose running compaction's worker died: fail that one
    (`worker_lost`) so the request can queue its own, instead of answering 409 until the
    backstop runs. Conditional on the claim seen (status, attempts, expired lease), so a
    run that renewed meanwhile keeps its row and a racing backstop or request wins once."""
    for pk, attempts in expired_running().filter(thread_id=thread_id).values_list("pk", "attempts"):
        with transaction.atomic():
            failed = (
                expired_running()
                .filter(pk=pk, attempts=attempts)
                .update(
                    status=CompactionStatus.FAILED,
                    error="worker_lost: the worker running it stopped renewing its lease",
                    finished_at=timezone.now(),
                    lease_expires_at=None,
                )
            )
            if failed:
                compaction = Compaction.objects.get(pk=pk)
                rewrite.compaction_event(
                    compaction, events.COMPACTION_FAILED, code="worker_lost", error=compaction.error
                )
                return pk
    return None


def check_lease(compaction: Compaction) -> None:
    """Before writing the archive (its key is the compaction's, shared with a run that took
    it over): still ours? Asked on the run's own connection, which is the one that counts
    (the heartbeat's connection cannot see a claim made inside an enclosing transaction)."""
    if not claimed(compaction).exists():
        raise LeaseLost
