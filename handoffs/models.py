"""Handoffs: one row per recipient of a single or broadcast handoff.

The rows of one handoff share `group_id` (the lock token the source session holds while it
runs): for a single handoff it is the row's own id, for a broadcast the first row's id.
The API's handoff `id` is the group id.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from common.ids import id_factory
from sessions_app.models import Session, SubSession, Workspace
from threads.models import Tenant, Thread


class HandoffMode(models.TextChoices):
    SINGLE = "single"
    BROADCAST = "broadcast"


class HandoffOutcome(models.TextChoices):
    PENDING = "pending"  # the source is locked; workspaces are being provisioned
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"


class Handoff(models.Model):
    id = models.CharField(
        primary_key=True, max_length=20, default=id_factory("hof"), editable=False
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    group_id = models.CharField(max_length=20, db_index=True)
    mode = models.CharField(max_length=16, choices=HandoffMode.choices)
    position = models.PositiveIntegerField(default=0)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="+")
    source_session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="handoffs_out"
    )
    recipient = models.JSONField()
    recipient_session = models.ForeignKey(
        Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="handoffs_in"
    )
    subsession = models.ForeignKey(
        SubSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    workspace = models.ForeignKey(
        Workspace, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    workspace_backend = models.CharField(max_length=16)
    expected_owner_version = models.PositiveBigIntegerField()
    new_owner_version = models.PositiveBigIntegerField(null=True, blank=True)
    outcome = models.CharField(
        max_length=16, choices=HandoffOutcome.choices, default=HandoffOutcome.PENDING
    )
    error = models.TextField(blank=True)
    partial_state = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("created_at", "group_id", "position")
        indexes = [
            # The admin's "handoffs of this session" and the source's history.
            models.Index(fields=("source_session", "created_at"), name="handoff_source_created"),
        ]

    def __str__(self) -> str:
        return f"{self.mode} handoff {self.id} ({self.outcome})"
