"""A GIN index (jsonb_path_ops) on threads.metadata for `?metadata.<key>=<value>`.

PostgreSQL only: the filter is a containment (`metadata @> {"key": value}`) there, which this
index serves; SQLite has neither, and filters by key lookups (threads/selectors.py)."""

from django.db import migrations

INDEX = "thread_metadata_gin"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON threads_thread "
            "USING gin (metadata jsonb_path_ops)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("threads", "0005_sweep_indexes")]

    operations = [migrations.RunPython(create, drop)]
