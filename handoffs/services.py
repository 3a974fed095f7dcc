"""Single and broadcast handoffs with owner versions and full rollback.

    1. checks + lock → 2. provision (no transaction) → 3. commit
                                └── any failure → rollback

1. Lock: one short transaction. The source is read with its thread's row lock, and checked
   in the documented order (a failed check rolls back: nothing is written). A conditional
   UPDATE moves the source idle → locked with a lease and a lock token (the handoff's id),
   only if its status and owner_version are still what was checked; the pending Handoff
   rows are written with it. Of any number of concurrent handoffs on one source exactly
   one gets a row count of 1; the others 409.
2. Provision: one workspace per recipient, outside any transaction (git and the filesystem
   are slow; no database lock is held meanwhile — the source is locked *by status*).
3. Commit: one transaction creates the recipient sessions, their user_handoff edges, marks
   the Handoff rows committed and moves the source (single: idle, new owner; broadcast:
   awaiting_merge), only while the lock token and lease still hold.
Rollback: dispose the workspaces made so far, put the source back to idle (version
unchanged), mark the Handoff rows rolled_back, record handoff.rolled_back with the
partial state. Errors in the rollback are logged, never raised over the first one.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from common.errors import InvalidInput, NotFound, ThreadArchived
from handoffs import selectors
from handoffs.errors import DuplicateRecipient, SessionNotIdle, VersionConflict
from handoffs.models import Handoff, HandoffMode, HandoffOutcome
from handoffs.statements import Insert, Update, claim_with
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
from sessions_app.session_rows import Actor, lease_seconds, session_event, session_event_row
from sessions_app.signals import LEASE_EXPIRED
from sessions_app.workspaces import (
    WorkspaceError,
    workspace_attach,
    workspace_dispose,
    workspace_provision,
)
from threads import events
from threads.models import Tenant, ThreadStatus

logger = logging.getLogger(__name__)

S = SessionStatus

# Why a non-idle source cannot be handed off (namzu's HandoffLockRejected reasons).
NOT_IDLE_REASONS = {
    S.ACTIVE: "active_run",
    S.LOCKED: "active_run",
    S.FAILED: "active_run",
    S.ARCHIVED: "active_run",
    S.AWAITING_HITL: "pending_hitl",
    S.AWAITING_MERGE: "pending_subsession",
}


@dataclass
class PartialState:
    """How far a failed handoff got before its rollback undid it."""

    sessions_created: int = 0
    subsessions_created: int = 0
    workspaces_provisioned: int = 0


@dataclass(frozen=True)
class HandoffResult:
    id: str
    mode: str
    new_owner_version: int
    recipient_sessions: list[Session]
    handoffs: list[Handoff]


def _invalid_recipients(message: str) -> InvalidInput:
    return InvalidInput(message, fields={"recipients": [message]})


def _check_recipients(mode: str, recipients: list[Actor]) -> None:
    if not recipients:
        raise _invalid_recipients("recipients must not be empty.")
    if mode == HandoffMode.SINGLE and len(recipients) != 1:
        raise _invalid_recipients("A single handoff has exactly one recipient.")
    if mode == HandoffMode.BROADCAST and len(recipients) < 2:
        raise _invalid_recipients(
            "A broadcast has at least two recipients; use mode single for one."
        )
    seen: set[tuple[str, str]] = set()
    for index, actor in enumerate(recipients):
        key = (actor["kind"], actor["id"])
        if key in seen:
            raise DuplicateRecipient(recipient=actor, index=index)
        seen.add(key)


def _require_idle(status: str) -> None:
    if status != S.IDLE:
        raise SessionNotIdle(
            f"The source session is {status}.", status=status, reason=NOT_IDLE_REASONS[status]
        )


def handoff_execute(
    *,
    tenant: Tenant,
    mode: str,
    source_session_id: str,
    expected_owner_version: int,
    recipients: list[Actor],
    workspace_backend: str | None = None,
) -> HandoffResult:
    _check_recipients(mode, recipients)
    source, rows, expires = _lock(
        tenant_id=tenant.pk,
        source_session_id=source_session_id,
        mode=mode,
        expected=expected_owner_version,
        recipients=recipients,
        workspace_backend=workspace_backend,
    )
    backend = rows[0].workspace_backend
    group_id = rows[0].group_id
    state = PartialState()
    made: list[Workspace | None] = []
    try:
        for row in rows:
            workspace = workspace_provision(
                tenant_id=source.tenant_id,
                project_id=source.project_id,
                backend=backend,
                label=f"{mode}-{row.pk}",
                operation=group_id,
                lease_expires_at=expires,
            )
            made.append(workspace)
            if workspace is not None:
                state.workspaces_provisioned += 1
        return _commit(source=source, mode=mode, rows=rows, made=made, state=state)
    except Exception as exc:
        _rollback(source=source, mode=mode, group_id=group_id, made=made, state=state, error=exc)
        if isinstance(exc, WorkspaceError):
            raise WorkspaceUnavailable(
                handoff=group_id,
                backend=backend,
                reason=str(exc),
                partial_state=asdict(state),
            ) from exc
        raise


def _lock(
    *,
    tenant_id: str,
    source_session_id: str,
    mode: str,
    expected: int,
    recipients: list[Actor],
    workspace_backend: str | None,
) -> tuple[Session, list[Handoff], datetime]:
    """Phase 1: the checks, then source idle → locked (conditional on status and version)
    + pending rows. Returns the source as checked, the rows, the lease's end."""
    with transaction.atomic():
        # The source with its thread's row lock, in one round trip: locked blocks archiving,
        # so it must not race thread_archive; and a spawn counts its slots under the same
        # lock, so the width checked here holds until this handoff ends (from the UPDATE
        # below, the source is locked: no spawn or handoff can add a child to it).
        found = selectors.handoff_source(
            tenant_id=tenant_id, session_id=source_session_id, lock_thread=True
        )
        # --- Checks, in the documented order; a failed one rolls back (nothing written).
        if found is None:
            raise NotFound("Session not found.", field="source_session", id=source_session_id)
        source, thread_status = found
        if thread_status == ThreadStatus.ARCHIVED:
            raise ThreadArchived(thread=source.thread_id)
        _require_idle(source.status)
        project = source.project
        if mode == HandoffMode.BROADCAST:
            check_width(session=source, project=project, pending=len(recipients))
        check_depth(session=source, project=project)
        if source.owner_version != expected:
            raise VersionConflict(expected=expected, actual=source.owner_version)
        backend = workspace_backend or project.workspace_backend
        now = timezone.now()
        expires = now + timedelta(seconds=lease_seconds())
        rows = [
            Handoff(
                tenant_id=source.tenant_id,
                mode=mode,
                position=position,
                thread_id=source.thread_id,
                source_session_id=source.pk,
                recipient=actor,
                workspace_backend=backend,
                expected_owner_version=expected,
            )
            for position, actor in enumerate(recipients)
        ]
        group_id = rows[0].pk
        for row in rows:
            row.group_id = group_id
        # The claim, the pending rows and the event in one statement (statements.py).
        locked = claim_with(
            Update(
                Session,
                {
                    "status": S.LOCKED,
                    "lock_token": group_id,
                    "lock_expires_at": expires,
                    "updated_at": now,
                },
                {"pk": source.pk, "status": S.IDLE, "owner_version": expected},
            ),
            Insert(rows),
            Insert(
                [
                    session_event_row(
                        source,
                        events.HANDOFF_LOCKED,
                        handoff=group_id,
                        mode=mode,
                        recipients=len(recipients),
                        expected_owner_version=expected,
                        lock_expires_at=expires.isoformat(),
                    )
                ]
            ),
        )
        if not locked:
            current = (
                Session.objects.filter(pk=source.pk).order_by().values("status", "owner_version")[0]
            )
            _require_idle(current["status"])
            raise VersionConflict(expected=expected, actual=current["owner_version"])
    return source, rows, expires


def _commit(
    *,
    source: Session,
    mode: str,
    rows: list[Handoff],
    made: list[Workspace | None],
    state: PartialState,
) -> HandoffResult:
    """Phase 3: everything in one transaction, only while this handoff's lock holds."""
    group_id = rows[0].group_id
    # With no workspace to attach, the phase is one statement whose writes depend on its
    # claim (statements.py): on PostgreSQL autocommit spares the BEGIN and COMMIT trips.
    alone = connection.vendor == "postgresql" and not any(made)
    with contextlib.nullcontext() if alone else transaction.atomic():
        # No thread lock needed: the source is locked, which blocks archiving and deleting
        # the thread, so the recipients cannot land on an archived or deleted thread. Nor for
        # the lock order: the source's UPDATE is this transaction's only row lock, and the
        # key-share locks its inserts take on the thread at COMMIT (deferred foreign keys)
        # do not wait for threads.locks' FOR NO KEY UPDATE (test_spawn_handoff_race.py).
        now = timezone.now()
        # The claim and the source's new state in one conditional UPDATE: it applies only
        # while this handoff's lock token and lease hold (a sweep, a fail or a summary may
        # have taken the lock meanwhile). What it writes is computed from the source as
        # checked before the lock: while the token holds, nothing else can change it.
        new_version = source.owner_version + 1
        columns: dict[str, Any] = {
            "owner_version": new_version,
            "lock_token": "",
            "lock_expires_at": None,
            "updated_at": now,
        }
        if mode == HandoffMode.SINGLE:
            previous = list(source.previous_actors)  # append-only
            if source.current_actor is not None:
                previous.append(source.current_actor)
            columns.update(status=S.IDLE, current_actor=rows[0].recipient, previous_actors=previous)
        else:
            columns.update(status=S.AWAITING_MERGE)
        children = [
            Session(
                tenant_id=source.tenant_id,
                thread_id=source.thread_id,
                project_id=source.project_id,
                current_actor=row.recipient,
                depth=source.depth + 1,
                workspace=workspace,
                created_at=now,
                updated_at=now,
            )
            for row, workspace in zip(rows, made, strict=True)
        ]
        edges = [
            SubSession(
                tenant_id=source.tenant_id,
                parent_id=source.pk,
                child_id=child.pk,
                kind=SubSessionKind.USER_HANDOFF,
                status=SubSessionStatus.IDLE,
                broadcast_id=group_id if mode == HandoffMode.BROADCAST else None,
                created_at=now,
                updated_at=now,
            )
            for child in children
        ]
        for row, child, edge, workspace in zip(rows, children, edges, made, strict=True):
            row.recipient_session = child
            row.subsession = edge
            row.workspace = workspace
            row.outcome = HandoffOutcome.COMMITTED
            row.new_owner_version = new_version
            row.completed_at = now
        completed = [  # one plain UPDATE each (a broadcast has at most the width)
            Update(
                Handoff,
                {
                    "recipient_session": row.recipient_session,
                    "subsession": row.subsession,
                    "workspace": row.workspace,
                    "outcome": row.outcome,
                    "new_owner_version": new_version,
                    "completed_at": now,
                },
                {"pk": row.pk},
            )
            for row in rows
        ]
        committed = session_event_row(
            source,
            events.HANDOFF_COMMITTED,
            handoff=group_id,
            mode=mode,
            new_owner_version=new_version,
            recipient_sessions=[c.pk for c in children],
            handoffs=[r.pk for r in rows],
        )
        # One statement (statements.py): a claim that matches nothing wrote nothing.
        claimed = claim_with(
            Update(
                Session,
                columns,
                {
                    "pk": source.pk,
                    "status": S.LOCKED,
                    "lock_token": group_id,
                    "lock_expires_at__gt": now,
                },
            ),
            Insert(children),
            Insert(edges),
            *completed,
            Insert([committed]),
        )
        if not claimed:
            raise LockExpired(session=source.pk, handoff=group_id)
        state.sessions_created = len(children)
        state.subsessions_created = len(edges)
        for child, workspace in zip(children, made, strict=True):
            if workspace is not None:
                workspace_attach(workspace=workspace, session_id=child.pk)
    return HandoffResult(
        id=group_id,
        mode=mode,
        new_owner_version=new_version,
        recipient_sessions=children,
        handoffs=rows,
    )


def _rollback(
    *,
    source: Session,
    mode: str,
    group_id: str,
    made: list[Workspace | None],
    state: PartialState,
    error: Exception,
) -> None:
    """Undo a handoff that failed after its lock. Never raises: each step's error is logged
    so that the caller re-raises the first error, not one of these.

    The recipient sessions and edges are created only inside the commit transaction, so a
    failed commit leaves none behind (the database undid them); what remains to undo is the
    workspaces and the lock."""
    for workspace in reversed(made):
        if workspace is None:
            continue
        try:
            workspace_dispose(workspace=workspace)
        except Exception:
            logger.exception("handoff %s rollback: disposing %s", group_id, workspace.pk)
    partial_state = asdict(state)
    try:
        with transaction.atomic():
            now = timezone.now()
            # Only this handoff's lock: the sweep (or a fail) may have taken it already.
            reverted = Session.objects.filter(
                pk=source.pk, status=S.LOCKED, lock_token=group_id
            ).update(status=S.IDLE, lock_token="", lock_expires_at=None, updated_at=now)
            Handoff.objects.filter(group_id=group_id, outcome=HandoffOutcome.PENDING).update(
                outcome=HandoffOutcome.ROLLED_BACK,
                error=f"{type(error).__name__}: {error}"[:4000],
                partial_state=partial_state,
                completed_at=now,
            )
            session_event(
                source,
                events.HANDOFF_ROLLED_BACK,
                handoff=group_id,
                mode=mode,
                partial_state=partial_state,
                error=f"{type(error).__name__}: {error}"[:1000],
                source_reverted=bool(reverted),
            )
    except Exception:
        logger.exception("handoff %s rollback: reverting the source %s", group_id, source.pk)


def handoffs_pending_roll_back(*, source_session_id: str, group_id: str | None, action: str) -> int:
    """Roll back the pending rows of a handoff whose source left `locked` before it committed
    (`action`: the source's transition, or LEASE_EXPIRED); `group_id` None: any handoff of
    the source. Returns the rows closed. Served by handoff_source_created."""
    pending = Handoff.objects.filter(
        source_session_id=source_session_id, outcome=HandoffOutcome.PENDING
    )
    if group_id is not None:
        pending = pending.filter(group_id=group_id)
    why = (
        "The lock lease expired"
        if action == LEASE_EXPIRED
        else f"The source session left locked ({action})"
    )
    return pending.update(
        outcome=HandoffOutcome.ROLLED_BACK,
        error=f"{why} before the handoff committed.",
        completed_at=timezone.now(),
    )
