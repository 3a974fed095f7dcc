from django.apps import AppConfig


class HandoffsConfig(AppConfig):
    name = "handoffs"
    verbose_name = "Handoffs"

    def ready(self) -> None:
        # Imported here, not at the top: this module loads before the app registry is
        # ready, and the receivers import models.
        from handoffs.receivers import on_session_lock_released
        from sessions_app.signals import session_lock_released

        session_lock_released.connect(
            on_session_lock_released, dispatch_uid="handoffs.on_session_lock_released"
        )
