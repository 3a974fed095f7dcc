"""The event tally: old events folded once, recent ones counted live, a long backlog
caught up over several reads without ever counting an event twice."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from console import tally
from console.models import EventTally, TallyMark
from threads import events
from threads.models import Event


def make_events(tenant, kind: str, n: int, *, age: timedelta, **payload) -> None:
    at = timezone.now() - age
    Event.objects.bulk_create(
        [Event(tenant=tenant, kind=kind, payload=payload, created_at=at) for _ in range(n)]
    )


def test_old_events_are_folded_once_and_recent_ones_counted_live(api):
    make_events(api.tenant, events.THREAD_FLUSHED, 3, age=timedelta(hours=2))
    make_events(api.tenant, events.THREAD_FLUSHED, 2, age=timedelta(seconds=0))

    first = tally.tallies_read()
    second = tally.tallies_read()

    assert first.totals()[events.THREAD_FLUSHED] == 5
    assert second.totals()[events.THREAD_FLUSHED] == 5
    assert EventTally.objects.get(kind=events.THREAD_FLUSHED).count == 3  # only the old ones
    old_last = Event.objects.filter(kind=events.THREAD_FLUSHED).order_by("id")[2].id
    assert TallyMark.objects.get().event_id == old_last


def test_token_sums_follow_the_payloads(api):
    usage = {"input_tokens": 10, "cache_read_tokens": 30, "cache_creation_tokens": 5}
    make_events(api.tenant, events.SESSION_TURN_SETTLED, 4, age=timedelta(hours=1), usage=usage)
    make_events(
        api.tenant, events.THREAD_COMPACTED, 1, age=timedelta(0), tokens_before=900, tokens_after=90
    )

    read = tally.tallies_read()

    assert read.total(events.SESSION_TURN_SETTLED, "cache_read_tokens") == 120
    assert read.total(events.SESSION_TURN_SETTLED, "input_tokens") == 40
    assert read.total(events.THREAD_COMPACTED, "tokens_before") == 900
    assert read.total(events.THREAD_COMPACTED, "tokens_after") == 90


def test_a_backlog_is_caught_up_over_several_reads(api, monkeypatch):
    monkeypatch.setattr(tally, "FOLD_BATCH", 10)
    monkeypatch.setattr(tally, "FOLD_BATCHES", 2)
    make_events(api.tenant, events.WARM_COMPLETED, 45, age=timedelta(days=1))

    behind = tally.tallies_read()
    assert behind.lag == 25 and behind.totals()[events.WARM_COMPLETED] == 20  # no live tail
    tally.tallies_read()
    caught_up = tally.tallies_read()

    assert caught_up.lag == 0
    assert caught_up.totals()[events.WARM_COMPLETED] == 45
    assert EventTally.objects.get(kind=events.WARM_COMPLETED).count == 45


def test_a_fold_that_lost_the_race_folds_nothing(api, monkeypatch):
    make_events(api.tenant, events.THREAD_HYDRATED, 3, age=timedelta(hours=1))
    tally.tallies_read()  # folds the three and moves the mark past them
    assert EventTally.objects.get(kind=events.THREAD_HYDRATED).count == 3

    # a second folder that read the mark before the first one moved it
    stale = TallyMark(pk=1, event_id=0)
    real_mark = tally._mark
    monkeypatch.setattr(tally, "_mark", lambda: stale)
    tally._fold_once(timezone.now())
    monkeypatch.setattr(tally, "_mark", real_mark)

    assert EventTally.objects.get(kind=events.THREAD_HYDRATED).count == 3
    assert tally.tallies_read().totals()[events.THREAD_HYDRATED] == 3
