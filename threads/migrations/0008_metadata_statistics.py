"""A finer sample of threads.metadata for the planner (PostgreSQL only).

With the default statistics target (100), PostgreSQL estimates `metadata @> {…}` from about a
hundred sampled values: a value found among them is taken to match 1 % of the rows, even
when it matches 0.1 %. For a paginated list (ORDER BY created_at LIMIT n) that estimate
makes the planner walk the tenant's created_at index and filter every row instead of using
thread_metadata_gin (bench/filters.py saw both plans on the same data). A target of 1,000
keeps the estimate near the real share, at the price of a larger ANALYZE sample."""

from django.db import migrations

TARGET = 1000


def finer(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"ALTER TABLE threads_thread ALTER COLUMN metadata SET STATISTICS {TARGET}"
        )


def default(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE threads_thread ALTER COLUMN metadata SET STATISTICS -1")


class Migration(migrations.Migration):
    dependencies = [("threads", "0007_compaction_lease")]

    operations = [migrations.RunPython(finer, default)]
