"""Heartbeated leases: a claim that stays short because its holder keeps renewing it.

A claim taken by a conditional UPDATE (a compaction's `running`, a flush's lease) must
outlive the slow I/O it covers (the provider, S3) but not its process: a SIGKILLed worker
must free it within about a minute, not after the task time limit. So the lease is short
(`*_LEASE_SECONDS`, 30 s by default) and a daemon thread renews it every third of that
while the work runs; `renew` is itself a conditional UPDATE on the claim's token, so a
holder whose lease expired and was taken over learns it (`lost`) instead of renewing
someone else's claim."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

from django.db import connections

logger = logging.getLogger(__name__)


class Heartbeat:
    """`with Heartbeat(renew, every=10):` — call `renew()` every `every` seconds from a
    daemon thread until the block ends. `renew()` returns False when the claim is no longer
    ours (taken over after it expired): the thread stops and `lost` is set. An exception
    (database briefly unreachable) is logged and the next beat tries again; the lease expires
    on its own if the beats keep failing."""

    def __init__(self, renew: Callable[[], bool], *, every: float, name: str) -> None:
        self._renew = renew
        self._every = every
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {name}", daemon=True)
        self._name = name

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self._every):
                try:
                    if not self._renew():
                        logger.warning("lease of %s lost: taken over after it expired", self._name)
                        self.lost.set()
                        return
                except Exception:
                    logger.exception("could not renew the lease of %s", self._name)
        finally:
            connections.close_all()  # this thread's own connections (they are per thread)
