"""Writes: spawn, a child session an agent starts under its own (agent_spawn edge), with
its workspace and the compensation that undoes a spawn that did not commit.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from common.ids import new_id
from sessions_app.capacity import check_depth, check_width
from sessions_app.errors import LockExpired, WorkspaceUnavailable
from sessions_app.models import (
    Session,
    SessionStatus,
    SubSession,
    SubSessionKind,
    SubSessionStatus,
    Workspace,
)
from sessions_app.session_rows import Actor, illegal_transition, lease_seconds, session_event
from sessions_app.transitions import thread_lifecycle_sync
from sessions_app.workspaces import (
    WorkspaceError,
    workspace_attach,
    workspace_dispose,
    workspace_provision,
)
from threads import events, locks
from threads.models import Project

logger = logging.getLogger(__name__)

S = SessionStatus


def session_spawn(
    *, session: Session, actor: Actor, workspace_backend: str | None = None
) -> tuple[Session, SubSession]:
    """A child session (active) with its agent_spawn edge and its workspace.

    1. Reserve, in one short transaction holding the parent's row lock (so concurrent spawns
       count each other): capacity checks, then the child (locked, with a lease) and its
       edge (pending). The pending child takes its width slot.
    2. Provision the workspace, outside any transaction.
    3. Commit: child locked → active, edge → active, workspace attached.

    Any failure compensates: the workspace is disposed and the child deleted (its edge with
    it), so the parent is untouched and the width slot is free again. A crash between 1 and
    3 is compensated by session_locks_recover once the lease expires."""
    project = Project.objects.get(pk=session.project_id)
    backend = workspace_backend or project.workspace_backend
    with transaction.atomic():
        locks.lock_open_thread(session.thread_id)
        parent = locks.lock_session(session.pk)
        if parent.status not in (S.IDLE, S.ACTIVE):
            raise illegal_transition(parent.pk, "spawn")
        check_depth(session=parent, project=project)
        check_width(session=parent, project=project, pending=1)
        token = new_id("sub")
        expires = timezone.now() + timedelta(seconds=lease_seconds())
        child = Session.objects.create(
            tenant_id=parent.tenant_id,
            thread_id=parent.thread_id,
            project_id=parent.project_id,
            status=S.LOCKED,
            current_actor=actor,
            depth=parent.depth + 1,
            lock_token=token,
            lock_expires_at=expires,
        )
        edge = SubSession.objects.create(
            id=token,
            tenant_id=parent.tenant_id,
            parent=parent,
            child=child,
            kind=SubSessionKind.AGENT_SPAWN,
        )

    made: list[Workspace] = []
    try:
        workspace = workspace_provision(
            tenant_id=parent.tenant_id,
            project_id=parent.project_id,
            backend=backend,
            label=f"spawn-{edge.pk}",
            operation=token,
            lease_expires_at=expires,
        )
        if workspace is not None:
            made.append(workspace)
        with transaction.atomic():
            thread = locks.lock_open_thread(parent.thread_id)
            now = timezone.now()
            committed = Session.objects.filter(
                pk=child.pk, status=S.LOCKED, lock_token=token, lock_expires_at__gt=now
            ).update(
                status=S.ACTIVE,
                lock_token="",
                lock_expires_at=None,
                workspace=workspace,
                updated_at=now,
            )
            if not committed:
                raise LockExpired(session=child.pk)
            if workspace is not None:
                workspace_attach(workspace=workspace, session_id=child.pk)
            SubSession.objects.filter(pk=edge.pk).update(
                status=SubSessionStatus.ACTIVE, updated_at=now
            )
            thread_lifecycle_sync(thread)
            session_event(
                parent,
                events.SESSION_SPAWNED,
                child=child.pk,
                subsession=edge.pk,
                actor=actor,
                workspace=workspace.pk if workspace else None,
            )
    except Exception as exc:
        _spawn_compensate(parent=parent, child=child, token=token, made=made, error=exc)
        if isinstance(exc, WorkspaceError):
            raise WorkspaceUnavailable(
                backend=backend, reason=str(exc), partial_state={"workspaces_provisioned": 0}
            ) from exc
        raise
    child.refresh_from_db()
    edge.refresh_from_db()
    return child, edge


def _spawn_compensate(
    *, parent: Session, child: Session, token: str, made: list[Workspace], error: Exception
) -> None:
    """Undo a spawn that did not commit. Errors here are logged, never raised over `error`."""
    for workspace in made:
        try:
            workspace_dispose(workspace=workspace)
        except Exception:
            logger.exception("spawn rollback: disposing %s", workspace.pk)
    try:
        with transaction.atomic():
            # Only a child still held by this spawn (not one the sweep already removed).
            doomed = locks.lock_session_where(child.pk, status=S.LOCKED, lock_token=token)
            if doomed is not None:
                doomed.delete()  # its edge goes with it (CASCADE)
            session_event(
                parent,
                events.SESSION_SPAWN_ROLLED_BACK,
                child=child.pk,
                subsession=token,
                error=str(error)[:500],
            )
    except Exception:
        logger.exception("spawn rollback: removing child %s", child.pk)
