"""Reading configuration from the environment, failing fast on nonsense.

Every variable has an embedded default that works on a laptop with nothing installed
(SQLite, filesystem cold storage, filesystem Celery broker, no Redis).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from exc
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from exc
    if value != value or (minimum is not None and value < minimum):  # NaN, or too small
        raise ImproperlyConfigured(f"{name} must be a number of at least {minimum}, not {raw!r}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name) or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def env_levels(name: str, *, allowed: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """`family=a,b;other=` → {"family": ("a", "b"), "other": ()}; each level one of `allowed`."""
    table: dict[str, tuple[str, ...]] = {}
    for entry in (os.environ.get(name) or "").split(";"):
        if not entry.strip():
            continue
        family, sep, levels = entry.partition("=")
        values = tuple(level.strip() for level in levels.split(",") if level.strip())
        if not sep or not family.strip() or set(values) - set(allowed):
            raise ImproperlyConfigured(
                f"{name} must read family=level,level;… with levels among "
                f"{', '.join(allowed)}, not {entry!r}"
            )
        table[family.strip()] = values
    return table
