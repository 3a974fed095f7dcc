from django.apps import AppConfig


class ThreadsConfig(AppConfig):
    name = "threads"
    verbose_name = "Threads"

    def ready(self) -> None:
        from common.health import READINESS_PROBES
        from threads.conversation import providers
        from threads.storage import cold, hotcache

        # Both optional for serving hot threads: "degraded" (200) when they fail.
        READINESS_PROBES["redis"] = hotcache.probe
        READINESS_PROBES["cold_storage"] = cold.probe
        # The SDK is imported with `providers` and its client built here, at process start:
        # the first warm of a process used to take seconds doing it.
        providers.prepare()
