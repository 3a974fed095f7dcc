"""The flush lease: the claim a flush holds on its thread while it writes the snapshot.

A conditional UPDATE of `cold_key` from the value read to `lease:<until>:<token>|<previous
value>`; a row count of 0 means another flush (API, admin, command or another sweep worker)
got it first → 409 thread_busy.

Why a lease, and on every flush rather than only in the sweep: the snapshot key is fixed per
thread and S3 has no compare-and-set, so two overlapping flushes of one thread could let an
older body land after a newer one (flush A stalls; B flushes; the thread is hydrated,
appended to and flushed again; A's write lands last and overwrites it). With the lease no
second flush starts until the first has finished or its process is dead.

Why `cold_key`: it is internal (not in the API), meaningless while the thread is hot (where
it only remembers the last snapshot's key, kept after the `|`), and no Thread column may be
added here. Not `last_activity_at`: that is the idleness clock the sweep selects on and the
API shows — stamping it would make a failed flush look like activity. Not
`select_for_update(skip_locked=True)`: the lock would have to be held across the S3 write
(invariant 4), or be released before it, after which it excludes nobody.

The lease is short (FLUSH_LEASE_SECONDS) and renewed by a heartbeat while the flush runs
(tiers.py), so it only expires because its process died, and a killed flush blocks the next
one for at most that long.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time

from django.conf import settings

from common.errors import ThreadBusy
from threads.models import Thread, Tier

logger = logging.getLogger(__name__)

LEASE_PREFIX = "lease:"


def _lease_parse(value: str) -> tuple[float, str]:
    """`lease:<until epoch>:<token>|<previous cold_key>` → (until, previous)."""
    head, _, previous = value.partition("|")
    try:
        until = float(head.split(":")[1])
    except (IndexError, ValueError):
        until = 0.0
    return until, previous


def _lease_value(token: str, previous: str) -> str:
    until = int(time.time() + settings.FLUSH_LEASE_SECONDS)
    return f"{LEASE_PREFIX}{until}:{token}|{previous}"


class FlushLease:
    """The lease a flush holds, renewed by its heartbeat (a conditional UPDATE from the value
    it holds to one with a later expiry). `lock` keeps a renewal from moving the value while
    the final UPDATE or the release matches on it."""

    def __init__(self, thread_id: str, value: str, previous: str) -> None:
        self.thread_id, self.value, self.previous = thread_id, value, previous
        self.token = value.split("|", 1)[0].rsplit(":", 1)[1]
        self.lock = threading.Lock()
        self._confirmed = time.monotonic()  # when the row last said the lease was ours

    @classmethod
    def take(cls, thread: Thread) -> FlushLease:
        """Claim `thread` (as read: its `cold_key` is the value the UPDATE expects), or 409
        thread_busy when a live lease is on it or another flush took it first."""
        current = thread.cold_key or ""
        previous = current
        if current.startswith(LEASE_PREFIX):
            until, previous = _lease_parse(current)
            if until > time.time():
                raise ThreadBusy(thread=thread.pk, reason="flushing")
        lease = _lease_value(secrets.token_hex(4), previous)
        taken = Thread.objects.filter(pk=thread.pk, tier=Tier.HOT, cold_key=current).update(
            cold_key=lease
        )
        if not taken:
            raise ThreadBusy(thread=thread.pk, reason="flushing")
        return cls(thread.pk, lease, previous)

    def renew(self) -> bool:
        with self.lock:
            renewed = _lease_value(self.token, self.previous)
            if not Thread.objects.filter(pk=self.thread_id, cold_key=self.value).update(
                cold_key=renewed
            ):
                return False
            self.value = renewed
            self._confirmed = time.monotonic()
            return True

    def held(self) -> bool:
        """Still ours? (On the flush's own connection, which sees its own claim.)

        Within a third of FLUSH_LEASE_SECONDS of the take or the last renewal no query is
        needed: another flush takes a lease only once its expiry has passed, which is at
        least two thirds of the lease away (an expiry our clock set; a host whose clock is
        that far off would break the lease anyway). So a small flush, seconds from its take,
        skips the round trip; one that stalled asks the row."""
        with self.lock:
            if time.monotonic() - self._confirmed < settings.FLUSH_LEASE_SECONDS / 3:
                return True
            return Thread.objects.filter(pk=self.thread_id, cold_key=self.value).exists()

    def release(self) -> None:
        """Put the previous value back (a flush that failed)."""
        with self.lock:
            try:
                Thread.objects.filter(pk=self.thread_id, cold_key=self.value).update(
                    cold_key=self.previous
                )
            except Exception:  # the lease expires on its own; don't hide the original error
                logger.exception("could not release the flush lease of %s", self.thread_id)
