"""Writes: a session's life as moves between statuses (the Transition table) — create, turn
start and settle, human-in-the-loop, fail, archive — with the thread's lifecycle in step.

Concurrency rules, followed by every write of sessions_app (here, spawn, summaries,
recovery, retention) and by handoffs/services.py:

- Row locks come from threads.locks, in the order it names and checks: the thread row, then
  session rows by pk. A conditional UPDATE locks the row it changes too, so a transaction
  takes no thread lock after one on a session. Every transaction that creates a session or
  moves one into a status that blocks thread archiving locks the thread row and re-checks it
  is open, so it cannot race thread_archive/thread_delete (which take the same lock).
- Status changes are conditional UPDATEs on the status they start from
  (`filter(pk=…, status__in=<from>).update(…)`); a row count of 0 means the session was
  elsewhere (or another request got there first) and answers 409 illegal_transition.
- Workspaces are made and disposed outside any transaction. A multi-step operation holds the
  session *locked by status* (with a lease and a lock token) while it does slow work, never a
  database lock; a crashed process's lock is reverted by session_locks_recover.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from common.errors import InvalidInput, NotFound
from sessions_app.models import Session, SessionStatus, SubSession, SubSessionStatus, Workspace
from sessions_app.retention import subsession_archive_with_child
from sessions_app.session_rows import Actor, illegal_transition, session_event
from sessions_app.signals import session_lock_released_send
from sessions_app.workspaces import WorkspaceError, workspace_dispose
from threads import events, locks
from threads.conversation.compaction import compaction_after_settle
from threads.conversation.warming import warming_on_settle, warming_on_turn_start
from threads.events import event_record
from threads.models import Lifecycle, Tenant, Thread
from threads.storage.tiers import thread_ensure_hot

logger = logging.getLogger(__name__)

S = SessionStatus


# --- The Transition table and how a move is applied ------------------------------------


# Sub-session edges follow their child: (edge status, the edge statuses it moves from). Not
# into archived: an archived edge has a verified cold bundle, written by retention after the
# child's archive commits (session_archive), never inside this transaction.
_EDGE_FOLLOWS = {
    S.ACTIVE: (SubSessionStatus.ACTIVE, (SubSessionStatus.PENDING, SubSessionStatus.IDLE)),
    S.IDLE: (SubSessionStatus.IDLE, (SubSessionStatus.PENDING, SubSessionStatus.ACTIVE)),
    S.FAILED: (
        SubSessionStatus.FAILED,
        (SubSessionStatus.PENDING, SubSessionStatus.ACTIVE, SubSessionStatus.IDLE),
    ),
}


def _edge_follow(child_id: str, status: str) -> None:
    if status in _EDGE_FOLLOWS:
        target, sources = _EDGE_FOLLOWS[status]
        SubSession.objects.filter(child_id=child_id, status__in=sources).update(
            status=target, updated_at=timezone.now()
        )


def thread_lifecycle_sync(thread: Thread, *, turn_started: bool = False) -> None:
    """Keep thread.lifecycle in step (the thread row is locked by the caller): active while
    any of its sessions is active, idle otherwise; closed stays closed until a turn starts."""
    if turn_started:
        target = Lifecycle.ACTIVE
    elif thread.lifecycle == Lifecycle.CLOSED:
        return
    else:
        # Served by session_thread_status.
        any_active = Session.objects.filter(thread_id=thread.pk, status=S.ACTIVE).exists()
        target = Lifecycle.ACTIVE if any_active else Lifecycle.IDLE
    if thread.lifecycle == target:
        return
    previous = thread.lifecycle
    Thread.objects.filter(pk=thread.pk).update(lifecycle=target, updated_at=timezone.now())
    thread.lifecycle = target
    event_record(
        tenant_id=thread.tenant_id,
        kind=events.THREAD_LIFECYCLE_CHANGED,
        thread_id=thread.pk,
        payload={"from": previous, "to": target},
    )


@dataclass(frozen=True)
class Transition:
    action: str
    sources: tuple[str, ...]
    target: str
    event: str


TURN_START = Transition("start_turn", (S.IDLE,), S.ACTIVE, events.SESSION_TURN_STARTED)
TURN_SETTLE = Transition("settle_turn", (S.ACTIVE,), S.IDLE, events.SESSION_TURN_SETTLED)
HITL_REQUEST = Transition(
    "request_hitl", (S.ACTIVE,), S.AWAITING_HITL, events.SESSION_HITL_REQUESTED
)
HITL_RESOLVE = Transition(
    "resolve_hitl", (S.AWAITING_HITL,), S.ACTIVE, events.SESSION_HITL_RESOLVED
)
FAIL = Transition(
    "fail",
    (S.IDLE, S.ACTIVE, S.LOCKED, S.AWAITING_HITL, S.AWAITING_MERGE, S.FAILED),
    S.FAILED,
    events.SESSION_FAILED,
)
ARCHIVE = Transition("archive", (S.IDLE, S.FAILED), S.ARCHIVED, events.SESSION_ARCHIVED)
MERGE = Transition("merge", (S.AWAITING_MERGE,), S.IDLE, events.SESSION_MERGED)


def _transition(
    session: Session, t: Transition, *, extra: dict[str, Any] | None = None, **payload: Any
) -> Session:
    """Apply `t` in one short transaction under the thread's row lock; returns the fresh row.

    Leaving a status clears any lock lease, so a session moved out of `locked` (fail,
    summary) makes the handoff holding it fail its commit instead of committing over it."""
    with transaction.atomic():
        thread = locks.lock_open_thread(session.thread_id)
        transition_apply(session, t, thread=thread, extra=extra, **payload)
    session.refresh_from_db()
    return session


def transition_apply(
    session: Session,
    t: Transition,
    *,
    thread: Thread,
    extra: dict[str, Any] | None = None,
    turn_started: bool = False,
    **payload: Any,
) -> None:
    """Apply `t` inside the caller's transaction, which holds `thread` locked: a conditional
    UPDATE from t.sources (0 rows: 409 illegal_transition), then the session's edge and the
    thread's lifecycle follow and t.event is recorded."""
    now = timezone.now()
    updated = Session.objects.filter(pk=session.pk, status__in=t.sources).update(
        status=t.target, lock_token="", lock_expires_at=None, updated_at=now, **(extra or {})
    )
    if not updated:
        raise illegal_transition(session.pk, t.action)
    if S.LOCKED in t.sources:
        # The lock token is cleared above, so whatever held it can never commit. A live
        # holder rolls itself back; one whose process died would leave its rows pending
        # forever (the lock sweep only sees locked sessions), so its room closes them now.
        session_lock_released_send(session_id=session.pk, lock_token=None, action=t.action)
    _edge_follow(session.pk, t.target)
    thread_lifecycle_sync(thread, turn_started=turn_started)
    session_event(session, t.event, status=t.target, **payload)


# --- Seams for the conversation services (compaction, warming, tiers) -------------------


def _before_turn_start(*, session: Session) -> None:
    """Runs before a turn starts, outside any transaction (slow I/O allowed).

    The tiers work hydrates a cold thread here, so the turn starts on a hot thread."""
    thread_ensure_hot(thread=session.thread)


def _on_turn_started(*, session: Session, thread: Thread) -> None:
    """Runs inside the turn-start transaction with the thread row locked.

    Cache warming cancels the thread's timer here (dispatch: turn start clears nextWarmAt)."""
    warming_on_turn_start(thread=thread)


def _on_turn_settled(*, session: Session, thread: Thread) -> None:
    """Runs inside the settle transaction with the thread row locked, after the usage is
    stored on the session and the thread.

    Cache warming arms the thread's timer here (a column write); auto-compaction decides from
    the stored usage and enqueues itself with transaction.on_commit(...)."""
    warming_on_settle(thread=thread)
    compaction_after_settle(thread=thread)


# --- Sessions and turns ----------------------------------------------------------------


def session_create(*, tenant: Tenant, thread_id: str, actor: Actor) -> Session:
    """A new idle session on the thread, owner_version 0."""
    thread = Thread.objects.filter(tenant=tenant, pk=thread_id).first()
    if thread is None:
        raise NotFound("Thread not found.", field="thread", id=thread_id)
    with transaction.atomic():
        # The thread lock: a session cannot appear on a thread being archived or deleted.
        locked = locks.lock_open_thread(thread.pk)
        session = Session.objects.create(
            tenant_id=tenant.pk,
            thread_id=locked.pk,
            project_id=locked.project_id,
            current_actor=actor,
        )
        session_event(session, events.SESSION_CREATED, actor=actor)
    return session


def session_turn_start(*, session: Session) -> Session:
    """idle → active; the thread's lifecycle becomes active (even from closed)."""
    _before_turn_start(session=session)
    now = timezone.now()
    with transaction.atomic():
        thread = locks.lock_open_thread(session.thread_id)
        transition_apply(session, TURN_START, thread=thread, turn_started=True)
        Thread.objects.filter(pk=thread.pk).update(last_activity_at=now)
        _on_turn_started(session=session, thread=thread)
    session.refresh_from_db()
    return session


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    output_tokens: int = 0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if type(value) is not int or value < 0:
                raise InvalidInput(
                    "Usage counts are non-negative integers.",
                    fields={"usage": {name: ["Must be a non-negative integer."]}},
                )

    def columns(self) -> dict[str, int]:
        return {f"last_{name}": value for name, value in asdict(self).items()}


def session_turn_settle(*, session: Session, usage: Usage) -> Session:
    """active → idle, storing the turn's usage on the session and on the thread (the
    settled usage auto-compaction decides from)."""
    now = timezone.now()
    with transaction.atomic():
        thread = locks.lock_open_thread(session.thread_id)
        transition_apply(
            session,
            TURN_SETTLE,
            thread=thread,
            extra={**usage.columns(), "last_settled_at": now},
            usage=asdict(usage),
        )
        Thread.objects.filter(pk=thread.pk).update(**usage.columns(), last_activity_at=now)
        session.refresh_from_db()
        # `thread` holds only _THREAD_COLUMNS; any other field it is asked for loads fresh.
        _on_turn_settled(session=session, thread=thread)
    return session


def session_hitl_request(*, session: Session) -> Session:
    return _transition(session, HITL_REQUEST)


def session_hitl_resolve(*, session: Session) -> Session:
    return _transition(session, HITL_RESOLVE)


def session_fail(*, session: Session, reason: str = "") -> Session:
    """Any status but archived → failed (failing a failed session again succeeds)."""
    return _transition(session, FAIL, reason=reason)


def session_archive(*, session: Session) -> Session:
    """idle|failed → archived; then (after the commit: slow I/O) the sub-session edge it is
    the child of is archived with its cold bundle (retention; if cold storage fails the edge
    stays idle or failed, archivable later) and its workspace is disposed. A failed dispose
    is logged and left to the sweep, which retries it."""
    session = _transition(session, ARCHIVE)
    subsession_archive_with_child(child=session)
    if session.workspace_id:
        workspace = Workspace.objects.filter(pk=session.workspace_id).first()
        if workspace is not None:
            try:
                workspace_dispose(workspace=workspace)
            except WorkspaceError:
                logger.exception("disposing workspace %s of archived %s", workspace.pk, session)
    return session
