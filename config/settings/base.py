"""Settings shared by every environment, read from the environment (see config/env.py).

The README's configuration table lists every variable; each one has an embedded default.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from config.env import (
    BASE_DIR,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_levels,
    env_list,
    env_str,
)

VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "dev-insecure-threadline-secret-key-change-me")
DEBUG = env_bool("DJANGO_DEBUG", True)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    # The admin with Threadline's site (console/site.py: branding and the dashboard index).
    "console.apps.ThreadlineAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_celery_results",
    "common",
    "threads",
    "threads.storage",
    "sessions_app",
    "handoffs",
    "tasks",
    "console",
]

MIDDLEWARE = [
    # First, so that it times and counts every response, errors of the others included.
    "common.metrics.RequestMetricsMiddleware",
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
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Parameters bound by PostgreSQL (psycopg's server-side binding) instead of quoted into
    # the SQL text in Python: less CPU per statement on the hot path, and the precondition
    # for prepared statements. Unnamed statements work through any pooler.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "server_side_binding": env_bool("DATABASE_SERVER_SIDE_BINDING", True),
            # Prepare a statement once it has run this many times on a connection (parse and
            # plan once, then only bind: ~30 % of PostgreSQL's CPU per append). Off by default:
            # named prepared statements break behind PgBouncer in transaction mode unless it
            # is >= 1.21 with max_prepared_statements > 0. Safe with direct PostgreSQL.
            "prepare_threshold": env_int("DATABASE_PREPARE_THRESHOLD", 0, minimum=0) or None,
        }
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default: web, worker and beat share one file. WAL lets readers run beside
    # the writer; IMMEDIATE transactions take the write lock up front, so two processes never
    # deadlock upgrading a read lock; the timeout waits for the lock instead of failing.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

# Behind PgBouncer in transaction pooling mode a server connection is someone else's between
# two transactions, so nothing may outlive one: no server-side cursors (Django's .iterator()
# DECLAREs one) and no prepared statements (psycopg prepares a query it ran 5 times on a
# connection; this wins over any option that turns them on).
DATABASE_TRANSACTION_POOLING = env_bool("DATABASE_TRANSACTION_POOLING", False)
if DATABASE_TRANSACTION_POOLING and DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = None

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database that does not answer a connection fails the request after this long
    # (503 database_unavailable) instead of holding a web thread.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault(
        "connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT", 3, minimum=1)
    )

# /readyz answers within this many seconds whatever hangs (common/health.py).
READYZ_TIMEOUT_SECONDS = env_float("READYZ_TIMEOUT_SECONDS", 2.0, minimum=0.1)

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
    if env_bool("REDIS_CLUSTER", False):
        # REDIS_URL is one node of a Redis Cluster (common/redis_cluster.py).
        CACHES["default"]["OPTIONS"]["CONNECTION_FACTORY"] = (
            "common.redis_cluster.ClusterConnectionFactory"
        )
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
# Vendored front-end code (Chart.js for the dashboard): nothing is loaded from a CDN.
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Limits ----------------------------------------------------------------------------
MAX_MESSAGE_BYTES = env_int("MAX_MESSAGE_BYTES", 1024 * 1024, minimum=1)
MAX_REQUEST_BYTES = env_int("MAX_REQUEST_BYTES", 32 * 1024 * 1024, minimum=1024)
MAX_STATE_BYTES = env_int("MAX_STATE_BYTES", 1024 * 1024, minimum=1)
MAX_BATCH_MESSAGES = 1000
MAX_PAGE_SIZE = 1000
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES
# A request body must have arrived this long after its headers, or the request is answered
# 408 request_timeout and its connection closed (config/slowbody.py; under gunicorn).
REQUEST_BODY_TIMEOUT_SECONDS = env_float("REQUEST_BODY_TIMEOUT_SECONDS", 10.0, minimum=0)
API_RATE_LIMIT_PER_MINUTE = env_int("API_RATE_LIMIT_PER_MINUTE", 60000, minimum=0)
# The throttle's per-host counters: without Redis, and while Redis is unavailable
# (common/api/throttling.py). Every web process of a host must see the same directory.
THROTTLE_DIR = env_str("THROTTLE_DIR", str(VAR_DIR / "throttle"))
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
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "common.api.negotiation.JSONFirstNegotiation",
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
    # Swagger UI and Redoc from drf-spectacular-sidecar's static files: /api/docs/ works
    # without internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
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
    _broker_dir = Path(env_str("CELERY_FILESYSTEM_BROKER_DIR", str(VAR_DIR / "broker")))
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
# Results go to the database (django-celery-results; SQLite in the embedded default), where
# the dashboard reads them. Most tasks keep none (cache fills, compactions: their rows are
# their record) but their failures and retries are stored; the beat sweeps keep every
# result, so each schedule's last outcome is known.
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_STORE_ERRORS_EVEN_IF_IGNORED = True
CELERY_RESULT_EXPIRES = env_int("CELERY_RESULT_EXPIRES", 86400, minimum=60)
# Every task of tasks/schedules.py (tests/test_console.py checks that none is missing).
BEAT_TASKS = (
    "threads.warming_sweep",
    "threads.compaction_backstop",
    "threads.memory_log",
    "threads.flush_idle_threads",
    "sessions.subsessions_retention",
    "sessions.recover_session_locks",
)
CELERY_TASK_ANNOTATIONS = {name: {"ignore_result": False} for name in BEAT_TASKS}
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
# A flush's lease on its thread, renewed every third of it while the flush runs: a killed
# process blocks explicit flushes of that thread for at most this long.
FLUSH_LEASE_SECONDS = env_int("FLUSH_LEASE_SECONDS", 30, minimum=3)
COLD_AFTER_SECONDS = env_int("COLD_AFTER_SECONDS", 3600, minimum=1)
COLD_STORAGE = env_choice("COLD_STORAGE", "filesystem", ("filesystem", "s3"))
COLD_PREFIX = env_str("COLD_PREFIX", "threads")
# PutObject with If-Match / If-None-Match (AWS S3, moto, recent MinIO); off → a checked
# read-before-write for stores that ignore or refuse the headers (README, "Shared cold objects").
COLD_CONDITIONAL_WRITES = env_bool("COLD_CONDITIONAL_WRITES", True)
# The largest import document, after gunzip (a larger body or document → 413).
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 64 * 1024 * 1024, minimum=1024)
AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME", "threadline")
AWS_S3_ENDPOINT_URL = env_str("AWS_S3_ENDPOINT_URL", "") or None
AWS_S3_REGION_NAME = env_str("AWS_S3_REGION_NAME", "us-east-1")
AWS_ACCESS_KEY_ID = env_str("AWS_ACCESS_KEY_ID", "") or None
AWS_SECRET_ACCESS_KEY = env_str("AWS_SECRET_ACCESS_KEY", "") or None


AWS_S3_CONNECT_TIMEOUT = env_float("AWS_S3_CONNECT_TIMEOUT", 1.0, minimum=0.1)
AWS_S3_READ_TIMEOUT = env_float("AWS_S3_READ_TIMEOUT", 2.0, minimum=0.1)
# Total attempts per call, the first included (botocore's `total_max_attempts`; its
# `max_attempts` would count retries only). A call against a hung store gives up after about
# attempts × read timeout + up to 1 s of backoff: 5 s with the defaults.
AWS_S3_MAX_ATTEMPTS = env_int("AWS_S3_MAX_ATTEMPTS", 2, minimum=1)
# The bulkhead (threads/storage/cold.py): calls to the store running at once on one host,
# across all its processes; one more answers 503 cold_storage_busy at once (0 = no limit).
COLD_STORAGE_CONCURRENCY = env_int("COLD_STORAGE_CONCURRENCY", 8, minimum=0)
COLD_SLOTS_DIR = env_str("COLD_SLOTS_DIR", str(VAR_DIR / "cold-slots"))
# How long a call waits for a free slot before answering busy (a burst of healthy calls
# frees slots quickly; a hung store does not, and its calls give up after their budget).
COLD_STORAGE_SLOT_WAIT_SECONDS = env_float("COLD_STORAGE_SLOT_WAIT_SECONDS", 2.0, minimum=0)


def boto_config():
    """The S3 client's timeouts and retries (fail fast: the caller answers 503 and keeps the
    hot rows; the sweep retries later)."""
    from botocore.config import Config

    return Config(
        connect_timeout=AWS_S3_CONNECT_TIMEOUT,
        read_timeout=AWS_S3_READ_TIMEOUT,
        retries={"total_max_attempts": AWS_S3_MAX_ATTEMPTS, "mode": "standard"},
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
                "client_config": boto_config(),
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
# Which models take output_config.effort and at which levels, over the built-in table
# (threads/conversation/messages_api.py): "claude-opus-4-7=low,medium,high,xhigh,max;my-model=".
LLM_EFFORT_LEVELS = env_levels(
    "LLM_EFFORT_LEVELS", allowed=("low", "medium", "high", "xhigh", "max")
)
# A running compaction's lease, renewed every third of it while the worker lives: a killed
# worker's compaction is taken over this long after its last heartbeat.
COMPACTION_LEASE_SECONDS = env_int("COMPACTION_LEASE_SECONDS", 30, minimum=3)

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

# --- Operator console and metrics (console/) -------------------------------------------
# GET /metrics answers only with `Authorization: Bearer <METRICS_TOKEN>`; unset → 404.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# Request and cache counters are kept per process in prometheus-client's multiprocess files
# under this directory and summed at scrape time (gunicorn runs several workers).
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "prometheus"))
os.makedirs(PROMETHEUS_MULTIPROC_DIR, exist_ok=True)
# prometheus_client reads it from the environment when it is first imported (after settings).
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
# The dashboard lists a session awaiting a human longer than this as stuck.
STUCK_HITL_SECONDS = env_int("STUCK_HITL_SECONDS", 3600, minimum=1)

# --- Logging ---------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
