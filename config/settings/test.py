"""Test settings: the real services of this machine (PostgreSQL, Redis).

The suite starts its own S3 endpoint and LLM stand-in (see tests/conftest.py).
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/threadline")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("DJANGO_DEBUG", "false")

from config.settings.base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/10")
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
