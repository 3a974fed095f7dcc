"""Domain errors raised by services; common.api.exceptions maps them to HTTP.

Each carries a stable snake_case `code`, a human `message` and structured `details`; the
HTTP status lives here too so that the mapping is one table, not a chain of isinstance checks.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 409
    code = "conflict"
    message = "The request conflicts with the current state."

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.message
        self.details = details
        super().__init__(self.message)


class NotFound(DomainError):
    status = 404
    code = "not_found"
    message = "Not found."


class InvalidInput(DomainError):
    status = 400
    code = "validation_error"
    message = "The request is invalid."


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"
    message = "The payload is too large."


class StaleVersion(DomainError):
    status = 412
    code = "stale_version"
    message = "The resource changed since you read it (If-Match failed)."


class ThreadArchived(DomainError):
    code = "thread_archived"
    message = "The thread is archived and read-only."


class ThreadClosed(DomainError):
    code = "thread_closed"
    message = "The conversation is closed; re-open it (POST /threads/{id}/open) to append."


class ThreadNotEmpty(DomainError):
    code = "thread_not_empty"
    message = "The thread still has sessions attached."


class ThreadGenerating(DomainError):
    code = "thread_generating"
    message = "A turn is running on the thread; retry when it has settled."


class ThreadBusy(DomainError):
    code = "thread_busy"
    message = "The thread changed while the operation ran; nothing was lost, retry."


class DependencyUnavailable(DomainError):
    status = 503
    code = "dependency_unavailable"
    message = "A dependency failed."


class DatabaseUnavailable(DependencyUnavailable):
    code = "database_unavailable"
    message = "The database is unavailable; retry shortly."


class ColdSnapshotCorrupt(DependencyUnavailable):
    code = "cold_snapshot_corrupt"
    message = "The thread's cold snapshot is missing or corrupt; the thread stays cold."
