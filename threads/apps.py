from django.apps import AppConfig


class ThreadsConfig(AppConfig):
    name = "threads"
    verbose_name = "Threads"

    def ready(self) -> None:
        from common.health import READINESS_PROBES
        from threads.storage import cold, hotcache

        # Both optional for serving hot threads: "degraded" (200) when they fail.
        READINESS_PROBES["redis"] = hotcache.probe
        READINESS_PROBES["cold_storage"] = cold.probe
