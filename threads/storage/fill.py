"""Filling a thread's hot cache off the request path.

A read that misses the cache is answered with one page from the database and asks for a
fill: a task reads the history in batches (no lock, no transaction), then catches up with
what was written meanwhile and stores it only if the result is exactly the thread's history
at one history_version. Seqs are never reused and rows never edited, so the batches plus the
catch-up hold every current row; equal counts then mean nothing stale is among them (a
truncation, replacement, compaction or flush in between makes them differ, and the fill
starts over). After storing, it catches up with appends that committed while it stored
(their deltas found no cache to apply to). Threads larger than HOT_CACHE_MAX_BYTES
(estimated) or HOT_CACHE_MAX_MESSAGES are not cached: their pages are always read from the
database.
"""

from __future__ import annotations

import logging

from django.conf import settings

from common.tasks import enqueue
from threads.message_format import BYTES_PER_TOKEN, message_json
from threads.models import MESSAGE_COLUMNS, Message, Thread, Tier
from threads.storage import hotcache

logger = logging.getLogger(__name__)

# The Celery task that runs hot_cache_fill (tasks/tasks.py registers it under this name).
HOT_CACHE_FILL_TASK = "threads.hot_cache_fill"
FILL_BATCH = 1000
FILL_ATTEMPTS = 3
# After a fill stored its version, rounds of catching up with appends committed meanwhile.
CATCH_UPS = 3
# One fill per thread at a time; a fill that died frees the claim after this long.
FILL_CLAIM_SECONDS = 30

_HEAD = ("tier", "last_flushed_at", "history_version", "message_count", "state")


def fits(thread: Thread) -> bool:
    """Whether the thread's whole history may live in Redis."""
    return (
        thread.message_count <= hotcache.max_messages()
        and thread.token_estimate * BYTES_PER_TOKEN <= settings.HOT_CACHE_MAX_BYTES
    )


def request_fill(*, thread: Thread) -> bool:
    """After a miss: enqueue a fill unless one is running for the thread, Redis is down, or
    the thread does not fit. Returns whether one was enqueued."""
    if not hotcache.available():
        return False
    if not fits(thread):
        return False
    if not hotcache.fill_claim(thread.pk, seconds=FILL_CLAIM_SECONDS):
        return False
    try:
        enqueue(HOT_CACHE_FILL_TASK, thread.pk)
    except Exception:
        hotcache.fill_release(thread.pk)
        logger.warning("could not enqueue the hot cache fill of %s", thread.pk, exc_info=True)
        return False
    return True


def hot_cache_fill(*, thread_id: str) -> str:
    """The task's body: "filled", "current" (the cache had it), "skipped" (cold, gone, too
    large, Redis down) or "changed" (the history kept changing; the next miss asks again)."""
    try:
        for _ in range(FILL_ATTEMPTS):
            outcome = _fill_once(thread_id)
            if outcome != "changed":
                return outcome
        return "changed"
    finally:
        hotcache.fill_release(thread_id)


def _fill_once(thread_id: str) -> str:
    thread = Thread.objects.filter(pk=thread_id).only(*_HEAD, "token_estimate").first()
    if thread is None or thread.tier != Tier.HOT or not fits(thread):
        return "skipped"
    members: list[tuple[int, str]] = []
    while True:
        after = members[-1][0] if members else 0
        batch = _rows_after(thread_id, after, FILL_BATCH)
        members += batch
        if len(batch) < FILL_BATCH:
            break
    # The catch-up and the head of the thread at one history_version (a seqlock: the head
    # read before and after the tail must be the same).
    head = _head(thread_id)
    if head is None or head[0] != Tier.HOT:
        return "skipped"
    tail = _rows_after(thread_id, members[-1][0] if members else 0, None)
    if _head(thread_id) != head:
        return "changed"
    members += tail
    _, _, version, count, state = head
    if len(members) != count:
        return "changed"
    written = hotcache.rebuild(
        thread_id=thread_id, history_version=version, members=members, state=state
    )
    for _ in range(CATCH_UPS):
        caught = _catch_up(thread_id, members, version)
        if caught is None:
            break
        members, version = caught
        written = True
    return "filled" if written else "current"


def _catch_up(thread_id: str, members: list, version: int) -> tuple[list, int] | None:
    """After a fill stored `version`: if appends committed meanwhile, store the history
    with them too. An append that committed between the fill's last head read and its
    store found no cache to apply its delta to, and left the stored version behind the
    row's: without this, appenders racing a fill kept the cache from ever being current.
    Returns (members, version) stored, or None when there is nothing to catch up (or the
    history changed in another way than appends: the next miss asks again)."""
    head = _head(thread_id)
    if head is None or head[0] != Tier.HOT or head[2] == version:
        return None
    tail = _rows_after(thread_id, members[-1][0] if members else 0, None)
    if _head(thread_id) != head:
        return members, version  # moved again meanwhile: the next round catches up
    _, _, new_version, count, state = head
    if len(members) + len(tail) != count:
        return None  # not only appends (a truncation, replacement, compaction)
    members = members + tail
    hotcache.rebuild(thread_id=thread_id, history_version=new_version, members=members, state=state)
    return members, new_version


def _head(thread_id: str) -> tuple | None:
    return Thread.objects.filter(pk=thread_id).values_list(*_HEAD).order_by().first()


def _rows_after(thread_id: str, after: int, limit: int | None) -> list[tuple[int, str]]:
    query = Message.objects.filter(thread_id=thread_id, seq__gt=after).order_by("seq")
    rows = query.values_list(*MESSAGE_COLUMNS)
    if limit is not None:
        rows = rows[:limit]
    return [(row[1], message_json(*row)) for row in rows]
