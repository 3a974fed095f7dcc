"""What every write to session rows shares (sessions_app's services and handoffs'): the
session's audit event, the 409 for a move its status does not allow, the lock lease."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from common.errors import NotFound
from sessions_app.errors import IllegalTransition
from sessions_app.models import Session
from threads.events import event_record

Actor = dict[str, str]


def session_event(session: Session, kind: str, **payload: Any) -> None:
    """An event of `session` (and its thread); call it inside the change's transaction."""
    event_record(
        tenant_id=session.tenant_id,
        kind=kind,
        thread_id=session.thread_id,
        session_id=session.pk,
        payload=payload,
    )


def illegal_transition(session_id: str, action: str) -> IllegalTransition:
    """409 illegal_transition naming the session's current status (404 if it is gone)."""
    current = Session.objects.filter(pk=session_id).values_list("status", flat=True).first()
    if current is None:
        raise NotFound("Session not found.")
    return IllegalTransition(
        f"A session that is {current} cannot {action.replace('_', ' ')}.",
        **{"from": current, "action": action},
    )


def lease_seconds() -> int:
    """How long a session locked by status stays locked before lock recovery may revert it."""
    return settings.SESSION_LOCK_LEASE_SECONDS
