"""Domain errors only a handoff raises: its recipients and its source's status and version.

Errors a spawn raises too (capacity_exceeded, lock_expired, workspace_unavailable) live in
sessions_app.errors. common.api.exceptions maps every DomainError to its body by status/code.
"""

from __future__ import annotations

from common.errors import DomainError, InvalidInput


class SessionNotIdle(DomainError):
    code = "session_not_idle"
    message = "The source session is not idle."


class VersionConflict(DomainError):
    code = "version_conflict"
    message = "The session's owner version is not the expected one."


class DuplicateRecipient(InvalidInput):
    code = "duplicate_recipient"
    message = "The same recipient appears more than once."
