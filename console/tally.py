"""Counts of the event trail without counting the trail (the dashboard and /metrics).

Events are folded into EventTally in id order. The fold stops at the first event younger
than FOLD_LAG: an event's id is taken at its INSERT but it is seen only at its
transaction's COMMIT, so a lower id may still appear after a higher one. Transactions here
are short (no slow I/O inside one), so an event older than the lag is taken as committed.
The events after the mark — the last minute or so — are grouped at read time, so figures
move as soon as an event commits. Each call reads at most FOLD_BATCHES × FOLD_BATCH events
by primary key; a trail that was never folded catches up over several calls (`lag` says
how far behind the fold is, and the tail is then left out rather than scanned).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.db import IntegrityError, transaction
from django.db.models import BigIntegerField, Count, F, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, TruncDate
from django.utils import timezone

from console.models import EventTally, TallyMark
from threads.models import Event

FOLD_LAG = timedelta(seconds=60)
FOLD_BATCH = 20_000
FOLD_BATCHES = 5

# The token sums kept per (day, kind): column → payload path.
SUMS = {
    "input_tokens": "payload__usage__input_tokens",
    "cache_read_tokens": "payload__usage__cache_read_tokens",
    "cache_creation_tokens": "payload__usage__cache_creation_tokens",
    "output_tokens": "payload__usage__output_tokens",
    "tokens_before": "payload__tokens_before",
    "tokens_after": "payload__tokens_after",
}


@dataclass
class Tallies:
    """(day, kind) → {count, sums…}, folded plus the live tail."""

    rows: dict[tuple[date, str], dict[str, int]] = field(default_factory=dict)
    lag: int = 0  # events older than FOLD_LAG not folded yet (0 when caught up)

    def add(self, day: date, kind: str, values: dict[str, int]) -> None:
        row = self.rows.setdefault((day, kind), defaultdict(int))
        for name, value in values.items():
            row[name] += value or 0

    def total(self, kind: str, name: str = "count") -> int:
        return sum(row[name] for (_, k), row in self.rows.items() if k == kind)

    def totals(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for (_, kind), row in self.rows.items():
            out[kind] += row["count"]
        return dict(out)

    def by_day(self, kind: str, since: date) -> dict[date, dict[str, int]]:
        return {
            day: row for (day, k), row in sorted(self.rows.items()) if k == kind and day >= since
        }


def _grouped(queryset) -> list[dict]:
    sums = {name: Sum(Cast(KT(path), BigIntegerField())) for name, path in SUMS.items()}
    return list(
        queryset.order_by()
        .annotate(day=TruncDate("created_at"))
        .values("day", "kind")
        .annotate(count=Count("id"), **sums)
    )


def _mark() -> TallyMark:
    try:
        return TallyMark.objects.get_or_create(pk=1)[0]
    except IntegrityError:  # created by another process in between
        return TallyMark.objects.get(pk=1)


def _fold_once(now) -> tuple[int, bool]:
    """Fold one batch; returns (the mark after it, whether the fold is caught up)."""
    start = _mark().event_id
    rows = list(
        Event.objects.filter(id__gt=start)
        .order_by("id")
        .values_list("id", "created_at")[:FOLD_BATCH]
    )
    end = start
    young = False
    for event_id, created_at in rows:
        if created_at >= now - FOLD_LAG:
            young = True
            break
        end = event_id
    caught_up = young or len(rows) < FOLD_BATCH
    if end == start:
        return start, caught_up
    with transaction.atomic():
        # The claim: a second folder of the same range waits on this row lock, then finds
        # the mark moved and folds nothing.
        if not TallyMark.objects.filter(pk=1, event_id=start).update(event_id=end, updated_at=now):
            return _mark().event_id, False
        for group in _grouped(Event.objects.filter(id__gt=start, id__lte=end)):
            day, kind = group.pop("day"), group.pop("kind")
            values = {name: group[name] or 0 for name in ("count", *SUMS)}
            increments = {name: F(name) + value for name, value in values.items()}
            if not EventTally.objects.filter(day=day, kind=kind).update(**increments):
                EventTally.objects.create(day=day, kind=kind, **values)
    return end, caught_up


def tallies_read(*, since: date | None = None) -> Tallies:
    """Fold what is due (bounded), then read the folded rows and the live tail."""
    now = timezone.now()
    mark, caught_up = 0, False
    for _ in range(FOLD_BATCHES):
        mark, caught_up = _fold_once(now)
        if caught_up:
            break
    tallies = Tallies()
    folded = EventTally.objects.all()
    if since:
        folded = folded.filter(day__gte=since)
    for row in folded.values("day", "kind", "count", *SUMS):
        tallies.add(row.pop("day"), row.pop("kind"), row)
    if caught_up:
        for group in _grouped(Event.objects.filter(id__gt=mark)):
            tallies.add(group.pop("day"), group.pop("kind"), group)
    else:
        # Only an estimate of how far behind: the ids after the mark (gaps included).
        last = Event.objects.order_by("-id").values_list("id", flat=True).first() or mark
        tallies.lag = max(last - mark, 0)
    return tallies
