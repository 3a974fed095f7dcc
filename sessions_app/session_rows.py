"""What every write to session rows shares (sessions_app's services and handoffs'): the
session's audit event, the 409 for a move its status does not allow, the lock lease."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from common.errors import NotFound
from sessions_app.errors import IllegalTransition
from sessions_app.models import Session
from threads.events import event_record, event_row
from threads.models import Event

Actor = dict[str, str]


def session_event(session: Session, kind: str, **payload: Any) -> None:
    """An event of `session` (and its thread); call it inside the change's transaction."""
    event_record(**_event_fields(session, kind, payload))


def session_event_row(session: Session, kind: str, **payload: Any) -> Event:
    """session_event's event, not yet saved (for a writer that inserts it in its own
    statement)."""
    return event_row(**_event_fields(session, kind, payload))


def _event_fields(session: Session, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "tenant_id": session.tenant_id,
        "kind": kind,
        "thread_id": session.thread_id,
        "session_id": session.pk,
        "payload": payload,
    }


# How a 409 illegal_transition reads: "<the session as it is> <why the action cannot run>."
_AS_IT_IS = {
    "idle": "An idle session",
    "active": "An active session",
    "locked": "A locked session (a handoff or spawn is in progress)",
    "awaiting_hitl": "A session waiting for a human",
    "awaiting_merge": "A session waiting for its broadcast to merge",
    "failed": "A failed session",
    "archived": "An archived session",
}
_WHY_NOT = {
    "start_turn": "cannot start a turn; only an idle session can.",
    "settle_turn": "has no running turn to settle.",
    "request_hitl": "has no running turn to pause for a human.",
    "resolve_hitl": "is not waiting for a human's answer.",
    "fail": "cannot fail; it is archived for good.",
    "archive": "cannot be archived; only an idle or failed session can.",
    "merge": "has no broadcast to merge.",
    "summarize": "cannot record a summary; only an active, locked or merging session can.",
    "spawn": "cannot spawn a child; only an idle or active session can.",
    "intervene": "cannot take an intervention; it is archived.",
}


def illegal_transition(session_id: str, action: str) -> IllegalTransition:
    """409 illegal_transition: a sentence naming the session's status and why `action` cannot
    run from it (404 if the session is gone); details `from` and `action` for programs."""
    current = Session.objects.filter(pk=session_id).values_list("status", flat=True).first()
    if current is None:
        raise NotFound("Session not found.")
    subject = _AS_IT_IS.get(current, f"A session that is {current}")
    reason = _WHY_NOT.get(action, f"cannot {action.replace('_', ' ')}.")
    return IllegalTransition(f"{subject} {reason}", **{"from": current, "action": action})


def lease_seconds() -> int:
    """How long a session locked by status stays locked before lock recovery may revert it."""
    return settings.SESSION_LOCK_LEASE_SECONDS
