"""Receivers of sessions_app's signals, connected in HandoffsConfig.ready()."""

from __future__ import annotations

from typing import Any

from handoffs.services import handoffs_pending_roll_back


def on_session_lock_released(
    sender: Any, *, session_id: str, lock_token: str | None, action: str, **kwargs: Any
) -> int:
    """A handoff that held the session can never commit: roll its pending rows back."""
    return handoffs_pending_roll_back(
        source_session_id=session_id, group_id=lock_token, action=action
    )
