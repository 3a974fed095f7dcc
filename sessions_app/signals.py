"""Signals sessions_app sends to the rooms above it, which it never imports.

A receiver connects in its app's ready() (handoffs/apps.py) and returns what it did.
"""

from __future__ import annotations

from django.dispatch import Signal

from sessions_app.models import Session

# Sent inside the transaction that takes a session out of `locked` without its holder
# committing, with session_id, lock_token (the token reverted; None: whoever held it) and
# action: the transition that moved it ("fail", "summarize") or LEASE_EXPIRED (lock
# recovery). The holder can never commit now; a receiver closes what it left pending.
session_lock_released = Signal()

LEASE_EXPIRED = "lease_expired"


def session_lock_released_send(*, session_id: str, lock_token: str | None, action: str) -> int:
    """Send session_lock_released; the number of rows its receivers closed."""
    responses = session_lock_released.send(
        sender=Session, session_id=session_id, lock_token=lock_token, action=action
    )
    return sum(closed for _receiver, closed in responses)
