"""What compaction, warming and the steering queue share: their errors, the "is a turn
running?" check, hydration of a cold thread, and reading a history for the provider."""

from __future__ import annotations

from typing import Any

from common.errors import DomainError
from threads.models import MESSAGE_COLUMNS, Lifecycle, Message, Thread


class TooShort(DomainError):
    code = "too_short"
    message = "The conversation is too short to compact."


class NoHistory(DomainError):
    code = "no_history"
    message = "The thread has no history to warm."


class CompactionInProgress(DomainError):
    code = "compaction_in_progress"
    message = "A compaction of this thread is already queued or running."


class CompactionNotSucceeded(DomainError):
    code = "compaction_not_succeeded"
    message = "Only a succeeded compaction has archived originals."


def thread_is_generating(*, thread: Thread) -> bool:
    """Is a turn running: is one of the thread's sessions active?

    Sessions live in sessions_app (imported lazily: threads must not depend on it at import
    time). Without it, the thread's lifecycle says the same thing."""
    try:
        from sessions_app.models import Session, SessionStatus
    except ImportError:  # pragma: no cover - sessions_app is always installed in practice
        return thread.lifecycle == Lifecycle.ACTIVE
    return Session.objects.filter(thread_id=thread.pk, status=SessionStatus.ACTIVE).exists()


def ensure_hot(*, thread: Thread) -> Thread:
    """A cold thread's messages are in the cold store: bring them back before reading them
    (threads.tiers does the hydrate; it is idempotent and a no-op on a hot thread)."""
    try:
        from threads.tiers import thread_ensure_hot
    except ImportError:
        return thread
    result = thread_ensure_hot(thread=thread)
    if isinstance(result, Thread):
        return result
    thread.refresh_from_db()
    return thread


def hot_cache_invalidate_on_commit(*, thread_id: str) -> None:
    """After a history rewrite, drop the thread's Redis copy once the rows are committed.

    The hot cache validates itself against `history_version` (bumped by the rewrite), so
    this only saves the next reader a rebuild-on-mismatch."""
    try:
        from threads.hotcache import on_commit_drop
    except ImportError:  # pragma: no cover - the hot cache module is part of threads
        return
    on_commit_drop(thread_id=thread_id)


def history_read(*, thread_id: str, up_to_seq: int | None = None) -> list[dict[str, Any]]:
    """The thread's messages in seq order, as dicts (optionally only seq ≤ up_to_seq)."""
    query = Message.objects.filter(thread_id=thread_id)
    if up_to_seq is not None:
        query = query.filter(seq__lte=up_to_seq)
    return list(query.order_by("seq").values(*MESSAGE_COLUMNS))
