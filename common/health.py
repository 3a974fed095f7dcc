"""/healthz (the process answers) and /readyz (its dependencies answer).

Each readiness probe returns "ok", "degraded" (optional dependency down: served without it)
or "down" (required dependency down: the instance should not receive traffic → 503).
Later subsystems register probes in READINESS_PROBES.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import connection
from django.http import JsonResponse

logger = logging.getLogger(__name__)

Probe = Callable[[], tuple[str, str]]  # → (status, detail)


def probe_database() -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok", connection.vendor


def probe_broker() -> tuple[str, str]:
    """The Celery broker answers a connection. Without it nothing new reaches the workers
    (compaction, warming, sweeps), but reads and writes are still served: "degraded"."""
    from config.celery import app

    connection_ = app.connection_for_write()
    try:
        connection_.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=2)
        return "ok", connection_.as_uri()
    except Exception as exc:  # kombu raises OperationalError and friends
        logger.warning("broker unreachable: %s", exc)
        return "degraded", f"{connection_.as_uri()}: {type(exc).__name__}"
    finally:
        connection_.release()


READINESS_PROBES: dict[str, Probe] = {"database": probe_database, "broker": probe_broker}


def healthz(request):
    return JsonResponse({"status": "ok"})


def readiness_checks() -> tuple[dict[str, dict[str, str]], bool]:
    """Every probe's {status, detail}, and whether none is "down"."""
    checks, healthy = {}, True
    for name, probe in READINESS_PROBES.items():
        try:
            state, detail = probe()
        except Exception as exc:  # a probe reports, it never raises
            logger.warning("readiness probe %s failed: %s", name, exc)
            state, detail = "down", str(exc)[:200]
        checks[name] = {"status": state, "detail": detail}
        healthy = healthy and state != "down"
    return checks, healthy


def readyz(request):
    checks, healthy = readiness_checks()
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )
