"""The Redis behind the default cache (django-redis, when REDIS_URL is set), guarded by the
shared breaker (common/breaker.py): the hot cache and the throttle reach it through here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings

from common.breaker import redis_breaker


def enabled() -> bool:
    """Whether the default cache is django-redis (REDIS_URL set)."""
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    return backend.startswith("django_redis.")


def location() -> str:
    value = settings.CACHES["default"].get("LOCATION", "")
    return value if isinstance(value, str) else ",".join(value)


def available() -> bool:
    """Enabled and not known to be failing right now (its breaker is closed)."""
    return enabled() and not redis_breaker.is_open(location())


def client():
    """The raw redis-py client, or None when Redis is off or its breaker is open."""
    if not available():
        return None
    from django_redis import get_redis_connection

    return get_redis_connection("default")


def run(what: str, operation: Callable[[Any], Any], default: Any = None) -> Any:
    """Run `operation(client)`; on any Redis failure trip the breaker (one warning per
    period) and return `default` — the caller then does without Redis."""
    try:
        # Connecting is inside: a Redis Cluster client connects when it is made, and with no
        # node answering that raises here (common/redis_cluster.py), not in the operation.
        redis_client = client()
        if redis_client is None:
            return default
        result = operation(redis_client)
    except Exception as exc:  # redis errors, socket errors, a bad value in a key
        redis_breaker.trip(location(), exc, what=what)
        return default
    redis_breaker.close(location())
    return result
