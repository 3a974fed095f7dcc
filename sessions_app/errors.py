"""Domain errors of sessions, spawns, summaries and interventions, and those a handoff
shares with a spawn (capacity, lock lease, workspace); handoff-only ones: handoffs.errors.

common.api.exceptions maps every DomainError to DESIGN.md's error body by its status/code.
"""

from __future__ import annotations

from common.errors import DomainError


class IllegalTransition(DomainError):
    code = "illegal_transition"
    message = "The session cannot do that from its current status."


class CapacityExceeded(DomainError):
    code = "capacity_exceeded"
    message = "Delegation capacity exceeded."


class LockExpired(DomainError):
    code = "lock_expired"
    message = "The session's lock lease expired before the operation could commit."


class WorkspaceUnavailable(DomainError):
    status = 503
    code = "workspace_unavailable"
    message = "The workspace backend failed; everything was rolled back."


class AlreadySummarized(DomainError):
    code = "already_summarized"
    message = "The session already has a different summary."


class ChildrenRunning(DomainError):
    code = "children_running"
    message = "Some broadcast children are still running."


class ArtifactRefCycle(DomainError):
    code = "artifact_ref_cycle"
    message = "The chain of previous summaries revisits a summary."


class InterventionDepthExceeded(DomainError):
    code = "intervention_depth_exceeded"
    message = "The chain of previous summaries is longer than the project allows."


class NotArchivable(DomainError):
    code = "not_archivable"
    message = "The sub-session cannot be archived (details: reason not_idle|already_archived)."


class NotArchived(DomainError):
    code = "not_archived"
    message = "The sub-session is not archived; there is nothing to restore."
