from django.apps import AppConfig


class StorageConfig(AppConfig):
    """threads.storage as an app of its own only for its one table (ColdObject): its
    migrations then never race the core app's numbering."""

    name = "threads.storage"
    label = "threads_storage"
    default_auto_field = "django.db.models.BigAutoField"
