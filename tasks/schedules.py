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

# Conversation services (threads/warming.py, threads/compaction.py, tasks/tasks.py).
SCHEDULES += [
    Schedule(
        name="warming-sweep",
        task="threads.warming_sweep",
        setting="WARMING_SWEEP_SECONDS",
        default_seconds=5,
        description="Claim due prompt-cache warming timers and warm those threads.",
    ),
    Schedule(
        name="compaction-backstop",
        task="threads.compaction_backstop",
        setting="COMPACTION_BACKSTOP_SECONDS",
        default_seconds=60,
        description=(
            "Re-enqueue compactions whose task was lost or whose worker died; queue the "
            "auto-compactions a settle missed."
        ),
    ),
    Schedule(
        name="memory-log",
        task="threads.memory_log",
        setting="MEMORY_LOG_SECONDS",
        default_seconds=60,
        description="Log the worker's RSS (MB) and how many conversations are active.",
    ),
]

# Tiers (threads/tiers.py, tasks/tasks.py).
SCHEDULES += [
    Schedule(
        name="flush-idle-threads",
        task="threads.flush_idle_threads",
        setting="FLUSH_SWEEP_SECONDS",
        default_seconds=300,
        description=(
            "Flush threads idle longer than COLD_AFTER_SECONDS to cold storage, in batches; "
            "each thread is claimed by a conditional UPDATE, so workers never flush one twice."
        ),
    ),
    Schedule(
        name="subsession-retention",
        task="sessions.subsessions_retention",
        setting="RETENTION_SWEEP_SECONDS",
        default_seconds=300,
        description=(
            "Archive sub-sessions idle (or merged, merge_rejected, failed) longer than their "
            "project's idle_subsession_ttl_seconds to cold storage; dispose their workspaces."
        ),
    ),
]


# Sessions (sessions_app/recovery.py session_locks_recover).
SCHEDULES += [
    Schedule(
        name="session-lock-recovery",
        task="sessions.recover_session_locks",
        setting="LOCK_RECOVERY_SECONDS",
        default_seconds=60,
        description=(
            "Revert session locks whose lease expired (a crashed handoff or spawn) to idle, "
            "owner_version unchanged, and dispose the workspaces they left behind."
        ),
    ),
]


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
