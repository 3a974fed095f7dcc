"""The Celery app: `celery -A config worker` and `celery -A config beat`.

Settings come from Django's settings with the CELERY_ prefix (config/settings/base.py).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("threadline")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
