"""Tenants, API keys, projects, threads, messages, the event trail, compactions and the
steering queue. Writes go through the services of threads/; reads through selectors.py."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from common.errors import ThreadArchived
from common.ids import id_factory


def _id_field(prefix: str) -> models.CharField:
    return models.CharField(
        primary_key=True, max_length=20, default=id_factory(prefix), editable=False
    )


class Tenant(models.Model):
    id = _id_field("tnt")
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ("created_at", "id")

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class ApiKey(models.Model):
    """A tenant's credential. Only the SHA-256 of the secret is stored; the secret is shown
    once, at creation. Secrets carry 256 random bits, so a fast hash is enough (no KDF)."""

    id = _id_field("key")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(
        max_length=16, editable=False, help_text="First characters, to recognise a key."
    )
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ("created_at", "id")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.tenant_id})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class WorkspaceBackend(models.TextChoices):
    NONE = "none"
    DIRECTORY = "directory"
    GIT_WORKTREE = "git-worktree"


class Project(models.Model):
    id = _id_field("prj")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=200)
    max_delegation_depth = models.PositiveIntegerField(default=4)
    max_delegation_width = models.PositiveIntegerField(default=8)
    max_intervention_depth = models.PositiveIntegerField(default=10)
    workspace_backend = models.CharField(
        max_length=16, choices=WorkspaceBackend.choices, default=WorkspaceBackend.NONE
    )
    # Retention of idle sub-sessions (null = off).
    idle_subsession_ttl_seconds = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ("created_at", "id")
        indexes = [
            # GET /projects/ — the tenant's projects in creation order.
            models.Index(fields=("tenant", "created_at"), name="project_tenant_created"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class ThreadStatus(models.TextChoices):
    OPEN = "open"
    ARCHIVED = "archived"


class Lifecycle(models.TextChoices):
    ACTIVE = "active"
    IDLE = "idle"
    CLOSED = "closed"


class Tier(models.TextChoices):
    HOT = "hot"
    COLD = "cold"


class ReasoningEffort(models.TextChoices):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    XHIGH = "xhigh"
    MAX = "max"


class Thread(models.Model):
    """A conversation. Two counters guard it:

    - `version` bumps on every edit of the thread itself (PATCH, archive, close, open); it is
      the ETag that If-Match is checked against;
    - `history_version` bumps on every change of its messages or state; the hot cache and
      the cold flush compare it to know whether what they hold is still current.

    Keeping them apart lets an agent append while an operator renames the thread without
    either getting a 412.
    """

    id = _id_field("thd")
    # No index of their own: thread_tenant_created, thread_project_created lead with them.
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="threads", db_index=False)
    project = models.ForeignKey(Project, models.PROTECT, related_name="threads", db_index=False)
    title = models.CharField(max_length=500, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=ThreadStatus.choices, default=ThreadStatus.OPEN
    )
    lifecycle = models.CharField(max_length=16, choices=Lifecycle.choices, default=Lifecycle.IDLE)
    tier = models.CharField(max_length=8, choices=Tier.choices, default=Tier.HOT)
    version = models.PositiveBigIntegerField(default=1)
    history_version = models.PositiveBigIntegerField(default=0)
    last_seq = models.PositiveBigIntegerField(default=0)
    message_count = models.PositiveBigIntegerField(default=0)
    token_estimate = models.PositiveBigIntegerField(default=0)
    fork_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="forks"
    )
    reasoning_effort = models.CharField(
        max_length=8, choices=ReasoningEffort.choices, default=ReasoningEffort.HIGH
    )
    state = models.JSONField(null=True, blank=True)

    # Compaction settings (0 disables a threshold; threshold_tokens wins when set).
    compaction_threshold_tokens = models.PositiveIntegerField(null=True, blank=True)
    compaction_threshold_percent = models.PositiveSmallIntegerField(default=85)
    compaction_context_window = models.PositiveIntegerField(default=200_000)
    compaction_keep_last = models.PositiveIntegerField(default=10)

    # Prompt-cache warming settings and timer.
    warming_enabled = models.BooleanField(default=False)
    warming_interval_s = models.PositiveIntegerField(default=240)
    warming_max_idle_warms = models.PositiveIntegerField(default=12)
    next_warm_at = models.DateTimeField(null=True, blank=True)
    last_warm_at = models.DateTimeField(null=True, blank=True)
    last_cache_pct = models.PositiveSmallIntegerField(null=True, blank=True)
    last_retention_pct = models.PositiveSmallIntegerField(null=True, blank=True)
    idle_warm_count = models.PositiveIntegerField(default=0)

    # Usage of the last settled turn (drives auto-compaction).
    last_input_tokens = models.PositiveBigIntegerField(default=0)
    last_cache_read_tokens = models.PositiveBigIntegerField(default=0)
    last_cache_creation_tokens = models.PositiveBigIntegerField(default=0)
    last_output_tokens = models.PositiveBigIntegerField(default=0)

    # Cold tier: where the snapshot lives and how big it is.
    cold_key = models.CharField(max_length=300, blank=True)
    cold_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    last_flushed_at = models.DateTimeField(null=True, blank=True)
    last_hydrated_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)
    last_activity_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ("created_at", "id")
        indexes = [
            # GET /threads/ — a tenant's threads in creation order (cursor pagination).
            models.Index(fields=("tenant", "created_at", "id"), name="thread_tenant_created"),
            # GET /threads/?project= — one project's threads.
            models.Index(fields=("project", "created_at"), name="thread_project_created"),
            # GET /threads/?q= — title prefix (LIKE 'q%') on PostgreSQL needs pattern ops.
            models.Index(
                fields=("tenant", "title"),
                name="thread_tenant_title_prefix",
                opclasses=("varchar_pattern_ops", "varchar_pattern_ops"),
            ),
            # The warming sweep: armed timers by due time (a partial index: few rows).
            models.Index(
                fields=("next_warm_at",),
                name="thread_warm_due",
                condition=models.Q(next_warm_at__isnull=False),
            ),
            # The flush sweep (threads.storage.sweep.idle_threads): hot threads idle since a cutoff,
            # keyset-paginated by (last_activity_at, id). Cold threads stay out of it.
            models.Index(
                fields=("last_activity_at", "id"),
                name="thread_hot_idle",
                condition=models.Q(tier="hot"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title or '(untitled)'} ({self.id})"

    @property
    def is_archived(self) -> bool:
        return self.status == ThreadStatus.ARCHIVED

    def require_open(self) -> None:
        if self.is_archived:  # as loaded; writers call it on the row they locked
            raise ThreadArchived(thread=self.pk)


class Role(models.TextChoices):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class Message(models.Model):
    """One message of a thread. `message_id` (the API's `id`) is client-supplied for
    idempotency, unique per thread; `seq` is assigned under the thread's row lock, strictly
    increasing and never reused (a truncation leaves a gap rather than renumbering, so a
    reader paging with after_seq never misses a later message)."""

    thread = models.ForeignKey(
        Thread, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    message_id = models.CharField(max_length=128)
    seq = models.PositiveBigIntegerField()
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.JSONField()
    metadata = models.JSONField(default=dict, blank=True)
    token_estimate = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ("thread", "seq")
        constraints = [
            # GET /threads/{id}/messages?after_seq= reads by this index, in seq order.
            models.UniqueConstraint(fields=("thread", "seq"), name="message_thread_seq"),
            # The idempotency key of appends.
            models.UniqueConstraint(
                fields=("thread", "message_id"), name="message_thread_message_id"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.thread_id}#{self.seq} {self.role}"


# A message's own columns (no thread, no pk), in the order the API shows them; used to
# read, copy (fork), snapshot and restore messages.
MESSAGE_COLUMNS = (
    "message_id",
    "seq",
    "role",
    "content",
    "metadata",
    "token_estimate",
    "created_at",
)


class Event(models.Model):
    """The audit trail of every state change. Thread and session are kept as plain ids so
    the trail outlives what it describes (a deleted thread keeps its `thread.deleted`)."""

    public_id = models.CharField(
        max_length=20, unique=True, default=id_factory("evt"), editable=False
    )
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="events", db_index=False)
    thread_id = models.CharField(max_length=20, null=True, blank=True)
    session_id = models.CharField(max_length=20, null=True, blank=True)
    kind = models.CharField(max_length=64)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ("id",)
        indexes = [
            # GET /events/ — the tenant's whole trail in order.
            models.Index(fields=("tenant", "id"), name="event_tenant_id"),
            # GET /events/?thread=, ?session= and ?kind= — that part of the trail in order.
            models.Index(fields=("tenant", "thread_id", "id"), name="event_tenant_thread"),
            models.Index(fields=("tenant", "session_id", "id"), name="event_tenant_session"),
            models.Index(fields=("tenant", "kind", "id"), name="event_tenant_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.public_id}"


# --- Conversation services: compaction and the steering queue (threads/compaction.py,
# threads/queue.py) --------------------------------------------------------------------


class CompactionTrigger(models.TextChoices):
    MANUAL = "manual"
    AUTO = "auto"


class CompactionStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


COMPACTION_PENDING = (CompactionStatus.QUEUED, CompactionStatus.RUNNING)


class Compaction(models.Model):
    """One compaction of a thread's history: the older messages summarized by the provider,
    archived to cold storage (`archive_key`, gzip JSON) and replaced by one system message.
    `status` moves queued → running (`lease_expires_at`: renewed by the run's heartbeat; past
    it the worker is dead) → succeeded | failed; a retryable provider error puts it back to
    queued until `retry_at`. One queued or running per thread (a partial unique constraint)."""

    id = _id_field("cmp")
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="compactions")
    trigger = models.CharField(max_length=8, choices=CompactionTrigger.choices)
    status = models.CharField(
        max_length=16, choices=CompactionStatus.choices, default=CompactionStatus.QUEUED
    )
    error = models.TextField(blank=True)
    keep_last = models.PositiveIntegerField()
    messages_summarized = models.PositiveIntegerField(null=True, blank=True)
    messages_kept = models.PositiveIntegerField(null=True, blank=True)
    tokens_before = models.PositiveBigIntegerField(null=True, blank=True)
    tokens_after = models.PositiveBigIntegerField(null=True, blank=True)
    summary = models.TextField(blank=True)
    summary_message_id = models.CharField(max_length=128, blank=True)
    # The summarized range: every message with seq ≤ cut_seq at the time of the run.
    cut_seq = models.PositiveBigIntegerField(null=True, blank=True)
    archive_key = models.CharField(max_length=300, blank=True)
    provider = models.CharField(max_length=100, blank=True)
    usage = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    retry_at = models.DateTimeField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("created_at", "id")
        constraints = [
            # One compaction in flight per thread: the INSERT of a second one fails, which
            # is how compaction_request() and the auto-compaction decision tell it apart.
            models.UniqueConstraint(
                fields=("thread",),
                condition=models.Q(status__in=COMPACTION_PENDING),
                name="compaction_one_pending_per_thread",
            ),
        ]
        indexes = [
            # GET /threads/{id}/compactions — one thread's compactions in creation order.
            models.Index(fields=("thread", "created_at", "id"), name="compaction_thread_created"),
            # The backstop: compactions still queued or running (few rows), by due time.
            models.Index(
                fields=("status", "retry_at"),
                name="compaction_pending_due",
                condition=models.Q(status__in=COMPACTION_PENDING),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.trigger}, {self.status})"


class QueuedMessageStatus(models.TextChoices):
    QUEUED = "queued"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


class QueuedMessage(models.Model):
    """A steering message sent while the agent was busy, waiting to be drained into the
    conversation at the next tool boundary (or to start the next turn)."""

    id = _id_field("que")
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="queued_messages")
    content = models.TextField()
    status = models.CharField(
        max_length=16, choices=QueuedMessageStatus.choices, default=QueuedMessageStatus.QUEUED
    )
    queued_at = models.DateTimeField(default=timezone.now, editable=False)
    delivered_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("queued_at", "id")
        indexes = [
            # GET /threads/{id}/queue, the drain and queue_count(): one thread's queued items
            # in order (a partial index: delivered and cancelled rows are history).
            models.Index(
                fields=("thread", "queued_at", "id"),
                name="queued_message_pending",
                condition=models.Q(status="queued"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"


class CompactedMessageId(models.Model):
    """The id of a message a compaction summarized away, with the seq it had.

    Appends are idempotent per message id across compactions (DESIGN.md invariant 2): the
    message's row is gone (its content is archived, see Compaction.archive_key), but a
    client retrying its append must still get it back as a duplicate. Recorded by the
    compaction's commit, in the transaction that deletes the rows; copied by a fork;
    cleared by a replacement of the whole history (which forgets the live ids too); left
    alone by a truncation. Lives in the database only: a flush keeps these rows (it deletes
    message rows only), so they need not travel in the cold snapshot."""

    thread = models.ForeignKey(
        Thread, on_delete=models.CASCADE, related_name="compacted_ids", db_index=False
    )
    message_id = models.CharField(max_length=128)
    seq = models.PositiveBigIntegerField(help_text="The seq the message had.")
    # The compaction that summarized it (its archive holds the original). A fork's copies
    # point at the source thread's compaction, so deleting that thread must not take them.
    compaction = models.ForeignKey(
        Compaction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            # messages_append's duplicate check (thread_id = … AND message_id IN …), in the
            # same round trip as its check of the live messages.
            models.UniqueConstraint(
                fields=("thread", "message_id"), name="compacted_message_id_thread_message"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.thread_id} {self.message_id} (#{self.seq}, compacted)"
