"""Running totals of the event trail, so that no page or scrape counts the trail itself.

console/tally.py folds events into EventTally rows in id order, past the point recorded in
TallyMark, and adds the few events after that point at read time."""

from __future__ import annotations

from django.db import models


class TallyMark(models.Model):
    """One row: every event with id ≤ event_id is in EventTally. Moved by a conditional
    UPDATE from the value a folder read, so two processes never fold the same events."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    event_id = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"events ≤ {self.event_id}"


class EventTally(models.Model):
    """Events of one kind on one day (UTC), with the token sums their payloads carry: a
    settled turn's or a warm's usage, a compaction's tokens before and after."""

    day = models.DateField()
    kind = models.CharField(max_length=64)
    count = models.PositiveBigIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    cache_read_tokens = models.PositiveBigIntegerField(default=0)
    cache_creation_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    tokens_before = models.PositiveBigIntegerField(default=0)
    tokens_after = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ("day", "kind")
        constraints = [
            # The fold's UPDATE … WHERE day = … AND kind = …, and one row per pair.
            models.UniqueConstraint(fields=("day", "kind"), name="event_tally_day_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.kind}: {self.count}"
