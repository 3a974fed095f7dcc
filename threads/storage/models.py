"""What Threadline last knew of a thread's cold object (see shared.py)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class ColdObject(models.Model):
    """The tag (S3 ETag, or the body's SHA-256 on the filesystem) of the snapshot object a
    thread last wrote (flush) or read (hydrate, import from a key). Another tool sharing the
    bucket (zeitlich) may write the object meanwhile; a flush writes only on top of this tag
    (If-Match) and otherwise refuses with 409 cold_object_changed, so nothing it wrote is
    overwritten silently. Written in the transaction that records the flush or hydrate."""

    thread = models.OneToOneField(
        "threads.Thread", primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    key = models.CharField(max_length=300)
    etag = models.CharField(max_length=200)
    recorded_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.thread_id} {self.key} {self.etag}"
