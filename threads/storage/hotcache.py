"""The hot tier's Redis cache (django-redis): per thread, the message list already serialized
as the API's JSON, the state slice, and a meta record naming the history version they show.

Layout — every key of a thread carries the hash tag `{<thread id>}`, so on Redis Cluster they
live in one slot and the Lua scripts below may touch them together:

    tl:{thd_…}:messages   sorted set: member = the message's API JSON, score = its seq
    tl:{thd_…}:state      string: the state slice as JSON ("null" when unset)
    tl:{thd_…}:meta       hash: hv = the thread's history_version the keys reflect,
                                n  = how many members the sorted set must hold

A sorted set rather than zeitlich's list because `GET …/messages?after_seq=&limit=` is then a
single ZRANGEBYSCORE, and seqs have gaps after a truncation. Members are the exact bytes the
API returns, so a hit costs neither the query nor per-message shaping: the view joins them.

Trust: PostgreSQL is the system of record; this is a cache that is never trusted blindly.
- A read passes in the thread row it loaded anyway; the cache answers only when its hv equals
  the row's history_version and the set is complete (ZCARD == n, which catches a key evicted
  or expired on its own). Otherwise the caller rebuilds from the database.
- Writers refresh it after their commit (transaction.on_commit) with a delta that applies
  only on top of the exact version they replaced (compare-and-set inside Lua); a rebuild only
  replaces an older version. A slow writer can therefore never put an older history over a
  newer one, and whatever the interleaving, a mismatch is detected by the next read.

Redis is optional: off unless the default cache is django-redis (REDIS_URL set). Any Redis
error is logged as a warning and treated as a miss — the request is served from the database,
never a 500. After an error the location is skipped for a few seconds (the circuit breaker
shared with the throttle, common/breaker.py), so a black-holed Redis costs one socket timeout
per process every few seconds rather than one per request, and one log line per period.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.db import transaction

from common import rediscache
from threads.message_format import message_json

logger = logging.getLogger(__name__)

# Threads longer than this are served page by page from the database instead: a miss would
# otherwise read (and ship to Redis) the whole history to answer one page.
DEFAULT_MAX_MESSAGES = 20_000

Member = tuple[int, str | bytes]  # (seq, the message's API JSON)

# A delta adds (seq, member) pairs from args[first…] to a sorted set, in batches so one ZADD
# never takes more arguments than Lua's unpack() allows; both scripts end by applying the
# parked deltas that follow the version they reached (see _DELTA).
_LUA_HELPERS = """
local function zadd_pairs(key, args, first)
  local batch = {}
  for i = first, #args, 2 do
    batch[#batch + 1] = args[i]
    batch[#batch + 1] = args[i + 1]
    if #batch >= 512 then
      redis.call('ZADD', key, unpack(batch))
      batch = {}
    end
  end
  if #batch > 0 then redis.call('ZADD', key, unpack(batch)) end
end

-- d = {op, new hv, the op's arguments…}
local function apply(d)
  local op = d[1]
  if op == 'append' then
    zadd_pairs(KEYS[2], d, 3)
  elseif op == 'truncate' then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], d[3], '+inf')
  elseif op == 'state' then
    redis.call('SET', KEYS[3], d[3])
  end
  return tonumber(d[2])
end

local function apply_parked(hv)
  while true do
    local packed = redis.call('HGET', KEYS[4], tostring(hv))
    if not packed then return hv end
    redis.call('HDEL', KEYS[4], tostring(hv))
    hv = apply(cjson.decode(packed))
  end
end
"""

# Rebuild: replace the thread's keys with a complete history at version ARGV[1], unless the
# cache already holds that version (complete) or a newer one. The members are not in the
# call: rebuild() ZADDs them natively into a staging key first (KEYS[5], in the thread's slot),
# and this script only checks the versions and renames it into place. A 10,000-message history
# fed through ARGV to ZADDs from Lua kept Redis busy (and every other client waiting) for
# about 25 ms; the native ZADDs take a fifth of that, in batches other commands interleave.
# KEYS: meta, messages, state, parked, staging. ARGV: hv, ttl, state JSON, member count.
_REBUILD = (
    _LUA_HELPERS
    + """
local cur = tonumber(redis.call('HGET', KEYS[1], 'hv'))
local hv = tonumber(ARGV[1])
if (cur and cur > hv) or
   (cur == hv and redis.call('ZCARD', KEYS[2]) == tonumber(redis.call('HGET', KEYS[1], 'n'))) then
  redis.call('DEL', KEYS[5])
  return 0
end
if redis.call('ZCARD', KEYS[5]) ~= tonumber(ARGV[4]) then
  redis.call('DEL', KEYS[5])
  return -1
end
if tonumber(ARGV[4]) == 0 then
  redis.call('DEL', KEYS[2])
else
  redis.call('RENAME', KEYS[5], KEYS[2])
end
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[2])
hv = apply_parked(hv)
redis.call('HSET', KEYS[1], 'hv', hv, 'n', redis.call('ZCARD', KEYS[2]))
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
return 1
"""
)

# Members per ZADD of a rebuild's staging pipeline.
STAGING_BATCH = 1000
# A staging key a rebuild could not rename (its process died between the two round trips)
# expires on its own after this long (seconds).
STAGING_TTL_SECONDS = 60

# Delta: apply one change that took the thread from version ARGV[2] to ARGV[3], on top of
# exactly ARGV[2]. A cache at an older version is waiting for an earlier change whose
# writer has not reached Redis yet (two appends commit in one order and their after-commit
# deltas may arrive in the other): the delta is parked, keyed by its old version, for
# PARKED_TTL_SECONDS, and applied as soon as the cache reaches that version (the earlier
# delta, or a rebuild, lands). A version names one history, so a parked delta is right on
# top of any cache at its old version. An incomplete cache is dropped, a newer one kept, an
# absent one stays absent (the next read rebuilds); a change that never arrives leaves the
# cache at its version, which reads then find stale (they compare it with the row).
# KEYS: meta, messages, state, parked. ARGV: op, old hv, new hv, ttl, parked ttl, then the
# op's arguments: append: seq/member pairs · truncate: the first seq removed · state: JSON
_DELTA = (
    _LUA_HELPERS
    + """
local cur = tonumber(redis.call('HGET', KEYS[1], 'hv'))
if not cur then return 0 end
local old = tonumber(ARGV[2])
local new = tonumber(ARGV[3])
if cur >= new then return 0 end
if redis.call('ZCARD', KEYS[2]) ~= tonumber(redis.call('HGET', KEYS[1], 'n')) then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return -1
end
local d = {ARGV[1], ARGV[3]}
for i = 6, #ARGV do d[#d + 1] = ARGV[i] end
if cur < old then
  redis.call('HSET', KEYS[4], ARGV[2], cjson.encode(d))
  redis.call('EXPIRE', KEYS[4], ARGV[5])
  return 2
end
local hv = apply_parked(apply(d))
redis.call('HSET', KEYS[1], 'hv', hv, 'n', redis.call('ZCARD', KEYS[2]))
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
return 1
"""
)

# How long a delta waits for the one before it (seconds): a writer that has committed
# reaches Redis within milliseconds, unless it died (then reads rebuild).
PARKED_TTL_SECONDS = 10


# --- Connection ------------------------------------------------------------------------


def enabled() -> bool:
    """Whether the hot cache is on: the default cache is django-redis."""
    return rediscache.enabled()


def available() -> bool:
    """Enabled and not known to be failing right now (the shared Redis breaker is closed)."""
    return rediscache.available()


def max_messages() -> int:
    return int(getattr(settings, "HOT_CACHE_MAX_MESSAGES", DEFAULT_MAX_MESSAGES))


def _run(what: str, operation: Callable[[Any], Any], default: Any = None) -> Any:
    """Run `operation(client)`; on any Redis failure the shared breaker opens (one warning
    per period) and `default` comes back — the caller then uses the database."""
    return rediscache.run(f"hot cache {what}", operation, default)


def keys(thread_id: str) -> tuple[str, str, str]:
    """(meta, messages, state) of a thread; one hash tag, so one cluster slot."""
    tag = f"tl:{{{thread_id}}}"
    return f"{tag}:meta", f"{tag}:messages", f"{tag}:state"


def parked_key(thread_id: str) -> str:
    """The hash of deltas waiting for an earlier one (_DELTA), in the thread's slot."""
    return f"tl:{{{thread_id}}}:parked"


def _ttl() -> int:
    return int(settings.HOT_TTL_SECONDS)


def _pairs(members: Sequence[Member]) -> list[Any]:
    flat: list[Any] = []
    for seq, member in members:
        flat.append(seq)
        flat.append(member)
    return flat


def _state_json(state: Any) -> str:
    return json.dumps(state, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


# --- Reads -----------------------------------------------------------------------------


def page(*, thread, after_seq: int, limit: int) -> tuple[list[bytes], int | None] | None:
    """Up to `limit` messages after `after_seq` as JSON bytes, plus the next cursor; None on
    a miss (nothing cached, another version cached, incomplete, or Redis unavailable).

    One MULTI/EXEC round trip; a hit also slides the TTL of the thread's keys."""
    meta, messages, state = keys(thread.pk)
    ttl = _ttl()

    def read(client):
        pipe = client.pipeline(transaction=True)
        pipe.hmget(meta, "hv", "n")
        pipe.zcard(messages)
        # No scores: they would double what is parsed; the cursor is read from the last
        # member of the page instead.
        pipe.zrangebyscore(messages, f"({after_seq}", "+inf", start=0, num=limit + 1)
        for key in (meta, messages, state):
            pipe.expire(key, ttl)
        return pipe.execute()

    result = _run("read", read)
    if result is None:
        return None
    (hv, n), card, rows = result[0], result[1], result[2]
    if hv is None or n is None or int(hv) != thread.history_version or int(n) != card:
        return None
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, json.loads(rows[-1])["seq"]


def state_get(*, thread) -> tuple[bool, Any]:
    """(hit, state): the cached state slice when it reflects the row's history version."""
    meta, _, state = keys(thread.pk)

    def read(client):
        pipe = client.pipeline(transaction=True)
        pipe.hget(meta, "hv")
        pipe.get(state)
        return pipe.execute()

    result = _run("state read", read)
    if result is None or result[0] is None or result[1] is None:
        return False, None
    if int(result[0]) != thread.history_version:
        return False, None
    return True, json.loads(result[1])


def probe() -> tuple[str, str]:
    """Readiness: "ok" when Redis answers, "degraded" when it does not or its breaker is open
    (requests are then served from the database), "ok" with "off" when no Redis is
    configured. /readyz is unauthenticated: the detail names no host, port or password."""
    if not enabled():
        return "ok", "off (REDIS_URL unset)"
    if not available():
        return "degraded", "unavailable (breaker open)"
    if not rediscache.run("ping", lambda client: client.ping(), default=False):
        return "degraded", "unavailable"
    return "ok", "redis"


# --- Writes ----------------------------------------------------------------------------


def _staging_key(thread_id: str) -> str:
    """A staging key of its own for one rebuild (concurrent rebuilds never share one), in
    the thread's slot; readers never look at it."""
    return f"tl:{{{thread_id}}}:staging:{secrets.token_hex(6)}"


def _stage(client, staging: str, members: Sequence[Member]) -> None:
    """ZADD `members` into `staging` (one pipeline of batches, with an expiry)."""
    if not members:
        return
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(members), STAGING_BATCH):
        pipe.execute_command("ZADD", staging, *_pairs(members[start : start + STAGING_BATCH]))
    pipe.expire(staging, STAGING_TTL_SECONDS)
    pipe.execute()


def _publish(client, thread_id: str, staging: str, history_version: int, count: int, state: Any):
    """_REBUILD: rename `staging` into place if the versions allow and it holds `count`
    members (a staging pipeline cut short leaves it incomplete: then nothing is written)."""
    meta, messages, state_key = keys(thread_id)
    return client.register_script(_REBUILD)(
        keys=[meta, messages, state_key, parked_key(thread_id), staging],
        args=[history_version, _ttl(), _state_json(state), count],
    )


def rebuild(*, thread_id: str, history_version: int, members: Sequence[Member], state: Any) -> bool:
    """Store a complete history at `history_version` unless the cache already has it or a
    newer one. `members` in seq order. Returns whether it wrote. Two round trips: the
    staging pipeline, then _REBUILD. (Staging beside a hydrate's COPY, in a thread, was
    measured: the two share the GIL, and the hydrate took as long.)"""
    staging = _staging_key(thread_id)

    def write(client):
        _stage(client, staging, members)
        return _publish(client, thread_id, staging, history_version, len(members), state)

    return _run("rebuild", write, default=0) == 1


def _delta(thread_id: str, op: str, old: int, new: int, *args: Any) -> None:
    meta, messages, state = keys(thread_id)
    _run(
        f"{op} write-through",
        lambda client: client.register_script(_DELTA)(
            keys=[meta, messages, state, parked_key(thread_id)],
            args=[op, old, new, _ttl(), PARKED_TTL_SECONDS, *args],
        ),
    )


def drop(thread_id: str) -> None:
    """Delete the thread's keys (after a flush, or when a change is easier to rebuild)."""
    _run("drop", lambda client: client.delete(*keys(thread_id), parked_key(thread_id)))


# The write-through of each kind of change, registered to run after the commit of the
# transaction it is called in (immediately when there is none). Callers hold the thread's
# row lock, so `old` is exact and `new` == old + 1.


def on_commit_append(
    *, thread_id: str, old_version: int, new_version: int, members: Sequence[Member]
) -> None:
    if enabled():
        pairs = _pairs(members)
        transaction.on_commit(
            lambda: _delta(thread_id, "append", old_version, new_version, *pairs), robust=True
        )


def on_commit_truncate(
    *, thread_id: str, old_version: int, new_version: int, from_seq: int
) -> None:
    if enabled():
        transaction.on_commit(
            lambda: _delta(thread_id, "truncate", old_version, new_version, from_seq), robust=True
        )


def on_commit_state(*, thread_id: str, old_version: int, new_version: int, state: Any) -> None:
    if enabled():
        body = _state_json(state)
        transaction.on_commit(
            lambda: _delta(thread_id, "state", old_version, new_version, body), robust=True
        )


def on_commit_rebuild(
    *, thread_id: str, history_version: int, members: Sequence[Member], state: Any
) -> None:
    """A whole new history (replace, hydrate): write it as a rebuild after the commit."""
    if enabled():
        transaction.on_commit(
            lambda: rebuild(
                thread_id=thread_id,
                history_version=history_version,
                members=members,
                state=state,
            ),
            robust=True,
        )


def on_commit_drop(*, thread_id: str) -> None:
    """Drop the keys after the commit; the next read rebuilds. For paths that change history
    in ways simpler to rebuild than to patch (compaction, flush)."""
    if enabled():
        transaction.on_commit(lambda: drop(thread_id), robust=True)


def members_of(rows: Sequence[tuple]) -> list[Member]:
    """Message rows (tuples in MESSAGE_COLUMNS order) as the cache holds them; [] when the
    cache is off (nothing is serialized for a cache that will not be written)."""
    if not enabled():
        return []
    return [(row[1], message_json(*row)) for row in rows]


def _fill_key(thread_id: str) -> str:
    return f"tl:{{{thread_id}}}:fill"


def fill_claim(thread_id: str, *, seconds: int) -> bool:
    """Claim the thread's cache fill (SET NX with an expiry); False when one is claimed."""
    return bool(_run("fill claim", lambda c: c.set(_fill_key(thread_id), 1, nx=True, ex=seconds)))


def fill_release(thread_id: str) -> None:
    _run("fill release", lambda c: c.delete(_fill_key(thread_id)))
