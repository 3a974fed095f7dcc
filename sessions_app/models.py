"""Sessions, sub-sessions, summaries and workspaces.

Writes go through sessions_app's services (transitions, spawn, summaries, recovery,
retention, workspaces) and handoffs/services.py; reads through sessions_app/selectors.py.
Every status change is a conditional UPDATE on the status it starts from, so two requests
racing for the same session never both win.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.db.models.fields.json import KT
from django.utils import timezone

from common.ids import id_factory
from threads.models import Project, Tenant, Thread, WorkspaceBackend


def _id_field(prefix: str) -> models.CharField:
    return models.CharField(
        primary_key=True, max_length=20, default=id_factory(prefix), editable=False
    )


class ActorKind(models.TextChoices):
    USER = "user"
    AGENT = "agent"
    SYSTEM = "system"


class WorkspaceStatus(models.TextChoices):
    PROVISIONING = "provisioning"  # the row exists, the directory/worktree is being made
    READY = "ready"
    FAILED = "failed"  # provisioning failed (the driver cleaned up after itself)
    DISPOSED = "disposed"


class Workspace(models.Model):
    """Where a session's agent works: nothing, a directory, or a git worktree.

    The row is written before the slow work starts, so a process that dies half-way leaves
    a record the lock-recovery sweep can dispose of. `operation` is the lock token of the
    spawn or handoff that provisioned it; `lease_expires_at` is that lock's lease: a
    workspace still unattached (`session` null) after it is an orphan, because nothing can
    commit it any more (commits require a live lease)."""

    id = _id_field("wsp")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    session = models.ForeignKey(
        "Session",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The session it was attached to at commit; null while provisioning.",
    )
    backend = models.CharField(max_length=16, choices=WorkspaceBackend.choices)
    label = models.CharField(max_length=100, blank=True)
    operation = models.CharField(max_length=20, blank=True, db_index=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=WorkspaceStatus.choices, default=WorkspaceStatus.PROVISIONING
    )
    path = models.CharField(max_length=1000, blank=True)
    branch = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    disposed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("created_at", "id")
        indexes = [
            # The sweep's orphan query: live workspaces (few) by lease.
            models.Index(
                fields=("lease_expires_at",),
                name="workspace_live_lease",
                condition=Q(status__in=("provisioning", "ready")),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.backend} {self.id}"


class SessionStatus(models.TextChoices):
    IDLE = "idle"
    ACTIVE = "active"
    LOCKED = "locked"
    AWAITING_HITL = "awaiting_hitl"
    AWAITING_MERGE = "awaiting_merge"
    FAILED = "failed"
    ARCHIVED = "archived"


# A thread cannot be archived while one of its sessions is in one of these.
BLOCKING_STATUSES = (
    SessionStatus.ACTIVE,
    SessionStatus.LOCKED,
    SessionStatus.AWAITING_HITL,
    SessionStatus.AWAITING_MERGE,
)


class Session(models.Model):
    """One run of work on a thread, owned by an actor. `owner_version` guards handoffs: a
    handoff names the version it expects and the commit bumps it.

    `depth` is the length of the session's ancestry (root … itself): 1 for a root session,
    parent's + 1 for a spawned/handed-off/intervention child. Edges never move, so it is
    stored rather than walked."""

    id = _id_field("ses")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    # RESTRICT: a thread with sessions cannot be deleted (thread_delete refuses first, with
    # a useful error); a tenant's cascade may still take both.
    thread = models.ForeignKey(Thread, on_delete=models.RESTRICT, related_name="sessions")
    project = models.ForeignKey(Project, on_delete=models.RESTRICT, related_name="+")
    status = models.CharField(
        max_length=16, choices=SessionStatus.choices, default=SessionStatus.IDLE
    )
    current_actor = models.JSONField(null=True, blank=True)
    previous_actors = models.JSONField(default=list, blank=True)
    owner_version = models.PositiveBigIntegerField(default=0)
    depth = models.PositiveIntegerField(default=1)
    workspace = models.ForeignKey(
        Workspace, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The lock of a handoff (or of a spawn being provisioned): who holds it and until when.
    lock_token = models.CharField(max_length=20, blank=True)
    lock_expires_at = models.DateTimeField(null=True, blank=True)

    # Usage of the last settled turn.
    last_input_tokens = models.PositiveBigIntegerField(default=0)
    last_cache_read_tokens = models.PositiveBigIntegerField(default=0)
    last_cache_creation_tokens = models.PositiveBigIntegerField(default=0)
    last_output_tokens = models.PositiveBigIntegerField(default=0)
    last_settled_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ("created_at", "id")
        indexes = [
            # GET /sessions/ — a tenant's sessions in creation order (cursor pagination).
            models.Index(fields=("tenant", "created_at", "id"), name="session_tenant_created"),
            # GET /sessions/?thread= and the thread archive/delete/lifecycle checks.
            models.Index(fields=("thread", "status"), name="session_thread_status"),
            # The admin's actor-kind filter (current_actor->>'kind').
            models.Index(KT("current_actor__kind"), name="session_actor_kind"),
            # The lock-recovery sweep: locked sessions by lease (a partial index: few rows).
            models.Index(
                fields=("lock_expires_at",),
                name="session_locked_lease",
                condition=Q(status="locked"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"

    @property
    def actor_kind(self) -> str | None:
        return (self.current_actor or {}).get("kind")


class SubSessionKind(models.TextChoices):
    AGENT_SPAWN = "agent_spawn"
    USER_HANDOFF = "user_handoff"
    INTERVENTION = "intervention"


class SubSessionStatus(models.TextChoices):
    PENDING = "pending"
    ACTIVE = "active"
    IDLE = "idle"
    FAILED = "failed"
    AWAITING_MERGE = "awaiting_merge"
    PENDING_MERGE = "pending_merge"
    MERGING = "merging"
    MERGED = "merged"
    MERGE_CONFLICT = "merge_conflict"
    MERGE_REJECTED = "merge_rejected"
    ARCHIVED = "archived"


# Edges that no longer take a width slot of their parent.
CLOSED_EDGE_STATUSES = (SubSessionStatus.MERGED, SubSessionStatus.ARCHIVED)


# Sub-sessions in these statuses may be archived by retention (namzu's archivable set).
ARCHIVABLE_STATUSES = (
    SubSessionStatus.IDLE,
    SubSessionStatus.MERGED,
    SubSessionStatus.MERGE_REJECTED,
    SubSessionStatus.FAILED,
)


class SubSession(models.Model):
    """The edge parent → child. A child has exactly one parent edge."""

    id = _id_field("sub")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    parent = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="child_edges")
    child = models.OneToOneField(Session, on_delete=models.CASCADE, related_name="parent_edge")
    kind = models.CharField(max_length=16, choices=SubSessionKind.choices)
    status = models.CharField(
        max_length=16, choices=SubSessionStatus.choices, default=SubSessionStatus.PENDING
    )
    broadcast_id = models.CharField(max_length=20, null=True, blank=True)
    failure_mode = models.CharField(max_length=16, default="delegate")
    completion_mode = models.CharField(max_length=16, default="summary_ref")
    # Interventions: the summary this one continues from (the prevArtifactRef chain).
    prev_summary = models.ForeignKey(
        "Summary", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Retention (sessions_app/retention.py): the cold bundle written before it was archived.
    archive_key = models.CharField(max_length=300, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ("created_at", "id")
        indexes = [
            # GET /sessions/{id}/children in creation order, and the width count.
            models.Index(fields=("parent", "created_at", "id"), name="subsession_parent_created"),
            # The retention sweep (sessions_app.retention): archivable edges by age.
            models.Index(
                fields=("status", "updated_at", "id"),
                name="subsession_status_updated",
                condition=models.Q(status__in=ARCHIVABLE_STATUSES),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.parent_id} → {self.child_id}"


class OutcomeStatus(models.TextChoices):
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"


AGENT_SUMMARY_MAX_CHARS = 4000


class Summary(models.Model):
    """What a session achieved; at most one per session. `prev_summary` links it to the
    summary its intervention continued from, forming the chain interventions walk."""

    id = _id_field("sum")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    session = models.OneToOneField(Session, on_delete=models.CASCADE, related_name="summary")
    outcome_status = models.CharField(max_length=16, choices=OutcomeStatus.choices)
    outcome_verdict = models.TextField(blank=True)
    agent_summary = models.TextField(max_length=AGENT_SUMMARY_MAX_CHARS)
    key_decisions = models.JSONField(default=list, blank=True)
    deliverables = models.JSONField(default=list, blank=True)
    prev_summary = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    materialized_by = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ("created_at", "id")
        verbose_name_plural = "summaries"

    def __str__(self) -> str:
        return f"{self.id} of {self.session_id} ({self.outcome_status})"

    @property
    def outcome(self) -> dict:
        outcome = {"status": self.outcome_status}
        if self.outcome_verdict:
            outcome["verdict"] = self.outcome_verdict
        return outcome
