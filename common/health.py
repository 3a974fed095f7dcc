"""/healthz (the process answers) and /readyz (its dependencies answer).

Each readiness probe returns "ok", "degraded" (optional dependency down: served without it)
or "down" (required dependency down: the instance should not receive traffic → 503).
Later subsystems register probes in READINESS_PROBES.

/readyz answers within READYZ_TIMEOUT_SECONDS whatever hangs: the database is probed in the
request (bounded by the connect timeout), every other probe in a background thread — at most
one in flight per probe, so repeated calls against a hung dependency do not pile up threads.
A probe that has not answered in time counts as "degraded" (or "down" for a required one).
Details name a dependency and an error class, never a raw error text (hosts, ports,
credentials): the full error goes to the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from django.conf import settings
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
        return "ok", connection_.transport_cls
    except Exception as exc:  # kombu raises OperationalError and friends
        logger.warning("broker unreachable: %s", exc)
        return "degraded", f"{connection_.transport_cls}: {type(exc).__name__}"  # no host
    finally:
        connection_.release()


READINESS_PROBES: dict[str, Probe] = {"database": probe_database, "broker": probe_broker}
# Probes whose failure makes the instance unready (503); every other one only degrades it.
REQUIRED_PROBES = {"database"}
IN_REQUEST_PROBES = {"database"}  # thread-bound (Django's connection): run in the request

_inflight: dict[str, Future] = {}
_inflight_lock = threading.Lock()


def _run_probe(name: str, probe: Probe) -> tuple[str, str]:
    try:
        return probe()
    except Exception as exc:  # a probe reports, it never raises
        logger.warning("readiness probe %s failed: %s", name, exc)
        return ("down" if name in REQUIRED_PROBES else "degraded"), type(exc).__name__


def _start(name: str, probe: Probe) -> Future:
    """The probe's future: the one still in flight from an earlier call, or a new one."""
    with _inflight_lock:
        future = _inflight.get(name)
        if future is not None and not future.done():
            return future
        future = Future()
        _inflight[name] = future

    def work() -> None:
        try:
            future.set_result(_run_probe(name, probe))
        finally:
            from django.db import connections

            connections.close_all()  # a probe thread keeps no database connection

    threading.Thread(target=work, name=f"readyz-{name}", daemon=True).start()
    return future


def healthz(request):
    return JsonResponse({"status": "ok"})


def readiness_checks() -> tuple[dict[str, dict[str, str]], bool]:
    """Every probe's {status, detail} within READYZ_TIMEOUT_SECONDS, and whether none is
    "down"."""
    deadline = time.monotonic() + settings.READYZ_TIMEOUT_SECONDS
    futures = {
        name: _start(name, probe)
        for name, probe in READINESS_PROBES.items()
        if name not in IN_REQUEST_PROBES
    }
    results = {
        name: _run_probe(name, probe)
        for name, probe in READINESS_PROBES.items()
        if name in IN_REQUEST_PROBES
    }
    for name, future in futures.items():
        try:
            results[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            required = name in REQUIRED_PROBES
            results[name] = ("down" if required else "degraded"), "no answer in time"
    checks, healthy = {}, True
    for name in READINESS_PROBES:
        state, detail = results[name]
        checks[name] = {"status": state, "detail": detail}
        healthy = healthy and state != "down"
    return checks, healthy


def readyz(request):
    checks, healthy = readiness_checks()
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )
