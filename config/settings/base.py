"""Settings shared by every environment, read from the environment (see config/env.py).

The README's configuration table lists every variable; each one has an embedded default.
"""

from __future__ import annotations

import dj_database_url

from config.env import (
    BASE_DIR,
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_str,
)

VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "dev-insecure-threadline-secret-key-change-me")
DEBUG = env_bool("DJANGO_DEBUG", True)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "django_celery_beat",
    "common",
    "threads",
    "sessions_app",
    "handoffs",
    "tasks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database --------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'threadline.sqlite3'}")
# Persistent connections without CONN_HEALTH_CHECKS: its SELECT 1 was a round trip on every
# request. A connection a database restart broke fails the one request that finds it (503
# database_unavailable, common/api/exceptions.py) and is closed after it.
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=False)
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default: web, worker and beat share one file. WAL lets readers run beside
    # the writer; IMMEDIATE transactions take the write lock up front, so two processes never
    # deadlock upgrading a read lock; the timeout waits for the lock instead of failing.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (Redis when REDIS_URL is set) ------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                # Redis is a cache: when it is down, requests are served from the database.
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 0.5,
                "SOCKET_TIMEOUT": 0.5,
            },
        }
    }
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
    DJANGO_REDIS_LOGGER = "threadline.redis"
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth, i18n, static ----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# --- Limits ----------------------------------------------------------------------------
MAX_MESSAGE_BYTES = env_int("MAX_MESSAGE_BYTES", 1024 * 1024, minimum=1)
MAX_REQUEST_BYTES = env_int("MAX_REQUEST_BYTES", 32 * 1024 * 1024, minimum=1024)
MAX_STATE_BYTES = env_int("MAX_STATE_BYTES", 1024 * 1024, minimum=1)
MAX_BATCH_MESSAGES = 1000
MAX_PAGE_SIZE = 1000
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES
API_RATE_LIMIT_PER_MINUTE = env_int("API_RATE_LIMIT_PER_MINUTE", 60000, minimum=0)
# How long a process trusts an API key it has looked up (0: look it up on every request).
# A revoked key keeps working in other processes for at most this long.
API_KEY_CACHE_SECONDS = env_int("API_KEY_CACHE_SECONDS", 5, minimum=0)

# --- REST API --------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["threads.api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["common.api.throttling.TenantRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["common.api.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "common.api.pagination.CursorPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "common.api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "PAGE_SIZE": 100,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Threadline API",
    "DESCRIPTION": (
        "Control plane for AI-agent conversations: threads, messages, sessions, handoffs, "
        "tiers, compaction and cache warming. Authenticate with `Authorization: Bearer <key>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "APPEND_COMPONENTS": {
        "securitySchemes": {"ApiKey": {"type": "http", "scheme": "bearer"}},
    },
    "SECURITY": [{"ApiKey": []}],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "common.api.schema.json_parameters",
    ],
    "AUTHENTICATION_WHITELIST": [],
    # Many models have a `status`; name each choice set instead of letting it be hashed.
    "ENUM_NAME_OVERRIDES": {
        "ThreadStatusEnum": "threads.models.ThreadStatus",
        "SessionStatusEnum": "sessions_app.models.SessionStatus",
        "SubSessionStatusEnum": "sessions_app.models.SubSessionStatus",
        "OutcomeStatusEnum": "sessions_app.models.OutcomeStatus",
        "WorkspaceStatusEnum": "sessions_app.models.WorkspaceStatus",
        "CompactionStatusEnum": "threads.models.CompactionStatus",
        "QueuedMessageStatusEnum": "threads.models.QueuedMessageStatus",
        "HandoffOutcomeEnum": "handoffs.models.HandoffOutcome",
    },
}

# --- Celery ----------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # kombu's default is ./control, beside whatever the process's working directory is.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 600, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 540, minimum=1)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Tiers -----------------------------------------------------------------------------
HOT_TTL_SECONDS = env_int("HOT_TTL_SECONDS", 86400, minimum=1)
HOT_CACHE_MAX_MESSAGES = env_int("HOT_CACHE_MAX_MESSAGES", 20000, minimum=0)
# Threads whose history is larger (estimated from token counts) are not cached in Redis:
# their pages are read from the database, so one thread cannot fill Redis or a worker.
HOT_CACHE_MAX_BYTES = env_int("HOT_CACHE_MAX_BYTES", 16 * 1024 * 1024, minimum=0)
# A page of messages holds at most this much (estimated; at least one message).
PAGE_MAX_BYTES = env_int("PAGE_MAX_BYTES", 4 * 1024 * 1024, minimum=1)
COLD_AFTER_SECONDS = env_int("COLD_AFTER_SECONDS", 3600, minimum=1)
COLD_STORAGE = env_choice("COLD_STORAGE", "filesystem", ("filesystem", "s3"))
COLD_PREFIX = env_str("COLD_PREFIX", "threads")
AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME", "threadline")
AWS_S3_ENDPOINT_URL = env_str("AWS_S3_ENDPOINT_URL", "") or None
AWS_S3_REGION_NAME = env_str("AWS_S3_REGION_NAME", "us-east-1")
AWS_ACCESS_KEY_ID = env_str("AWS_ACCESS_KEY_ID", "") or None
AWS_SECRET_ACCESS_KEY = env_str("AWS_SECRET_ACCESS_KEY", "") or None


def _boto_config():
    from botocore.config import Config

    return Config(
        connect_timeout=env_int("AWS_S3_CONNECT_TIMEOUT", 3, minimum=1),
        read_timeout=env_int("AWS_S3_READ_TIMEOUT", 20, minimum=1),
        retries={"max_attempts": env_int("AWS_S3_MAX_ATTEMPTS", 3, minimum=1), "mode": "standard"},
    )


STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "cold": (
        {
            "BACKEND": "threads.storage.cold.ColdS3Storage",
            "OPTIONS": {
                "bucket_name": AWS_STORAGE_BUCKET_NAME,
                "endpoint_url": AWS_S3_ENDPOINT_URL,
                "region_name": AWS_S3_REGION_NAME,
                "access_key": AWS_ACCESS_KEY_ID,
                "secret_key": AWS_SECRET_ACCESS_KEY,
                "file_overwrite": True,
                "default_acl": None,
                # Fail fast when the store is down: the caller answers 503 and keeps the
                # hot rows; the sweep retries later.
                "client_config": _boto_config(),
            },
        }
        if COLD_STORAGE == "s3"
        else {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(VAR_DIR / "cold"), "allow_overwrite": True},
        }
    ),
}

# --- Conversation services -------------------------------------------------------------
LLM_PROVIDER = env_choice("LLM_PROVIDER", "local", ("local", "anthropic"))
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY", "")
ANTHROPIC_BASE_URL = env_str("ANTHROPIC_BASE_URL", "") or None
LLM_MODEL = env_str("LLM_MODEL", "claude-sonnet-4-6")

# --- Periodic work (intervals used when beat's schedule is first registered) -----------
WARMING_SWEEP_SECONDS = env_int("WARMING_SWEEP_SECONDS", 5, minimum=1)
COMPACTION_BACKSTOP_SECONDS = env_int("COMPACTION_BACKSTOP_SECONDS", 60, minimum=1)
MEMORY_LOG_SECONDS = env_int("MEMORY_LOG_SECONDS", 60, minimum=1)
FLUSH_SWEEP_SECONDS = env_int("FLUSH_SWEEP_SECONDS", 300, minimum=1)
RETENTION_SWEEP_SECONDS = env_int("RETENTION_SWEEP_SECONDS", 300, minimum=1)
LOCK_RECOVERY_SECONDS = env_int("LOCK_RECOVERY_SECONDS", 60, minimum=1)

# --- Sessions and workspaces -----------------------------------------------------------
SESSION_LOCK_LEASE_SECONDS = env_int("SESSION_LOCK_LEASE_SECONDS", 300, minimum=1)
WORKSPACE_ROOT = env_str("WORKSPACE_ROOT", str(VAR_DIR / "workspaces"))
WORKSPACE_GIT_REPO = env_str("WORKSPACE_GIT_REPO", "")

# --- Logging ---------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
