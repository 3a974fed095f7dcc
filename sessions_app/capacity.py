"""Delegation capacity: how deep and how wide a session's tree of children may grow.

- Depth of a new child = the length of its parent's ancestry (root … parent, inclusive),
  i.e. the parent's `depth`; it fails when that is greater than the project's
  `max_delegation_depth` (a chain root→c1→c2→c3→c4 may spawn under c4 when the limit is 5).
- Width = the parent's live delegates (spawn and broadcast edges not merged or archived);
  it fails when they plus the requested ones would be more than `max_delegation_width`. A
  single handoff takes no slot, neither when it is made nor afterwards: it replaces the
  session's owner rather than adding a delegate.

Both raise 409 capacity_exceeded {dimension, current, limit, session}, `current` being the
count as it is now (width: also `requested`, the children asked for). For the width count to
hold under concurrency, call check_width with the parent's row locked (or the parent locked
by status) until the new children are inserted.
"""

from __future__ import annotations

from sessions_app.errors import CapacityExceeded
from sessions_app.models import CLOSED_EDGE_STATUSES, Session, SubSession, SubSessionKind
from threads.models import Project


def live_children(*, session: Session) -> int:
    """Delegations still open: spawns and broadcast recipients not merged or archived.
    Interventions have their own cap (max_intervention_depth) and single handoffs (a
    user_handoff edge with no broadcast) replace the owner: neither takes a width slot."""
    # Served by subsession_parent_created (parent is its leading column).
    return (
        SubSession.objects.filter(parent_id=session.pk)
        .exclude(kind=SubSessionKind.INTERVENTION)
        .exclude(kind=SubSessionKind.USER_HANDOFF, broadcast_id__isnull=True)
        .exclude(status__in=CLOSED_EDGE_STATUSES)
        .count()
    )


def check_width(*, session: Session, project: Project, pending: int) -> None:
    current = live_children(session=session)
    limit = project.max_delegation_width
    if current + pending > limit:
        raise CapacityExceeded(
            f"The session has {current} live delegate(s); {pending} more would exceed the "
            f"width limit of {limit}.",
            dimension="width",
            current=current,
            requested=pending,
            limit=limit,
            session=session.pk,
        )


def check_depth(*, session: Session, project: Project) -> None:
    if session.depth > project.max_delegation_depth:
        raise CapacityExceeded(
            f"The session is at depth {session.depth}; the depth limit is "
            f"{project.max_delegation_depth}.",
            dimension="depth",
            current=session.depth,
            limit=project.max_delegation_depth,
            session=session.pk,
        )
