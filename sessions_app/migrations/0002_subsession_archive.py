# Retention of idle sub-sessions: where the cold bundle is and when it was archived.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="subsession",
            name="archive_key",
            field=models.CharField(blank=True, max_length=300),
        ),
        migrations.AddField(
            model_name="subsession",
            name="archived_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
