from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ThreadlineAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with Threadline's site as `admin.site`: every app's
    `@admin.register` lands on it, and its index is the dashboard. Named in INSTALLED_APPS
    in place of "django.contrib.admin"."""

    default = False  # "console" alone means ConsoleConfig
    default_site = "console.site.ThreadlineAdminSite"


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Operator console"

    def ready(self) -> None:
        from console import receivers

        receivers.connect()
