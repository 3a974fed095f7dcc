from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _register_schedules(sender, **kwargs) -> None:
    from tasks.schedules import sync_schedules

    sync_schedules()


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Background work"

    def ready(self) -> None:
        # Register the tasks in every process (web included), not only where a worker's
        # autodiscovery runs: services enqueue them by name (common.tasks).
        import tasks.tasks  # noqa: F401

        # After django_celery_beat's tables exist: post_migrate fires once per app, and the
        # `sender` filter keeps it to one call per migrate.
        post_migrate.connect(_register_schedules, sender=self, dispatch_uid="tasks.schedules")
