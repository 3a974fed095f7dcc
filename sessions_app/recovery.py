"""Lock recovery: revert what a crashed (or stuck) process left holding a session locked.

A handoff or a spawn holds a session *locked by status* with a lease and a lock token while
it provisions workspaces; if its process dies the lease runs out and the sweep
(session_locks_recover, on the beat schedule and `manage.py recover_session_locks`) puts
the session back and disposes the workspaces the operation made.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from sessions_app.models import (
    Session,
    SessionStatus,
    SubSession,
    SubSessionKind,
    SubSessionStatus,
    Workspace,
    WorkspaceStatus,
)
from sessions_app.session_rows import session_event
from sessions_app.signals import LEASE_EXPIRED, session_lock_released_send
from sessions_app.workspaces import WorkspaceError, workspace_dispose
from threads import events, locks

logger = logging.getLogger(__name__)

S = SessionStatus

SWEEP_BATCH = 200
_LIVE_WORKSPACE = (WorkspaceStatus.PROVISIONING, WorkspaceStatus.READY)


def session_lock_recover(*, session: Session, force: bool = False) -> bool:
    """Revert a lock a crashed (or stuck) process left behind; returns whether it did.

    Without `force` only a lock whose lease expired is taken (the sweep); with it (the
    admin action) any lock. The revert is a conditional UPDATE on the lock token read
    first, so of two sweepers exactly one wins, and a handoff that is still alive fails its
    commit (its token no longer holds) and rolls itself back.

    - A handoff's source: back to idle, owner_version unchanged, its pending handoff rows
      rolled back.
    - A spawn that never committed (locked child on a pending agent_spawn edge): the child
      is deleted, as the spawn's own compensation would have done.
    Either way the workspaces the operation made are disposed (after the commit)."""
    now = timezone.now()
    token = (
        Session.objects.filter(pk=session.pk, status=S.LOCKED)
        .values_list("lock_token", flat=True)
        .first()
    )
    if token is None:
        return False
    claim = {"status": S.LOCKED, "lock_token": token}
    if not force:
        claim["lock_expires_at__lt"] = now
    with transaction.atomic():
        held = locks.lock_session_where(session.pk, **claim)
        if held is None:
            return False
        spawn = SubSession.objects.filter(
            pk=token, child_id=held.pk, kind=SubSessionKind.AGENT_SPAWN
        ).first()
        payload = {"lock_token": token, "lock_expires_at": _iso(held.lock_expires_at)}
        if spawn is not None and spawn.status == SubSessionStatus.PENDING:
            parent = Session.objects.get(pk=spawn.parent_id)
            child_id = held.pk
            held.delete()  # its edge goes with it (CASCADE)
            session_event(parent, events.SESSION_LOCK_RECOVERED, removed_child=child_id, **payload)
        else:
            Session.objects.filter(pk=held.pk).update(
                status=S.IDLE, lock_token="", lock_expires_at=None, updated_at=now
            )
            rolled_back = session_lock_released_send(
                session_id=held.pk, lock_token=token, action=LEASE_EXPIRED
            )
            session_event(
                held, events.SESSION_LOCK_RECOVERED, handoffs_rolled_back=rolled_back, **payload
            )
    for workspace in Workspace.objects.filter(
        operation=token, session__isnull=True, status__in=_LIVE_WORKSPACE
    ):
        try:
            workspace_dispose(workspace=workspace)
        except WorkspaceError:
            logger.exception("lock recovery: disposing %s", workspace.pk)
    return True


def session_locks_recover(*, limit: int = SWEEP_BATCH) -> dict[str, int]:
    """The sweep: revert every lock past its lease, then dispose orphaned workspaces
    (unattached past their operation's lease — nothing can commit them any more — and those
    of archived sessions whose dispose failed earlier)."""
    now = timezone.now()
    # Served by session_locked_lease (partial index on locked sessions).
    expired = list(
        Session.objects.filter(status=S.LOCKED, lock_expires_at__lt=now).order_by(
            "lock_expires_at"
        )[:limit]
    )
    recovered = sum(1 for session in expired if session_lock_recover(session=session))
    disposed = 0
    # Served by workspace_live_lease for the first branch.
    orphans = Workspace.objects.filter(
        Q(session__isnull=True, lease_expires_at__lt=now) | Q(session__status=S.ARCHIVED),
        status__in=_LIVE_WORKSPACE,
    ).order_by("created_at")[:limit]
    for workspace in orphans:
        try:
            workspace_dispose(workspace=workspace)
            disposed += 1
        except WorkspaceError:
            logger.exception("sweep: disposing orphaned workspace %s", workspace.pk)
    return {"recovered": recovered, "workspaces_disposed": disposed}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
