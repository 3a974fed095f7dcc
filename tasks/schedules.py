"""The periodic tasks, registered in django-celery-beat's database scheduler.

`sync_schedules()` runs after every `migrate` (tasks/apps.py), so `make run` starts beat with
every sweep in place and operators see and edit them in the admin (Periodic tasks). An entry
is created when missing and then left alone: an interval an operator changed in the admin
survives deploys. The interval of a new entry comes from settings (e.g. WARMING_SWEEP_SECONDS).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    setting: str | None = None  # the settings name holding the interval in seconds
    default_seconds: int = 60
    description: str = ""

    @property
    def every_seconds(self) -> int:
        return (
            int(getattr(settings, self.setting, self.default_seconds))
            if self.setting
            else (self.default_seconds)
        )


# Each subsystem adds its sweeps here.
SCHEDULES: list[Schedule] = []


def sync_schedules() -> list[str]:
    """Create the missing periodic tasks; returns the names created."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    created = []
    for schedule in SCHEDULES:
        if PeriodicTask.objects.filter(name=schedule.name).exists():
            continue
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=schedule.every_seconds, period=IntervalSchedule.SECONDS
        )
        PeriodicTask.objects.get_or_create(
            name=schedule.name,
            defaults={
                "task": schedule.task,
                "interval": interval,
                "description": schedule.description,
            },
        )
        created.append(schedule.name)
    return created
