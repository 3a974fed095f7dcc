"""A fixed-window request counter per API key (API_RATE_LIMIT_PER_MINUTE), shared by every
process that serves the API.

Where the counter lives, so that the limit holds across processes in every supported setup:
- With Redis (REDIS_URL): one counter per key and minute in Redis, shared by every process
  on every host. A process reserves the next numbers of a key's window in one EVALSHA
  (INCRBY + EXPIRE) and hands them to its requests one by one (_Leases): far below the
  limit a reservation covers up to LEASE_MAX requests, near it a single one (its size is a
  1/LEASE_SHARE of what the last reservation left below the limit). Every request still
  has its own number in the key's window and is refused when that number is over the
  limit, so the limit is never exceeded, whatever the processes; what a reservation holds
  unused when the minute ends is lost to that minute (at most 1/LEASE_SHARE of the
  headroom per process), a bound that tightens as the limit nears. Most requests then
  cost no Redis round trip at all (it was a sixth of an append's time in a worker).
- Without Redis (the embedded default), or while Redis is unavailable (its breaker is open,
  common/breaker.py): a counter file per key and minute under THROTTLE_DIR, incremented
  under an exclusive flock — shared by every process on this host. So during a Redis outage
  the limit holds per host: with H web hosts a key gets at most H × the limit.
- Only if the counter file itself cannot be written (a read-only or full disk) is the
  request let through (fail-open, one warning per breaker period): the limit protects
  capacity, it is not an authorization check, and refusing every request would turn a
  cache outage into an API outage.

DRF's SimpleRateThrottle stores every request timestamp of the window in one cache value,
which at thousands of requests a minute costs more than the request; a counter costs one
round trip (or one small file update).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
import time
from pathlib import Path

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from common import rediscache
from common.breaker import Breaker

WINDOW_SECONDS = 60

LEASE_MAX = 64  # numbers reserved at most in one round trip
LEASE_SHARE = 16  # a reservation takes at most this fraction of the headroom left

# KEYS[1]: the counter; ARGV[1]: its TTL, ARGV[2]: how many numbers to reserve. One round
# trip; the TTL is set with the first reservation. Returns the last number reserved.
_INCR = """
local n = redis.call('INCRBY', KEYS[1], ARGV[2])
if n == tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""

_file_breaker = Breaker("throttle counter file")
_scripts: dict[str, object] = {}
_last_window = {"value": -1}


def _redis_reserve(client, key_id: str, window: int, size: int) -> int:
    """Reserve `size` numbers of the key's window; returns the last one."""
    script = _scripts.get("incr")
    if script is None:
        script = _scripts["incr"] = client.register_script(_INCR)
    key = f"tl:throttle:{{{key_id}}}:{window}"
    return int(script(keys=[key], args=[WINDOW_SECONDS * 2, size], client=client))


class _Leases:
    """The numbers this process reserved and has not handed out yet, per key (only the
    current window's: a new window starts with a reservation of one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[int, int, int]] = {}  # key → (window, next, last)

    def take(self, key_id: str, window: int) -> int | None:
        with self._lock:
            held = self._held.get(key_id)
            if held is None or held[0] != window or held[1] > held[2]:
                return None
            self._held[key_id] = (window, held[1] + 1, held[2])
            return held[1]

    def size(self, key_id: str, window: int, limit: int) -> int:
        """How many numbers to reserve: a share of the headroom the last reservation left."""
        with self._lock:
            held = self._held.get(key_id)
        if held is None or held[0] != window:
            return 1
        return max(1, min(LEASE_MAX, (limit - held[2]) // LEASE_SHARE))

    def keep(self, key_id: str, window: int, first: int, last: int) -> None:
        with self._lock:
            if len(self._held) > 10_000:  # keys of past windows, never to be asked again
                self._held = {k: v for k, v in self._held.items() if v[0] == window}
            self._held[key_id] = (window, first, last)

    def clear(self) -> None:
        with self._lock:
            self._held.clear()


_leases = _Leases()


def _redis_count(client, key_id: str, window: int, limit: int) -> int:
    """This request's number: the next one this process holds, or the first of a new
    reservation."""
    number = _leases.take(key_id, window)
    if number is not None:
        return number
    size = _leases.size(key_id, window, limit)
    last = _redis_reserve(client, key_id, window, size)
    first = last - size + 1
    _leases.keep(key_id, window, first + 1, last)
    return first


def _sweep_old_windows(root: Path, window: int) -> None:
    """Remove counter directories of windows before the previous one (once per process and
    window)."""
    if _last_window["value"] == window:
        return
    _last_window["value"] = window
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return
    for name in names:
        if name.isdigit() and int(name) < window - 1:
            shutil.rmtree(root / name, ignore_errors=True)


def file_count(root: Path, key_id: str, window: int) -> int:
    """Increment and return the counter of `key_id` in `window`: a file of 8 bytes under
    root/<window>/, updated under an exclusive flock (shared by all processes of the host)."""
    _sweep_old_windows(root, window)
    directory = root / str(window)
    path = directory / key_id
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.pread(fd, 8, 0)
        count = (int.from_bytes(raw, "little") if len(raw) == 8 else 0) + 1
        os.pwrite(fd, count.to_bytes(8, "little"), 0)
        return count
    finally:
        os.close(fd)  # also releases the lock


def count_request(key_id: str, limit: int) -> int | None:
    """This request's number in its key's current window, or None when no counter could be
    kept (then the request is let through)."""
    window = int(time.time()) // WINDOW_SECONDS
    if rediscache.available():
        count = rediscache.run(
            "throttle counter", lambda client: _redis_count(client, key_id, window, limit)
        )
        if count is not None:
            return count
    root = Path(settings.THROTTLE_DIR)
    if _file_breaker.is_open(str(root)):
        return None
    try:
        count = file_count(root, key_id, window)
    except OSError as exc:
        _file_breaker.trip(str(root), exc, what="update")
        return None
    _file_breaker.close(str(root))
    return count


class TenantRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        limit = settings.API_RATE_LIMIT_PER_MINUTE
        principal = request.user
        if not limit or principal is None or not getattr(principal, "is_authenticated", False):
            return True
        count = count_request(str(principal.api_key.id), limit)
        if count is None:
            return True
        self._wait = WINDOW_SECONDS - (time.time() % WINDOW_SECONDS)
        return count <= limit

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
