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


READINESS_PROBES: dict[str, Probe] = {"database": probe_database}


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    checks, healthy = {}, True
    for name, probe in READINESS_PROBES.items():
        try:
            state, detail = probe()
        except Exception as exc:  # a probe reports, it never raises
            logger.warning("readiness probe %s failed: %s", name, exc)
            state, detail = "down", str(exc)[:200]
        checks[name] = {"status": state, "detail": detail}
        healthy = healthy and state != "down"
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )
