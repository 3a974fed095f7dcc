"""Test settings: the real services of this machine (PostgreSQL, Redis).

The suite starts its own S3 endpoint and LLM stand-in (see tests/conftest.py).
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/threadline")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("DJANGO_DEBUG", "false")
# The tests' request and cache counters stay out of those of `make run` in the same checkout.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    os.path.join(os.path.dirname(__file__), "..", "..", "var", "prometheus-test"),
)

from config.env import env_bool
from config.settings.base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/10")
# Enqueued tasks run in-process after commit (the real task code, synchronously). Tests that
# need a real worker use tests/workers.py, which switches this off for their duration.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", True)
CELERY_TASK_EAGER_PROPAGATES = True
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
