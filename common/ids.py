"""Prefixed ids: prefix + 12 chars of [0-9a-z], drawn uniformly (secrets.choice)."""

from __future__ import annotations

import secrets
import string
from functools import partial

ALPHABET = string.digits + string.ascii_lowercase
ID_LENGTH = 12
PREFIXES = (
    "tnt",
    "prj",
    "thd",
    "ses",
    "sub",
    "hof",
    "wsp",
    "sum",
    "msg",
    "cmp",
    "evt",
    "que",
    "key",
)


def new_id(prefix: str) -> str:
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    return f"{prefix}_" + "".join(secrets.choice(ALPHABET) for _ in range(ID_LENGTH))


def id_factory(prefix: str):
    """A default= callable for a model's id field (migrations serialize functools.partial)."""
    return partial(new_id, prefix)


def looks_like(prefix: str, value: str) -> bool:
    return (
        isinstance(value, str)
        and len(value) == len(prefix) + 1 + ID_LENGTH
        and value.startswith(prefix + "_")
        and all(c in ALPHABET for c in value[len(prefix) + 1 :])
    )
