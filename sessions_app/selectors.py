"""Reads: sessions, their children and what blocks a thread, always within one tenant.

The one module of sessions_app that threads may import: what threads must know about
sessions (is a turn running? what blocks an archive?) it asks here."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import OuterRef, QuerySet

from sessions_app.models import BLOCKING_STATUSES, Session, SessionStatus, SubSession

BLOCKING_SAMPLE_LIMIT = 50
# The statuses of a session that keep its thread from being archived.
ARCHIVE_BLOCKING_STATUSES = BLOCKING_STATUSES
# ... and from being deleted: any but archived (an archived session is history; it goes with
# its thread).
DELETE_BLOCKING_STATUSES = tuple(s for s in SessionStatus.values if s != SessionStatus.ARCHIVED)


def sessions_blocking(
    *, thread_id: str, statuses: Iterable[str] | None = None
) -> tuple[list[dict[str, str]], int]:
    """The thread's sessions (in `statuses`, or all): a sample of at most 50 {id, status},
    oldest first, and the total. Served by session_thread_status."""
    query = Session.objects.filter(thread_id=thread_id)
    if statuses is not None:
        query = query.filter(status__in=list(statuses))
    sample = list(query.order_by("created_at", "id").values("id", "status")[:BLOCKING_SAMPLE_LIMIT])
    total = len(sample) if len(sample) < BLOCKING_SAMPLE_LIMIT else query.count()
    return sample, total


def session_children(*, session: Session) -> QuerySet[SubSession]:
    """The session's sub-session edges with their child sessions, in creation order."""
    return SubSession.objects.filter(parent_id=session.pk).select_related(
        "child", "child__workspace"
    )


def thread_is_generating(*, thread_id: str) -> bool:
    """Is a turn running on the thread: is one of its sessions active?"""
    return Session.objects.filter(thread_id=thread_id, status=SessionStatus.ACTIVE).exists()


def active_sessions_of_outer_thread() -> QuerySet[Session]:
    """The sessions running a turn on the thread of an outer query (correlated on
    OuterRef("pk")): for Exists() in thread queries."""
    return Session.objects.filter(thread_id=OuterRef("pk"), status=SessionStatus.ACTIVE)
