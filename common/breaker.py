"""One circuit breaker for every optional dependency a request touches (Redis: the hot cache,
the throttle's counters, the readiness probe).

A breaker is per process and per name (e.g. the Redis location): after a failure the
dependency is skipped for `seconds`, so a hung or dead Redis costs one socket timeout per
process per period instead of one per request. It logs one warning when it opens, and while
it stays open it says nothing more: a dead Redis writes one line per process per period, not
one per request. The first success after an open period logs that the dependency is back.

    breaker = Breaker("redis")
    if breaker.is_open(location):
        ...  # use the fallback
    try:
        value = call()
    except Exception as exc:
        breaker.trip(location, exc, what="throttle incr")
    else:
        breaker.close(location)
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("threadline.breaker")

DEFAULT_SECONDS = 5.0


class Breaker:
    def __init__(self, name: str, *, seconds: float = DEFAULT_SECONDS) -> None:
        self.name = name
        self.seconds = seconds
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def is_open(self, key: str) -> bool:
        """True while `key` is being skipped after a failure."""
        until = self._down_until.get(key)
        return until is not None and until > time.monotonic()

    def trip(self, key: str, exc: BaseException, *, what: str) -> None:
        """Record a failure of `key`: skip it for the breaker's period. Logs only when the
        breaker was closed (a failure seen by several threads at once logs once)."""
        now = time.monotonic()
        with self._lock:
            was_open = self._down_until.get(key, 0.0) > now
            self._down_until[key] = now + self.seconds
        if not was_open:
            logger.warning(
                "%s %s failed; skipping it for %.0f s: %s",
                self.name,
                what,
                self.seconds,
                type(exc).__name__,
            )

    def close(self, key: str) -> None:
        """Record a success of `key` (cheap when it was never tripped)."""
        if key in self._down_until:
            with self._lock:
                if self._down_until.pop(key, None) is not None:
                    logger.warning("%s is answering again", self.name)

    def reset(self) -> None:
        """Forget every failure (tests, and a process that reconfigured its dependencies)."""
        with self._lock:
            self._down_until.clear()


# The one breaker of the Redis the default cache points at: the hot cache, the throttle and
# /readyz share it, so whichever of them sees Redis fail first spares the others the wait.
redis_breaker = Breaker("redis")
