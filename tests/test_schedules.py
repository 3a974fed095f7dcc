"""The periodic tasks are in django-celery-beat's database after migrate, with intervals
from settings, pointing at registered tasks; operators' changes survive a re-sync."""

from __future__ import annotations

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.celery import app
from tasks.schedules import SCHEDULES, sync_schedules
from tasks.tasks import memory_log_task
from tests.factories import ThreadFactory

CONVERSATION = {
    "warming-sweep": ("threads.warming_sweep", "WARMING_SWEEP_SECONDS"),
    "compaction-backstop": ("threads.compaction_backstop", "COMPACTION_BACKSTOP_SECONDS"),
    "memory-log": ("threads.memory_log", "MEMORY_LOG_SECONDS"),
}


@pytest.mark.django_db
def test_every_schedule_is_registered_after_migrate_with_its_interval(settings):
    app.loader.import_default_modules()
    for schedule in SCHEDULES:
        task = PeriodicTask.objects.select_related("interval").get(name=schedule.name)
        assert task.task == schedule.task
        assert task.task in app.tasks, f"{task.task} is not a registered Celery task"
        assert task.enabled
        assert task.interval.period == IntervalSchedule.SECONDS
        assert task.interval.every == schedule.every_seconds
    assert set(CONVERSATION) <= {s.name for s in SCHEDULES}
    warming = PeriodicTask.objects.get(name="warming-sweep")
    assert warming.interval.every == settings.WARMING_SWEEP_SECONDS
    assert PeriodicTask.objects.get(name="memory-log").interval.every == 60


@pytest.mark.django_db
def test_a_new_entry_takes_its_interval_from_settings(settings):
    PeriodicTask.objects.filter(name__in=list(CONVERSATION)).delete()
    settings.WARMING_SWEEP_SECONDS = 7
    settings.COMPACTION_BACKSTOP_SECONDS = 90
    created = sync_schedules()
    assert set(CONVERSATION) <= set(created)
    for name, (task, setting) in CONVERSATION.items():
        row = PeriodicTask.objects.get(name=name)
        assert row.task == task
        assert row.interval.every == getattr(settings, setting, 60)


@pytest.mark.django_db
def test_an_interval_changed_by_an_operator_survives_a_resync():
    slow, _ = IntervalSchedule.objects.get_or_create(every=30, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.filter(name="warming-sweep").update(interval=slow)
    assert "warming-sweep" not in sync_schedules()
    assert PeriodicTask.objects.get(name="warming-sweep").interval.every == 30


@pytest.mark.django_db
def test_the_memory_log_reports_rss_and_active_threads(caplog):
    ThreadFactory(lifecycle="active")
    ThreadFactory(lifecycle="idle")
    with caplog.at_level("INFO", logger="tasks.tasks"):
        record = memory_log_task()
    assert record["rss_mb"] > 10
    assert record["active_threads"] == 1
    assert "memory:periodic" in caplog.text and "active_threads=1" in caplog.text
