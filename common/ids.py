"""Prefixed ids: prefix + 12 chars of [0-9a-z], drawn uniformly (one secrets.randbelow)."""

from __future__ import annotations

import secrets
import string
from functools import partial

ALPHABET = string.digits + string.ascii_lowercase
ID_LENGTH = 12
_SPACE = len(ALPHABET) ** ID_LENGTH
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
    # One draw from the whole id space, written in base 36: as uniform as 12 draws of a
    # character, at one random read instead of twelve (an append makes one per message).
    number, chars = secrets.randbelow(_SPACE), []
    for _ in range(ID_LENGTH):
        number, digit = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[digit])
    return f"{prefix}_" + "".join(chars)


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
