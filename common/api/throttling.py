"""A fixed-window request counter per API key (API_RATE_LIMIT_PER_MINUTE), shared by every
process that serves the API.

Where the counter lives, so that the limit holds across processes in every supported setup:
- With Redis (REDIS_URL): one counter per key and minute in Redis (one EVALSHA of INCR +
  EXPIRE per request), shared by every process on every host.
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
import time
from pathlib import Path

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from common import rediscache
from common.breaker import Breaker

WINDOW_SECONDS = 60

# KEYS[1]: the counter; ARGV[1]: its TTL. One round trip; the TTL is set with the first hit.
_INCR = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""

_file_breaker = Breaker("throttle counter file")
_scripts: dict[str, object] = {}
_last_window = {"value": -1}


def _redis_count(client, key_id: str, window: int) -> int:
    script = _scripts.get("incr")
    if script is None:
        script = _scripts["incr"] = client.register_script(_INCR)
    key = f"tl:throttle:{{{key_id}}}:{window}"
    return int(script(keys=[key], args=[WINDOW_SECONDS * 2], client=client))


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


def count_request(key_id: str) -> int | None:
    """This request's number in its key's current window, or None when no counter could be
    kept (then the request is let through)."""
    window = int(time.time()) // WINDOW_SECONDS
    if rediscache.available():
        count = rediscache.run(
            "throttle counter", lambda client: _redis_count(client, key_id, window)
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
        count = count_request(str(principal.api_key.id))
        if count is None:
            return True
        self._wait = WINDOW_SECONDS - (time.time() % WINDOW_SECONDS)
        return count <= limit

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
